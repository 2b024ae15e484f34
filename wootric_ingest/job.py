"""One run of the job: for each selected stream, plan it, then sync it (extract to staging, land in Delta)."""
from __future__ import annotations

import logging
import uuid
from datetime import datetime, timezone

from pyspark.sql import SparkSession

from wootric_ingest.config import SourceConfig
from wootric_ingest.landing import StreamResult, sync_stream
from wootric_ingest.planning import RunOptions, plan_stream, table_properties
from wootric_ingest.sink import DeltaSink
from wootric_ingest.streams import STREAMS
from wootric_ingest.wootric import WootricClient

log = logging.getLogger(__name__)


def run(config: SourceConfig, spark: SparkSession, options: RunOptions = RunOptions(), *,
        client: WootricClient | None = None, now: datetime | None = None) -> list[StreamResult]:
    """Sync every selected stream; the first failure stops the run."""
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
        results.append(sync_stream(spark, client, config.catalog.root, plan, run_id, sink))
    return results
