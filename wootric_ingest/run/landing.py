"""One stream's sync once planned, in two steps that return what they did: `extract` (the API's pages to
staging, on the driver) returns `Fetched`; `land` (staging to at most one Delta commit, on the cluster)
returns `Landed`. A run lands one stream while the driver fetches the next.

Landing reads the staged files with an explicit schema and shapes them with Spark expressions, in two
passes over the files and nothing cached in memory, so nothing on the driver or in the JVM grows with the
stream: a census (counts, distinct ids, id range, newest cursor; Spark parses only the id and cursor of each
record), then the commit (an incremental one first keeps the rows that change the table, on disk). A full
sync counts type mismatches while it writes; an incremental one, usually small, in the census. A full sync
writes its files by id range (one shuffle, which also keeps one row per id when the census found an id
twice), so the MERGEs after it, whose ids are recent, read and rewrite only the newest files.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field

from pyspark.sql import Observation
from pyspark.sql import functions as F

from wootric_ingest.api import WootricClient
from wootric_ingest.config import Deletes
from wootric_ingest.lake.lakehouse import Lakehouse
from wootric_ingest.lake.rejects import key_problem, split
from wootric_ingest.lake.shaping import STAGED_SCHEMA, latest_per_id, observe_type_mismatches, shape, summarize
from wootric_ingest.lake.staging import StagingArea
from wootric_ingest.lake.state import SyncMode
from wootric_ingest.lake.tables import one
from wootric_ingest.run.planning import Plan
from wootric_ingest.run.progress import Progress
from wootric_ingest.streams import PRIMARY_KEY

log = logging.getLogger(__name__)

#: Rows per file a full sync writes (about 20 MB of responses): small enough that a MERGE of recent records
#: rewrites a small part of the table, large enough that the file count stays modest.
FULL_SYNC_FILE_ROWS = 100_000


@dataclass(frozen=True)
class Fetched:
    """What one extraction staged: records (this attempt's), API requests spent, seconds taken."""

    records: int
    api_requests: int
    seconds: float


@dataclass(frozen=True)
class Landed:
    """What one landing committed, as the table's history tells it (so a replayed run reports its first
    commit): the sync mode and reason of that commit, row counts, the version and bookmark after it."""

    mode: SyncMode
    reason: str
    rows_inserted: int
    rows_updated: int
    rows_deleted: int
    rows_marked_deleted: int
    table_version: int | None
    table_rows: int
    bookmark: str | None
    seconds: float
    records_rejected: int = 0
    type_mismatches: dict[str, int] = field(default_factory=dict)


def extract(client: WootricClient, staging: StagingArea, plan: Plan, progress: Progress) -> Fetched:
    """The stream's pages to staging, skipping the ranges an earlier attempt of the run already staged.

    What was fetched is flushed even when the client fails, so a retry of the run resumes from it.
    """
    started = time.monotonic()
    requests_before = client.stats.snapshot()["requests"]
    watch = progress.start(plan.stream.name, plan.since, plan.until)
    try:
        for batch in client.pages(plan.stream, plan.since, plan.until, done=staging.completed):
            staging.write(batch.records, batch.completed)
            progress.page(watch, batch, client.requests_left())
    finally:
        staging.flush()
        progress.finish(watch)
    fetched = Fetched(
        staging.records, int(client.stats.snapshot()["requests"] - requests_before), time.monotonic() - started
    )
    log.info("%s: fetched %d records in %d requests", plan.stream.name, fetched.records, fetched.api_requests)
    return fetched


def land(lakehouse: Lakehouse, staging: StagingArea, plan: Plan, run_id: str) -> Landed:
    """Staged records to at most one commit: a MERGE for an incremental sync (none when no row changes), an
    overwrite for a full one.

    A full sync commits even when the source is empty (the table must be empty then too, and the commit
    records the full sync for the cron decision), then vacuums files older than the retention. Records without
    a usable id go to the rejected table instead. When this run continues an interrupted run's staging, the
    commit names that run (`staging_run`), so the staging is known to be landed.
    """
    started = time.monotonic()
    spark, stream, table = lakehouse.spark, plan.stream, lakehouse.table(plan.config)
    table.ensure()
    parts = staging.parts()
    rows, newest, observation, ids, rejected, census_mismatches = None, None, None, None, 0, {}
    records = 0
    if parts:
        staged = spark.read.schema(STAGED_SCHEMA).option("mode", "FAILFAST").json(parts)
        shaped = shape(staged, stream, run_id)
        keyed, unkeyed = split(shaped)
        summary = one(
            summarize(
                shaped,
                stream,
                key_problem(F.col(PRIMARY_KEY), F.col("_raw")).isNull(),
                types=plan.mode is not SyncMode.FULL,
            )
        )
        records = summary["records"]
        if summary["unkeyed"]:
            rejected = lakehouse.rejected.record(stream.name, run_id, unkeyed)
            log.warning(
                "%s: %d records without a usable id went to %s, with the reason",
                stream.name,
                rejected,
                lakehouse.rejected.table,
            )
        if summary["ids"] != records:
            rows = latest_per_id(keyed)
        elif plan.mode is SyncMode.FULL:  # files by id range: a later MERGE reads and rewrites only the newest ones
            rows = keyed.repartitionByRange(max(1, -(-records // FULL_SYNC_FILE_ROWS)), PRIMARY_KEY)
        else:
            rows = keyed
        newest = summary["newest"]
        ids = (summary["first_id"], summary["last_id"]) if records else None
        if plan.mode is SyncMode.FULL:  # a full sync can be large: count type mismatches while writing, not in a pass
            observation = Observation(f"type_mismatches_{stream.name}_{uuid.uuid4().hex}")
            rows = observe_type_mismatches(rows, stream, observation)
        else:
            census_mismatches = summary["type_mismatches"]
    bookmark = max(filter(None, [newest, plan.bookmark if plan.mode is SyncMode.INCREMENTAL else None]), default=None)
    metadata = plan.commit_metadata(run_id, bookmark)
    if staging.run_id != run_id:
        metadata["staging_run"] = staging.run_id
    version_before = table.version()
    if plan.mode is SyncMode.FULL:
        source = rows if rows is not None else spark.createDataFrame([], table.schema)
        table.full_sync(
            source,
            metadata,
            run_id,
            write=lakehouse.config.catalog.full_sync_write,
            soft=plan.config.deletes is Deletes.SOFT,
            at=plan.until,
        )
    elif rows is not None and not table.merge(rows, metadata, run_id, ids):
        log.info("%s: nothing new or changed among %d records; no commit", stream.name, records)
    commit = table.commit_of(run_id)
    committed_now = commit is not None and commit.version > version_before
    if commit is not None and not committed_now:
        log.info("%s: run %s already committed version %d; nothing written again", stream.name, run_id, commit.version)
    if committed_now and observation is not None:  # complete only if the write ran, not when a replay skipped it
        census_mismatches = observation.get
    mismatches = {column: n for column, n in census_mismatches.items() if n}
    if mismatches:
        log.warning(
            "%s: values that did not fit their column's type landed as null (kept in _raw): %s", stream.name, mismatches
        )
    if committed_now and plan.mode is SyncMode.FULL and version_before > 0:  # 0 is the empty table's creation
        table.vacuum(lakehouse.config.delta_log_retention_days)
    if commit is None:
        mode, reason, changes, version, bookmark = plan.mode, plan.reason, None, version_before, plan.bookmark
    else:
        mode, reason = SyncMode(commit.metadata["sync"]), commit.metadata["reason"]
        changes, version, bookmark = table.changes(commit), commit.version, commit.metadata.get("bookmark")
    return Landed(
        mode=mode,
        reason=reason,
        rows_inserted=changes.inserted if changes else 0,
        rows_updated=changes.updated if changes else 0,
        rows_deleted=changes.deleted if changes else 0,
        rows_marked_deleted=changes.marked if changes else 0,
        table_version=version,
        table_rows=table.count(),
        bookmark=bookmark,
        seconds=time.monotonic() - started,
        records_rejected=rejected,
        type_mismatches=mismatches,
    )
