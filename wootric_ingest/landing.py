"""One stream's sync once planned, in two steps: `extract` (the API's pages to staging, on the driver) and
`land_staged` (staging to one Delta commit, on the cluster), so a run can land one stream while the driver
fetches the next.

Landing reads the staged files with an explicit schema and shapes them with Spark expressions, in two
passes over the files and nothing cached in memory, so nothing on the driver or in the JVM grows with the
stream: a census (counts, distinct ids, id range, newest cursor; Spark parses only the id and cursor of each
record), then the commit (an incremental one first keeps the rows that change the table, on disk). A full
sync counts type mismatches while it writes; an incremental one, usually small, in the census. A full sync
writes its files by id range (one shuffle, which also keeps one row per id when the census found an id
twice), so the MERGEs after it, whose ids are recent, read and rewrite only the newest files.
"""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from pyspark.sql import Observation, SparkSession
from pyspark.sql import functions as F

from wootric_ingest.planning import FULL, INCREMENTAL, Plan
from wootric_ingest.rejects import RejectedRecords, key_problem, split
from wootric_ingest.shaping import STAGED_SCHEMA, latest_per_id, observe_type_mismatches, shape, summarize
from wootric_ingest.sink import DeltaSink
from wootric_ingest.staging import StagingArea
from wootric_ingest.streams import PRIMARY_KEY
from wootric_ingest.wootric import WootricClient

log = logging.getLogger(__name__)

#: Rows per file a full sync writes (about 20 MB of responses): small enough that a MERGE of recent records
#: rewrites a small part of the table, large enough that the file count stays modest.
FULL_SYNC_FILE_ROWS = 100_000


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
    path: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    bookmark: str | None = None
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_deleted: int = 0
    table_version: int | None = None
    type_mismatches: dict[str, int] = field(default_factory=dict)
    records_rejected: int = 0


def extract(client: WootricClient, staging: StagingArea, plan: Plan) -> StreamResult:
    """The stream's pages to staging, skipping the ranges an earlier attempt of the run already staged.

    What was fetched is flushed even when the client fails, so a retry of the run resumes from it.
    """
    result = StreamResult(plan.stream.name, plan.mode, plan.reason, path=plan.path, since=plan.since,
                          until=plan.until)
    started = time.monotonic()
    requests_before = client.stats.snapshot()["requests"]
    try:
        for batch in client.pages(plan.stream, plan.since, plan.until, done=staging.completed):
            staging.write(batch.records, batch.completed)
    finally:
        staging.flush()
        result.records_fetched = staging.records
        result.api_requests = int(client.stats.snapshot()["requests"] - requests_before)
        result.seconds = time.monotonic() - started
    log.info("%s: fetched %d records in %d requests", plan.stream.name, staging.records, result.api_requests)
    return result


def land_staged(spark: SparkSession, staging: StagingArea, plan: Plan, run_id: str, sink: DeltaSink,
                result: StreamResult) -> StreamResult:
    """Land the stream's staged records, then remove its staging; after a failure the staging stays."""
    started = time.monotonic()
    land(spark, staging.parts(), plan, run_id, sink, result,
         rejected=RejectedRecords(spark, staging.root, sink.properties), staging_run=staging.run_id)
    staging.cleanup()
    result.seconds += time.monotonic() - started
    return result


def land(spark: SparkSession, parts: list[str], plan: Plan, run_id: str, sink: DeltaSink,
         result: StreamResult, *, rejected: RejectedRecords, staging_run: str | None = None) -> None:
    """Staged part files to at most one commit: a MERGE for an incremental sync (none when no row changes),
    an overwrite for a full one.

    A full sync commits even when the source is empty (the table must be empty then too, and the commit
    records the full sync for the cron decision), then vacuums files older than the retention. Counts come
    from the commit the run made, so a replayed run reports what it committed the first time. Records without a
    usable id go to `rejected` instead. `staging_run` is the run whose staging this is, when this run resumed
    an interrupted one's: the commit names it, so that staging is known to be landed.
    """
    result.path, result.since, result.until = sink.path, plan.since, plan.until
    sink.prepare()
    rows, newest, observation, ids = None, None, None, None
    if parts:
        staged = spark.read.schema(STAGED_SCHEMA).option("mode", "FAILFAST").json(parts)
        shaped = shape(staged, plan.stream, run_id)
        keyed, unkeyed = split(shaped)
        summary = summarize(shaped, plan.stream, key_problem(F.col(PRIMARY_KEY), F.col("_raw")).isNull(),
                            types=plan.mode != FULL).first()
        if summary["unkeyed"]:
            result.records_rejected = rejected.record(plan.stream.name, run_id, unkeyed)
            log.warning("%s: %d records without a usable id went to %s, with the reason", plan.stream.name,
                        result.records_rejected, rejected.path)
        if summary["ids"] != summary["records"]:
            rows = latest_per_id(keyed)
        elif plan.mode == FULL:  # files by id range: a later MERGE reads and rewrites only the newest ones
            rows = keyed.repartitionByRange(max(1, -(-summary["records"] // FULL_SYNC_FILE_ROWS)), PRIMARY_KEY)
        else:
            rows = keyed
        newest = summary["newest"]
        ids = (summary["first_id"], summary["last_id"]) if summary["records"] else None
        if plan.mode == FULL:  # a full sync can be large: count type mismatches while writing, not in a pass
            observation = Observation(f"type_mismatches_{plan.stream.name}_{uuid.uuid4().hex}")
            rows = observe_type_mismatches(rows, plan.stream, observation)
        else:
            _report_type_mismatches(plan, result, summary["type_mismatches"])
    bookmark = max(filter(None, [newest, plan.bookmark if plan.mode == INCREMENTAL else None]), default=None)
    metadata = plan.commit_metadata(run_id, bookmark)
    if staging_run and staging_run != run_id:
        metadata["staging_run"] = staging_run
    version_before = sink.version()
    if plan.mode == FULL:
        sink.overwrite(rows if rows is not None else spark.createDataFrame([], sink.schema), metadata, run_id)
    elif rows is not None and not sink.merge(rows, metadata, run_id, ids):
        log.info("%s: nothing new or changed among %d records; no commit", plan.stream.name, summary["records"])
    commit = sink.commit_of(run_id)
    committed_now = commit is not None and commit.version > version_before
    if commit is not None:
        if not committed_now:
            log.info("%s: run %s already committed version %d; nothing written again", plan.stream.name, run_id,
                     commit.version)
        changes = sink.changes(commit)
        result.mode, result.reason = commit.metadata["sync"], commit.metadata["reason"]
        result.rows_inserted, result.rows_updated = changes.inserted, changes.updated
        result.rows_deleted = changes.deleted
        result.rows_written = changes.inserted + changes.updated
        result.table_version, result.bookmark = commit.version, commit.metadata.get("bookmark")
    else:
        result.table_version, result.bookmark = version_before, plan.bookmark
    if committed_now and observation is not None:  # complete only if the write ran, not when a replay skipped it
        _report_type_mismatches(plan, result, observation.get)
    if committed_now and plan.mode == FULL and version_before > 0:  # version 0 is the empty table's creation
        sink.vacuum()
    result.table_rows = sink.count()


def _report_type_mismatches(plan: Plan, result: StreamResult, counts: dict[str, int]) -> None:
    result.type_mismatches = {column: n for column, n in counts.items() if n}
    if result.type_mismatches:
        log.warning("%s: values that did not fit their column's type landed as null (kept in _raw): %s",
                    plan.stream.name, result.type_mismatches)
