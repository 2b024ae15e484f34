"""What the next run does for one stream, and why: incremental from the bookmark, or a full sync.

A pure decision over the table's state (see lake/state.py) and a clock, so every rule, the cron's time zone
and daylight saving included, is tested with fixed instants and no Spark.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from wootric_ingest.config import SourceConfig, StreamConfig, SyncType
from wootric_ingest.lake.state import SyncMode, TableState
from wootric_ingest.streams import Stream


@dataclass(frozen=True)
class RunOptions:
    streams: tuple[str, ...] = ()
    full_sync: bool = False
    run_id: str | None = None  # given when retrying a run: its commits are then not made twice


@dataclass(frozen=True)
class Plan:
    """What a run will do for one stream, and why."""

    config: StreamConfig
    mode: SyncMode
    reason: str
    since: datetime
    until: datetime
    bookmark: str | None = None
    last_full_sync: datetime | None = None
    pii: str | None = None  # the personal data policy's fingerprint, recorded in the commit

    @property
    def stream(self) -> Stream:
        return self.config.stream

    def commit_metadata(self, run_id: str, bookmark: str | None) -> dict:
        """What our commit records, so the next run can derive its plan from the table alone."""
        last_full = self.until if self.mode is SyncMode.FULL else self.last_full_sync
        return {
            "run_id": run_id,
            "stream": self.stream.name,
            "sync": self.mode.value,
            "reason": self.reason,
            "bookmark": bookmark,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "last_full_sync": last_full.isoformat() if last_full else None,
            "pii": self.pii,
        }


def plan_stream(
    config: SourceConfig, stream_config: StreamConfig, state: TableState, options: RunOptions, now: datetime
) -> Plan:
    """The plan for one stream, from its table's state as the table and its history tell it."""
    until = now.replace(microsecond=0)
    pii = config.pii.fingerprint if stream_config.stream.personal_data else None

    def full(reason: str) -> Plan:
        return Plan(
            stream_config, SyncMode.FULL, reason, config.start_date, until, last_full_sync=state.last_full_sync, pii=pii
        )

    if stream_config.sync_type is SyncType.FULL_TABLE:
        return full("sync type is FULL_TABLE")
    if options.full_sync:
        return full("--full-sync was given")
    if not state.exists:
        return full("first run: the table does not exist yet")
    if state.unwritten:
        return full("first run: the table is empty and no run has committed to it yet")
    if state.pii != pii:
        return full(
            f"the personal data policy changed (the table's last commit: {state.pii or 'no policy'}, the config: "
            f"{pii or 'no policy'}): a full sync applies it to every row"
        )
    due = _additional_full_sync_due(config, state, now)
    if due:
        return full(due)
    if state.bookmark is None:
        return Plan(
            stream_config,
            SyncMode.INCREMENTAL,
            "the table holds no records yet: from the start date",
            config.start_date,
            until,
            last_full_sync=state.last_full_sync,
            pii=pii,
        )
    cursor = datetime.fromisoformat(state.bookmark.replace("Z", "+00:00"))
    since = max(config.start_date, cursor - timedelta(days=stream_config.lookback_days))
    reason = f"bookmark {state.bookmark} from {state.bookmark_from}" + (
        f" minus {stream_config.lookback_days} days look-back" if stream_config.lookback_days else ""
    )
    return Plan(stream_config, SyncMode.INCREMENTAL, reason, since, until, state.bookmark, state.last_full_sync, pii)


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
    return (
        f"additional full sync due: '{schedule.cron}' ({schedule.timezone}) fired at {local.isoformat()}; "
        f"the last full sync was {last}"
    )
