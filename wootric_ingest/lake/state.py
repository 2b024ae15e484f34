"""What the next run needs to know about a stream's table, derived from the table and its history only.

The bookmark is the cursor our newest commit recorded, falling back to the newest cursor value the table
holds (a table written by someone else, or whose commits the log cleanup dropped); the personal data policy
is the fingerprint our newest commit recorded (none: the rows were written without one). The last full sync is
the `until` of our newest commit tagged `sync: FULL`; every later commit carries it forward, so it is
still known after the log cleanup drops that commit. A table that is empty and holds no commit of ours is
`unwritten`: a run prepares a stream's table while its pages arrive, so a first run whose fetch failed leaves one,
and the next run is still a first run.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # planning imports this module without Spark
    from wootric_ingest.lake.tables import CommitInfo, StreamTable


class SyncMode(str, enum.Enum):
    """What one run does for a stream (recorded in its commit as `sync`). Not the config's sync type: an
    INCREMENTAL stream still gets a FULL sync on its first run, with `--full-sync` or when the cron says so."""

    FULL = "FULL"
    INCREMENTAL = "INCREMENTAL"


@dataclass(frozen=True)
class TableState:
    exists: bool
    bookmark: str | None = None
    bookmark_from: str = ""
    last_full_sync: datetime | None = None
    pii: str | None = None  # the personal data policy's fingerprint our newest commit recorded (None: no policy)
    unwritten: bool = False  # it exists, empty and without a commit of ours: a run created it, then failed first


def read_state(table: StreamTable) -> TableState:
    """The table's state; a table that is not this job's to write is refused here, before anything is planned."""
    if not table.exists():
        return TableState(exists=False)
    table.check()
    commits = table.commits()
    if not commits and table.read().isEmpty():  # a run prepares the table while it fetches; the fetch failed
        return TableState(exists=True, unwritten=True)
    bookmark = commits[0].metadata.get("bookmark") if commits else None
    source = f"run {commits[0].metadata.get('run_id')}" if bookmark else ""
    if bookmark is None:
        cursor = table.stream.cursor_field
        bookmark = table.max_value(cursor)
        source = f"the table's newest {cursor}" if bookmark else ""
    return TableState(
        True, bookmark, source, last_full_sync(commits), commits[0].metadata.get("pii") if commits else None
    )


def last_full_sync(commits: list[CommitInfo]) -> datetime | None:
    """When the newest full sync read the source (its `until`), from commits newest first."""
    for commit in commits:
        meta = commit.metadata
        stamp = meta.get("until") if meta.get("sync") == SyncMode.FULL else meta.get("last_full_sync")
        if stamp:
            return datetime.fromisoformat(stamp)
    return None
