"""What the next run needs to know about a stream's table, derived from the table and its history only.

The bookmark is the cursor our newest commit recorded, falling back to the newest cursor value the table
holds (a table written by someone else, or whose commits the log cleanup dropped). The last full sync is
the `until` of our newest commit tagged `sync: FULL`; every later commit carries it forward, so it is
still known after the log cleanup drops that commit.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from wootric_ingest.sink import CommitInfo, DeltaSink

FULL = "FULL"
INCREMENTAL = "INCREMENTAL"


@dataclass(frozen=True)
class TableState:
    exists: bool
    bookmark: str | None = None
    bookmark_from: str = ""
    last_full_sync: datetime | None = None


def read_state(sink: DeltaSink) -> TableState:
    if not sink.exists():
        return TableState(exists=False)
    commits = sink.commits()
    bookmark = commits[0].metadata.get("bookmark") if commits else None
    source = f"run {commits[0].metadata.get('run_id')}" if bookmark else ""
    if bookmark is None:
        cursor = sink.stream.cursor_field
        bookmark = sink.max_value(cursor)
        source = f"the table's newest {cursor}" if bookmark else ""
    return TableState(True, bookmark, source, last_full_sync(commits))


def last_full_sync(commits: list[CommitInfo]) -> datetime | None:
    """When the newest full sync read the source (its `until`), from commits newest first."""
    for commit in commits:
        meta = commit.metadata
        stamp = meta.get("until") if meta.get("sync") == FULL else meta.get("last_full_sync")
        if stamp:
            return datetime.fromisoformat(stamp)
    return None
