"""One stream's sync once planned: pages to staging, staging to one Delta commit."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from wootric_ingest.planning import FULL, INCREMENTAL, Plan
from wootric_ingest.shaping import STAGED_SCHEMA, latest_per_id, shape
from wootric_ingest.sink import DeltaSink
from wootric_ingest.staging import StagingArea
from wootric_ingest.wootric import WootricClient

log = logging.getLogger(__name__)


@dataclass
class StreamResult:
    stream: str
    mode: str
    reason: str
    records_fetched: int = 0
    rows_written: int = 0
    table_rows: int = 0
    api_requests: int = 0
    seconds: float = 0.0
    status: str = "ok"
    error: str | None = None
    extra: dict = field(default_factory=dict)


def sync_stream(spark: SparkSession, client: WootricClient, root: str, plan: Plan, run_id: str,
                sink: DeltaSink) -> StreamResult:
    """Fetch one stream's pages to staging, then land them in its table in one commit."""
    result = StreamResult(plan.stream.name, plan.mode, plan.reason)
    started = time.monotonic()
    staging = StagingArea(root, run_id, plan.stream.name)
    requests_before = client.requests_used
    for page in client.pages(plan.stream, plan.since, plan.until):
        staging.write(page)
    staging.flush()
    result.records_fetched = staging.records
    result.api_requests = client.requests_used - requests_before
    log.info("%s: fetched %d records in %d requests", plan.stream.name, staging.records, result.api_requests)

    sink.ensure_table()
    if staging.records:
        staged = spark.read.schema(STAGED_SCHEMA).json(staging.files)
        rows = latest_per_id(shape(staged, plan.stream, run_id)).cache()
        result.rows_written = rows.count()
        newest = rows.agg(F.max(plan.stream.cursor_field)).first()[0]
    else:
        rows, newest = None, None
    bookmark = max(filter(None, [newest, plan.bookmark if plan.mode == INCREMENTAL else None]), default=None)
    metadata = {"run_id": run_id, "stream": plan.stream.name, "sync": plan.mode, "reason": plan.reason,
                "bookmark": bookmark, "since": plan.since.isoformat(), "until": plan.until.isoformat()}
    if plan.mode == FULL:
        sink.overwrite(rows if rows is not None else spark.createDataFrame([], plan.stream.table_schema), metadata)
    elif rows is not None:
        sink.merge(rows, metadata)
    if rows is not None:
        rows.unpersist()
    staging.cleanup()
    result.table_rows = spark.read.format("delta").load(sink.path).count()
    result.seconds = time.monotonic() - started
    return result
