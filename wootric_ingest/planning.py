"""What the next run does for one stream, and why: incremental from the bookmark, or a full sync.

A pure decision over the table's state (see tablestate.py) and a clock, so every rule, the cron's time zone
and daylight saving included, is tested with fixed instants and no Spark.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from wootric_ingest.config import SourceConfig, StreamConfig, SyncType
from wootric_ingest.sink import DeltaSink
from wootric_ingest.streams import STREAMS, Stream
from wootric_ingest.tablestate import FULL, INCREMENTAL, TableState, read_state


@dataclass(frozen=True)
class RunOptions:
    streams: tuple[str, ...] = ()
    full_sync: bool = False
    dry_run: bool = False
    run_id: str | None = None  # given when retrying a run: its commits are then not made twice


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
    last_full_sync: datetime | None = None

    def commit_metadata(self, run_id: str, bookmark: str | None) -> dict:
        """What our commit records, so the next run can derive its plan from the table alone."""
        last_full = self.until if self.mode == FULL else self.last_full_sync
        return {
            "run_id": run_id, "stream": self.stream.name, "sync": self.mode, "reason": self.reason,
            "bookmark": bookmark, "since": self.since.isoformat(), "until": self.until.isoformat(),
            "last_full_sync": last_full.isoformat() if last_full else None,
        }


def table_properties(config: SourceConfig) -> dict[str, str]:
    """The Delta properties every table gets: log and deleted-file retention of the configured days, so time
    travel reaches back exactly that far. The idempotent-write ids each run leaves in the log (one per table)
    expire after as long, instead of piling up forever; a replay comes within minutes, not days."""
    days = f"interval {config.delta_log_retention_days} days"
    return {"delta.logRetentionDuration": days, "delta.deletedFileRetentionDuration": days,
            "delta.setTransactionRetentionDuration": days}


def plan_stream(config: SourceConfig, stream_config: StreamConfig, sink: DeltaSink, options: RunOptions,
                now: datetime) -> Plan:
    """The plan for one stream, from its table's state as the table and its history tell it."""
    state = read_state(sink)
    return plan_from_state(config, stream_config, state, options, now)


def plan_from_state(config: SourceConfig, stream_config: StreamConfig, state: TableState, options: RunOptions,
                    now: datetime) -> Plan:
    stream = STREAMS[stream_config.stream]
    until = now.replace(microsecond=0)
    path = stream_config.table_path(config.catalog)

    def full(reason: str) -> Plan:
        return Plan(stream_config, stream, path, FULL, reason, config.start_date, until,
                    last_full_sync=state.last_full_sync)

    if stream_config.sync_type is SyncType.FULL_TABLE:
        return full("sync type is FULL_TABLE")
    if options.full_sync:
        return full("--full-sync was given")
    if not state.exists:
        return full("first run: the table does not exist yet")
    due = _additional_full_sync_due(config, state, now)
    if due:
        return full(due)
    if state.bookmark is None:
        return Plan(stream_config, stream, path, INCREMENTAL, "the table holds no records yet: from the start date",
                    config.start_date, until, last_full_sync=state.last_full_sync)
    cursor = datetime.fromisoformat(state.bookmark.replace("Z", "+00:00"))
    since = max(config.start_date, cursor - timedelta(days=stream_config.lookback_days))
    reason = f"bookmark {state.bookmark} from {state.bookmark_from}" + (
        f" minus {stream_config.lookback_days} days look-back" if stream_config.lookback_days else "")
    return Plan(stream_config, stream, path, INCREMENTAL, reason, since, until, state.bookmark, state.last_full_sync)


def _additional_full_sync_due(config: SourceConfig, state: TableState, now: datetime) -> str | None:
    """Why a full sync is due (its cron fired after the last full sync read the source), or None."""
    schedule = config.additional_full_sync
    if schedule is None:
        return None
    fired = schedule.parsed.last_fire(now)
    if fired is None or (state.last_full_sync is not None and state.last_full_sync >= fired):
        return None
    local = fired.astimezone(ZoneInfo(schedule.timezone))
    last = state.last_full_sync.isoformat() if state.last_full_sync else "never (not in the table's history)"
    return (f"additional full sync due: '{schedule.cron}' ({schedule.timezone}) fired at {local.isoformat()}; "
            f"the last full sync was {last}")
