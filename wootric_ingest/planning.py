"""What the next run does for one stream, and why: incremental from the bookmark, or a full sync.

Everything is derived from the table and its history (the bookmark and the last full sync recorded in
our commits' `userMetadata`), so no side file can drift from the lake.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from wootric_ingest.config import SourceConfig, StreamConfig, SyncType
from wootric_ingest.sink import DeltaSink
from wootric_ingest.streams import STREAMS, Stream

FULL = "FULL"
INCREMENTAL = "INCREMENTAL"


@dataclass(frozen=True)
class RunOptions:
    streams: tuple[str, ...] = ()
    full_sync: bool = False
    dry_run: bool = False


@dataclass(frozen=True)
class Plan:
    """What a run will do for one stream, and why."""

    config: StreamConfig
    stream: Stream
    path: str
    mode: str
    reason: str
    since: datetime
    until: datetime
    bookmark: str | None = None


def table_properties(config: SourceConfig) -> dict[str, str]:
    """The Delta properties every table gets: log and file retention of the configured days."""
    days = f"interval {config.delta_log_retention_days} days"
    return {"delta.logRetentionDuration": days, "delta.deletedFileRetentionDuration": days}


def plan_stream(config: SourceConfig, stream_config: StreamConfig, sink: DeltaSink, options: RunOptions,
                now: datetime) -> Plan:
    stream = STREAMS[stream_config.stream]
    until = now.replace(microsecond=0)

    def full(reason: str) -> Plan:
        return Plan(stream_config, stream, sink.path, FULL, reason, config.start_date, until)

    if stream_config.sync_type is SyncType.FULL_TABLE:
        return full("sync type is FULL_TABLE")
    if options.full_sync:
        return full("--full-sync was given")
    if not sink.exists():
        return full("first run: the table does not exist yet")
    bookmark = next((c.metadata.get("bookmark") for c in sink.commits() if c.metadata.get("bookmark")), None)
    if bookmark is None:
        return full("the table has no bookmark from an earlier run")
    cursor = datetime.fromisoformat(bookmark.replace("Z", "+00:00"))
    since = max(config.start_date, cursor - timedelta(days=stream_config.lookback_days))
    reason = f"bookmark {bookmark}" + (f" minus {stream_config.lookback_days} days look-back"
                                       if stream_config.lookback_days else "")
    return Plan(stream_config, stream, sink.path, INCREMENTAL, reason, since, until, bookmark)
