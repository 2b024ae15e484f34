"""The run history: a Delta table at `{root}/_wootric_ingest/runs` with one row per stream per run.

"Did last night's sync work, and how much did it bring?" is one query:

    SELECT stream, status, sync_mode, sync_reason, records_fetched, rows_inserted, rows_updated, rows_deleted, error
    FROM delta.`<root>/_wootric_ingest/runs` WHERE started_at >= current_date() - 1 ORDER BY started_at

A failed stream gets its row too (status `failed`, the redacted error). Rows are upserted on (run_id,
stream), so a retried run replaces the row of its failed attempt instead of adding a second one.
"""
from __future__ import annotations

import threading

from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql.types import (
    DoubleType,
    LongType,
    MapType,
    StringType,
    StructType,
    TimestampType,
)

from wootric_ingest import redaction
from wootric_ingest.landing import StreamResult
from wootric_ingest.sink import ensure_table, with_retries
from wootric_ingest.streams import column

RUNS_DIR = "_wootric_ingest/runs"


RUNS_SCHEMA = StructType([
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
    column("type_mismatches", MapType(StringType(), LongType()),
           "Per column, values that did not fit its type and landed as null (kept in _raw)"),
])


class RunHistory:
    """The runs table under a catalog root; safe to record from several streams' threads at once.

    A run whose id was made for it (`fresh`) cannot have rows yet, so its rows are appended: appends never
    conflict, so streams that finish together do not queue behind one another's MERGE. A run id given by the
    caller may be a retry's, and its rows replace the ones the earlier attempt recorded.
    """

    def __init__(self, spark: SparkSession, root: str, properties: dict[str, str], *, fresh: bool = False):
        self.spark, self.properties, self.fresh = spark, properties, fresh
        self.path = f"{root.rstrip('/')}/{RUNS_DIR}"
        self._ready = False
        self._lock = threading.Lock()

    def record(self, run_id: str, result: StreamResult) -> None:
        """Add, or with a given run id upsert, one stream's row for this run."""
        with self._lock:
            if not self._ready:
                ensure_table(self.spark, self.path, RUNS_SCHEMA, self.properties)
                self._ready = True
        row = self.spark.createDataFrame([_row(run_id, result)], RUNS_SCHEMA)

        def attempt() -> None:
            if self.fresh:
                row.write.format("delta").mode("append").save(self.path)
                return
            (DeltaTable.forPath(self.spark, self.path).alias("t")
             .merge(row.alias("s"), "t.run_id = s.run_id AND t.stream = s.stream")
             .whenMatchedUpdateAll()
             .whenNotMatchedInsertAll()
             .execute())

        with_retries(attempt, f"recording {result.stream} in {self.path}")


def _row(run_id: str, r: StreamResult) -> tuple:
    return (
        run_id, r.stream, r.path, r.mode, r.reason, r.status,
        redaction.redact(r.error) if r.error else None,
        r.started_at, r.finished_at, float(r.seconds), r.since, r.until, r.bookmark,
        r.records_fetched, r.records_rejected, r.api_requests, r.rows_inserted, r.rows_updated, r.rows_deleted,
        r.table_version, r.table_rows, dict(r.type_mismatches),
    )
