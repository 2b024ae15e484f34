"""Which staging a stream's extraction continues in: the one an interrupted run left, else a new one.

A run killed mid-extraction or mid-landing leaves the stream's staging (part files, and the manifest of the
cursor ranges whose records are all in them) under `{root}/_wootric_ingest/staging/{run_id}/{stream}/`.
Whether such a folder still waits to be landed is derived, never stored: it does unless one of our commits
in the stream's table history names its run, as `run_id` (the run landed its own staging) or as
`staging_run` (a later run landed it). The next run continues in the newest waiting folder: the client
skips the manifest's ranges (`done=`), new pages go beside the old ones, the commit lands them all and
records the folder's run as its `staging_run`. A folder whose run did commit (killed between the commit and
the cleanup) is removed; so is an older waiting folder, which only a concurrent run could have left and
whose ranges the continued extraction reads again.
"""

from __future__ import annotations

import logging

from wootric_ingest.lake.lakehouse import Lakehouse
from wootric_ingest.lake.staging import StagingArea
from wootric_ingest.lake.tables import StreamTable

log = logging.getLogger(__name__)

RESUMED = "resuming the extraction of run"


def staging_for(lakehouse: Lakehouse, run_id: str, table: StreamTable) -> StagingArea:
    """The staging this run's extraction of the table's stream writes to, resuming an interrupted run's when
    one waits."""
    stream = table.stream.name
    staged = lakehouse.staged_runs(stream)
    if not staged:
        return lakehouse.staging(run_id, stream)
    landed = landed_runs(table)
    for run in sorted(staged & landed):
        log.info("%s: removing the staging of run %s, which its commit already landed", stream, run)
        lakehouse.staging(run, stream).cleanup()
    waiting = sorted(staged - landed)
    if not waiting:
        return lakehouse.staging(run_id, stream)
    origin = run_id if run_id in waiting else waiting[-1]
    for run in waiting:
        if run != origin:
            log.warning(
                "%s: removing the older interrupted staging of run %s; run %s's is continued and the "
                "ranges it lacks are fetched again",
                stream,
                run,
                origin,
            )
            lakehouse.staging(run, stream).cleanup()
    staging = lakehouse.staging(origin, stream)
    if origin != run_id:
        log.info(
            "%s: %s %s from its staging: %d part files, cursor ranges already complete: %s",
            stream,
            RESUMED,
            origin,
            len(staging.parts()),
            staging.completed or "none",
        )
    return staging


def landed_runs(table: StreamTable) -> set[str]:
    """The runs whose staging one of our commits to the stream's table landed."""
    if not table.exists():
        return set()
    return {
        run
        for commit in table.commits()
        for run in (commit.metadata.get("run_id"), commit.metadata.get("staging_run"))
        if run
    }
