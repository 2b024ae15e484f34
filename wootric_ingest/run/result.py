"""A stream's result in one run, assembled once from its plan and what its steps returned, and its row in the
runs table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from wootric_ingest.lake.history import RunRow
from wootric_ingest.lake.state import SyncMode
from wootric_ingest.run.landing import Fetched, Landed
from wootric_ingest.run.planning import Plan

OK, FAILED = "ok", "failed"


@dataclass(frozen=True)
class StreamResult:
    """`plan` is None when planning itself failed; `fetched` and `landed` are None when their step did not
    finish. The mode and reason are the commit's when the stream committed (a replayed run reports its first
    commit), else the plan's."""

    stream_name: str
    status: str
    table: str
    started_at: datetime
    finished_at: datetime
    plan: Plan | None = None
    fetched: Fetched | None = None
    landed: Landed | None = None
    error: str | None = None

    @property
    def mode(self) -> SyncMode | None:
        return self.landed.mode if self.landed else self.plan.mode if self.plan else None

    @property
    def reason(self) -> str:
        return self.landed.reason if self.landed else self.plan.reason if self.plan else ""

    @property
    def records_fetched(self) -> int:
        return self.fetched.records if self.fetched else 0

    @property
    def api_requests(self) -> int:
        return self.fetched.api_requests if self.fetched else 0

    @property
    def rows_inserted(self) -> int:
        return self.landed.rows_inserted if self.landed else 0

    @property
    def rows_updated(self) -> int:
        return self.landed.rows_updated if self.landed else 0

    @property
    def rows_deleted(self) -> int:
        return self.landed.rows_deleted if self.landed else 0

    @property
    def rows_marked_deleted(self) -> int:
        return self.landed.rows_marked_deleted if self.landed else 0

    @property
    def table_rows(self) -> int | None:
        return self.landed.table_rows if self.landed else None

    @property
    def table_version(self) -> int | None:
        return self.landed.table_version if self.landed else None

    @property
    def bookmark(self) -> str | None:
        return self.landed.bookmark if self.landed else None

    @property
    def records_rejected(self) -> int:
        return self.landed.records_rejected if self.landed else 0

    @property
    def type_mismatches(self) -> dict[str, int]:
        return dict(self.landed.type_mismatches) if self.landed else {}

    @property
    def left_out(self) -> dict[str, int]:
        return dict(self.landed.left_out) if self.landed else {}

    @property
    def seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    def run_row(self, run_id: str) -> RunRow:
        return RunRow(
            run_id=run_id,
            stream=self.stream_name,
            table_path=self.table,
            sync_mode=self.mode.value if self.mode else None,
            sync_reason=self.reason,
            status=self.status,
            error=self.error,
            started_at=self.started_at,
            finished_at=self.finished_at,
            duration_seconds=self.seconds,
            window_since=self.plan.since if self.plan else None,
            window_until=self.plan.until if self.plan else None,
            bookmark=self.bookmark,
            records_fetched=self.records_fetched,
            records_rejected=self.records_rejected,
            api_requests=self.api_requests,
            rows_inserted=self.rows_inserted,
            rows_updated=self.rows_updated,
            rows_deleted=self.rows_deleted,
            rows_marked_deleted=self.rows_marked_deleted,
            table_version=self.table_version,
            table_rows=self.table_rows,
            type_mismatches=self.type_mismatches,
            left_out=self.left_out,
        )
