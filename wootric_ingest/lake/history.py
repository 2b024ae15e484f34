"""The run history: a Delta table at `{root}/_wootric_ingest/runs` with one row per stream per run.

"Did last night's sync work, and how much did it bring?" is one query:

    SELECT stream, status, sync_mode, sync_reason, records_fetched, rows_inserted, rows_updated, rows_deleted, error
    FROM delta.`<root>/_wootric_ingest/runs` WHERE started_at >= current_date() - 1 ORDER BY started_at

A failed stream gets its row too (status `failed`, the redacted error).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import reduce

from pyspark.sql import DataFrame
from pyspark.sql.types import DoubleType, LongType, MapType, StringType, StructType, TimestampType

from wootric_ingest import redaction
from wootric_ingest.lake.schemas import column
from wootric_ingest.lake.tables import Table, literal_row, with_retries

RUNS_SCHEMA = StructType(
    [
        column("run_id", StringType(), "The run (also in each table's _run_id column and commit metadata)"),
        column("stream", StringType(), "The Wootric stream"),
        column("table_path", StringType(), "Where the stream's Delta table lives"),
        column("sync_mode", StringType(), "FULL or INCREMENTAL"),
        column("sync_reason", StringType(), "Why this sync mode: sync type, --full-sync, first run, cron, bookmark"),
        column("status", StringType(), "ok or failed"),
        column("error", StringType(), "Why the stream failed (secrets redacted)"),
        column("started_at", TimestampType(), "When the stream's sync started (UTC)"),
        column("finished_at", TimestampType(), "When the stream's sync finished (UTC)"),
        column("duration_seconds", DoubleType(), "How long the stream's sync took"),
        column("window_since", TimestampType(), "Start of the window read from the API (UTC)"),
        column("window_until", TimestampType(), "End of the window read from the API (UTC)"),
        column("bookmark", StringType(), "The newest cursor value landed: where the next incremental sync starts"),
        column("records_fetched", LongType(), "Records the API returned"),
        column("records_rejected", LongType(), "Records without a usable id, kept in _wootric_ingest/rejected"),
        column("api_requests", LongType(), "Requests made to the API"),
        column("rows_inserted", LongType(), "Rows the commit inserted"),
        column("rows_updated", LongType(), "Rows the commit rewrote because the record was newer"),
        column("rows_deleted", LongType(), "Rows the commit removed (full syncs: records gone from the source)"),
        column("table_version", LongType(), "The table version after the stream's commit"),
        column("table_rows", LongType(), "Rows in the table after the commit"),
        column(
            "type_mismatches",
            MapType(StringType(), LongType()),
            "Per column, values that did not fit its type and landed as null (kept in _raw)",
        ),
        column("rows_marked_deleted", LongType(), "Rows a full sync with soft deletes marked deleted (_deleted_at)"),
        column(
            "left_out",
            MapType(StringType(), LongType()),
            "The nps row (gold refresh): per reason, live responses left out of the NPS counts it recomputed",
        ),
    ]
)


@dataclass(frozen=True)
class RunRow:
    """One row of the runs table, field for column (a test holds the two equal)."""

    run_id: str
    stream: str
    table_path: str | None
    sync_mode: str | None
    sync_reason: str | None
    status: str
    error: str | None
    started_at: datetime
    finished_at: datetime
    duration_seconds: float
    window_since: datetime | None
    window_until: datetime | None
    bookmark: str | None
    records_fetched: int
    records_rejected: int
    api_requests: int
    rows_inserted: int
    rows_updated: int
    rows_deleted: int
    table_version: int | None
    table_rows: int | None
    type_mismatches: dict[str, int] = field(default_factory=dict)
    rows_marked_deleted: int = 0
    left_out: dict[str, int] = field(default_factory=dict)


class RunHistory:
    """The runs table; safe to record from several streams' threads at once. One commit at a time (concurrent
    commits to one table would conflict and wait out retries), and rows recorded while a commit is on its way
    go together in the next one: streams that land at once cost two commits, not one each."""

    def __init__(self, table: Table):
        self.table = table
        self._ready = False
        self._lock = threading.Lock()  # held while committing
        self._queue_lock = threading.Lock()
        self._queue: list[tuple[RunRow, bool, Future[None]]] = []

    def append(self, rows: list[RunRow]) -> None:
        """Add several rows in one commit (an erasure's, one per table it went through)."""
        if not rows:
            return
        with self._lock:
            self._commit(rows, replace=False)

    def prepare(self) -> None:
        """Create or reconcile the runs table now (a run does it while its first stream is fetched, so the first
        row it records waits for no table creation)."""
        with self._lock:
            self._ensure()

    def _ensure(self) -> None:
        if not self._ready:
            self.table.ensure()
            self._ready = True

    def record(self, row: RunRow, *, replace: bool) -> None:
        """Add one stream's row, in the next commit of the runs table (with the rows other threads recorded
        meanwhile). A run whose id was made for it cannot have rows yet, so its rows are appended (appends never
        conflict); with `replace` (a run id given by the caller, maybe a retry's) a row replaces the one an earlier
        attempt recorded for the same run and stream. A failed commit fails the record of every row in it."""
        recorded: Future[None] = Future()
        with self._queue_lock:
            self._queue.append((row, replace, recorded))
        with self._lock:
            with self._queue_lock:
                batch, self._queue = self._queue, []
            if batch:  # else an earlier commit took this row along
                try:
                    self._commit([queued for queued, _, _ in batch], replace=any(r for _, r, _ in batch))
                except Exception as e:
                    for _, _, each in batch:
                        each.set_exception(e)
                else:
                    for _, _, each in batch:
                        each.set_result(None)
        recorded.result()

    def _commit(self, rows: list[RunRow], *, replace: bool) -> None:
        self._ensure()
        frame = self._frame(rows)

        def attempt() -> None:
            if not replace:
                self.table.append(frame)
                return
            (
                self.table.delta()
                .alias("t")
                .merge(frame.alias("s"), "t.run_id = s.run_id AND t.stream = s.stream")
                .whenMatchedUpdateAll()
                .whenNotMatchedInsertAll()
                .execute()
            )

        with_retries(attempt, f"recording {', '.join(row.stream for row in rows)} in {self.table}")

    def _frame(self, rows: list[RunRow]) -> DataFrame:
        frames = [literal_row(self.table.spark, RUNS_SCHEMA, _values(row)) for row in rows]
        return reduce(DataFrame.unionByName, frames)


def _values(row: RunRow) -> dict:
    """A row's column values, its error redacted."""
    values = asdict(row)
    values["error"] = redaction.redact(row.error) if row.error else None
    return values
