"""One run of the job: for each selected stream, plan, extract to staging, land in Delta.

The plan (incremental from the bookmark, or a full sync and why) is derived from the table and its
history alone, so a run needs no state besides the lake itself.
"""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from wootric_ingest.config import SourceConfig, StreamConfig, SyncType
from wootric_ingest.shaping import STAGED_SCHEMA, latest_per_id, shape
from wootric_ingest.sink import DeltaSink
from wootric_ingest.staging import StagingArea
from wootric_ingest.streams import STREAMS, Stream
from wootric_ingest.wootric import WootricClient

log = logging.getLogger(__name__)

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
    commits = sink.commits()
    bookmark = next((c.metadata.get("bookmark") for c in commits if c.metadata.get("bookmark")), None)
    if bookmark is None:
        return full("the table has no bookmark from an earlier run")
    cursor = datetime.fromisoformat(bookmark.replace("Z", "+00:00"))
    since = max(config.start_date, cursor - timedelta(days=stream_config.lookback_days))
    reason = f"bookmark {bookmark}" + (f" minus {stream_config.lookback_days} days look-back"
                                       if stream_config.lookback_days else "")
    return Plan(stream_config, stream, sink.path, INCREMENTAL, reason, since, until)


def sync_stream(spark: SparkSession, client: WootricClient, config: SourceConfig, plan: Plan, run_id: str,
                sink: DeltaSink) -> StreamResult:
    """Fetch one stream's pages to staging, then land them in its table in one commit."""
    result = StreamResult(plan.stream.name, plan.mode, plan.reason)
    started = time.monotonic()
    staging = StagingArea(config.catalog.root, run_id, plan.stream.name)
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
    previous = next((c.metadata.get("bookmark") for c in sink.commits(10) if c.metadata.get("bookmark")), None)
    bookmark = max(filter(None, [newest, previous if plan.mode == INCREMENTAL else None]), default=None)
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


def run(config: SourceConfig, spark: SparkSession, options: RunOptions = RunOptions(), *,
        client: WootricClient | None = None, now: datetime | None = None) -> list[StreamResult]:
    """Sync every selected stream; the first failure stops the run after recording it."""
    now = now or datetime.now(timezone.utc)
    run_id = f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    selected = [s for s in config.streams if not options.streams or s.stream in options.streams]
    client = client or WootricClient(config.api)
    if not options.dry_run:
        client.authenticate()  # bad credentials fail here, before any table is touched
    results = []
    for stream_config in selected:
        sink = DeltaSink(spark, stream_config.table_path(config.catalog), STREAMS[stream_config.stream],
                         table_properties(config))
        plan = plan_stream(config, stream_config, sink, options, now)
        log.info("%s: %s sync (%s) into %s", plan.stream.name, plan.mode, plan.reason, plan.path)
        if options.dry_run:
            results.append(StreamResult(plan.stream.name, plan.mode, plan.reason, status="dry-run"))
            continue
        results.append(sync_stream(spark, client, config, plan, run_id, sink))
    return results
