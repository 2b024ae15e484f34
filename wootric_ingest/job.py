"""One run of the job: for each selected stream, plan it, then sync it (extract to staging, land in Delta).

One Spark session serves every stream. The driver fetches the streams one after another (the client's
rate limit is shared by all of them); each fetched stream is handed to a landing thread of its own, so it
lands while the next stream is fetched, beside the landings of streams fetched before. A stream lands once
per run, after its own fetch, so its commits keep their order; results come back in stream order.
"""
from __future__ import annotations

import logging
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone

from pyspark.sql import SparkSession

from wootric_ingest import locking, redaction
from wootric_ingest.config import SourceConfig
from wootric_ingest.history import RunHistory
from wootric_ingest.landing import StreamResult, extract, land_staged
from wootric_ingest.planning import Plan, RunOptions, plan_stream, table_properties
from wootric_ingest.resume import staging_for
from wootric_ingest.sink import DeltaSink, metastore_name
from wootric_ingest.staging import StagingArea
from wootric_ingest.storage import storage_for
from wootric_ingest.streams import STREAMS
from wootric_ingest.wootric import WootricClient

log = logging.getLogger(__name__)

_MAX_ERROR_CHARS = 4000


def run(config: SourceConfig, spark: SparkSession, options: RunOptions = RunOptions(), *,
        client: WootricClient | None = None, now: datetime | None = None) -> list[StreamResult]:
    """Sync every selected stream, recording each in the run history; a failed stream gets status `failed`
    (and its history row) and the others still run."""
    now = now or datetime.now(timezone.utc)
    run_id = options.run_id or f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    selected = [s for s in config.streams if not options.streams or s.stream in options.streams]
    client = client or WootricClient(config.api)
    if not options.dry_run:
        client.authenticate()  # bad credentials fail here, before any table is touched
    history = RunHistory(spark, config.catalog.root, table_properties(config), fresh=options.run_id is None)
    files = storage_for(config.catalog.root, spark)
    results: list[StreamResult] = []
    locks = locking.for_run(config, () if options.dry_run else selected, run_id, spark)  # a dry run writes nothing
    with locks, ThreadPoolExecutor(max_workers=max(len(selected), 1),
                                   thread_name_prefix="wootric-landing") as lander:
        landed: list[Future[StreamResult]] = []
        for stream_config in selected:
            locks.check()
            sink = DeltaSink(spark, stream_config.table_path(config.catalog), STREAMS[stream_config.stream],
                             table_properties(config), metastore_name(config.catalog, stream_config))
            started, plan = datetime.now(timezone.utc), None
            try:
                plan = plan_stream(config, stream_config, sink, options, now)
                log.info("%s: %s sync (%s) into %s", plan.stream.name, plan.mode, plan.reason, plan.path)
                if options.dry_run:
                    results.append(StreamResult(plan.stream.name, plan.mode, plan.reason, status="dry-run"))
                    continue
                staging = staging_for(config.catalog.root, run_id, plan.stream.name, files, sink)
                fetched = extract(client, staging, plan)
            except Exception as e:  # one stream's failure is recorded and reported; the other streams still run
                failed = _failed(stream_config.stream, sink, plan, e)
                landed.append(lander.submit(_record, history, run_id, failed, started))
                continue
            landed.append(lander.submit(_land, spark, staging, plan, run_id, sink, fetched, history, started))
        results.extend(future.result() for future in landed)
    return results


def _land(spark: SparkSession, staging: StagingArea, plan: Plan, run_id: str, sink: DeltaSink,
          result: StreamResult, history: RunHistory, started: datetime) -> StreamResult:
    """On a landing thread: land one fetched stream, then record it in the run history."""
    try:
        result = land_staged(spark, staging, plan, run_id, sink, result)
    except Exception as e:  # recorded like a failed fetch; the other streams still land
        result = _failed(plan.stream.name, sink, plan, e, result)
    return _record(history, run_id, result, started)


_RECORDING = threading.Lock()


def _record(history: RunHistory, run_id: str, result: StreamResult, started: datetime) -> StreamResult:
    """Add the stream's row to the run history; one row at a time, as concurrent MERGEs into that one table
    would conflict and wait out retries."""
    result.started_at, result.finished_at = started, datetime.now(timezone.utc)
    with _RECORDING:
        history.record(run_id, result)
    return result


def _failed(stream: str, sink: DeltaSink, plan: Plan | None, error: Exception,
            fetched: StreamResult | None = None) -> StreamResult:
    """A failed stream's result: what it had fetched (if anything) and why it failed."""
    log.error("%s: sync failed", stream, exc_info=error)
    result = StreamResult(stream, plan.mode if plan else "", plan.reason if plan else "", status="failed",
                          path=sink.path, since=plan and plan.since, until=plan and plan.until,
                          error=_error_text(error))
    if fetched is not None:
        result.records_fetched, result.api_requests = fetched.records_fetched, fetched.api_requests
    return result


def _error_text(error: Exception) -> str:
    """An exception as history and summaries show it: type and message, secrets redacted, bounded in size."""
    return redaction.redact(f"{type(error).__name__}: {error}".strip())[:_MAX_ERROR_CHARS]
