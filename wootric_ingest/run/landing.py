"""One stream's sync once planned, in two steps that return what they did: `extract` (the API's pages to
staging, on the driver) returns `Fetched`; `land` (staging to at most one Delta commit, on the cluster)
returns `Landed`. A run lands one stream while the driver fetches the next.

Staging already shaped the records (typed rows in Parquet) and kept their census (rows, id range, newest
cursor, type mismatches, rejected records), so landing parses nothing and makes no pass of its own to learn
them: it reads the parts with the table's schema, nothing cached in memory, so nothing on the driver or in the
JVM grows with the stream, and writes the commit (an incremental one first keeps the rows that change the
table, on disk). Its one shuffle keeps one row per key (a record can be fetched twice: at a window's boundary,
when it moves while walked, when a resumed run fetches a range again). A full sync's partitions by id range, so
it writes its files by id range and the MERGEs after it, whose ids are recent, read and rewrite only the newest
files; an incremental sync's is by id, and the MERGE's join by id reuses it.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from wootric_ingest.api import WootricClient
from wootric_ingest.config import Deletes
from wootric_ingest.lake.lakehouse import Lakehouse
from wootric_ingest.lake.rejects import STAGED_REJECTS_SCHEMA
from wootric_ingest.lake.staging import StagingArea
from wootric_ingest.lake.state import SyncMode
from wootric_ingest.lake.tables import CommitInfo, StreamTable
from wootric_ingest.run.planning import Plan
from wootric_ingest.run.progress import Progress
from wootric_ingest.streams import Stream

log = logging.getLogger(__name__)

#: Rows per file a full sync writes (about 20 MB of responses): small enough that a MERGE of recent records
#: rewrites a small part of the table, large enough that the file count stays modest.
FULL_SYNC_FILE_ROWS = 100_000


@dataclass(frozen=True)
class Fetched:
    """What one extraction staged: records (this attempt's), API requests spent, seconds taken."""

    records: int
    api_requests: int
    seconds: float


@dataclass(frozen=True)
class Landed:
    """What one landing committed, as the table's history tells it (so a replayed run reports its first
    commit): the sync mode and reason of that commit, row counts, the version and bookmark after it."""

    mode: SyncMode
    reason: str
    rows_inserted: int
    rows_updated: int
    rows_deleted: int
    rows_marked_deleted: int
    table_version: int | None
    table_rows: int
    bookmark: str | None
    seconds: float
    records_rejected: int = 0
    type_mismatches: dict[str, int] = field(default_factory=dict)
    left_out: dict[str, int] = field(default_factory=dict)  # the gold refresh's responses left out, per reason


def extract(client: WootricClient, staging: StagingArea, plan: Plan, progress: Progress) -> Fetched:
    """The stream's pages to staging, skipping the ranges an earlier attempt of the run already staged.

    What was fetched is flushed even when the client fails, so a retry of the run resumes from it.
    """
    started = time.monotonic()
    requests_before = client.stats.snapshot()["requests"]
    watch = progress.start(plan.stream.name, plan.since, plan.until)
    try:
        for batch in client.pages(plan.stream, plan.since, plan.until, done=staging.completed):
            staging.write(batch.records, batch.completed)
            progress.page(watch, batch, client.requests_left())
    finally:
        staging.flush()
        progress.finish(watch)
    fetched = Fetched(
        staging.records, int(client.stats.snapshot()["requests"] - requests_before), time.monotonic() - started
    )
    log.info("%s: fetched %d records in %d requests", plan.stream.name, fetched.records, fetched.api_requests)
    return fetched


def prepare(lakehouse: Lakehouse, plan: Plan) -> None:
    """Make the stream's table ready to land in: create it (with its comments, properties and change feed) or
    reconcile it with what this version of the job writes. A run prepares it while the stream's pages arrive."""
    lakehouse.table(plan.config).ensure()


def land(lakehouse: Lakehouse, staging: StagingArea, plan: Plan, run_id: str) -> Landed:
    """Staged records to at most one commit into the table `prepare` made ready: a MERGE for an incremental sync
    (none when no row changes), an overwrite for a full one.

    A full sync commits even when the source is empty (the table must be empty then too, and the commit
    records the full sync for the cron decision), then vacuums files older than the retention. Records without
    a usable id go to the rejected table instead. When this run continues an interrupted run's staging, the
    commit names that run (`staging_run`), so the staging is known to be landed.
    """
    started = time.monotonic()
    spark, stream, table = lakehouse.spark, plan.stream, lakehouse.table(plan.config)
    census, rows, rejected = staging.census(), None, 0
    if census.rejected:
        unkeyed = spark.read.schema(STAGED_REJECTS_SCHEMA).parquet(*staging.rejected_parts())
        rejected = lakehouse.rejected.record(stream.name, run_id, unkeyed)
        log.warning(
            "%s: %d records without a usable id went to %s, with the reason",
            stream.name,
            rejected,
            lakehouse.rejected.table,
        )
    if census.rows:
        staged = spark.read.schema(table.schema).parquet(*staging.parts()).withColumn("_run_id", F.lit(run_id))
        files = -(-census.rows // FULL_SYNC_FILE_ROWS) if plan.mode is SyncMode.FULL else None
        rows = latest_per_key(stream, staged, files)
    mismatches = {column: n for column, n in census.type_mismatches.items() if n}
    if mismatches:
        log.warning(
            "%s: values that did not fit their column's type landed as null (kept in _raw): %s", stream.name, mismatches
        )
    previous = plan.bookmark if plan.mode is SyncMode.INCREMENTAL else None  # a null never becomes the bookmark
    bookmark = max(filter(None, [census.newest, previous]), default=None)
    attempt = uuid.uuid4().hex[:12]  # tells this landing's commit from a replayed run's earlier one
    metadata = {**plan.commit_metadata(run_id, bookmark), "attempt": attempt}
    if staging.run_id != run_id:
        metadata["staging_run"] = staging.run_id
    if plan.mode is SyncMode.FULL:  # an overwrite a replay repeats is skipped by Delta, silently: `attempt` tells
        source = rows if rows is not None else spark.createDataFrame([], table.schema)
        table.full_sync(
            source,
            metadata,
            run_id,
            write=lakehouse.config.catalog.full_sync_write,
            soft=plan.config.deletes is Deletes.SOFT,
            at=plan.until,
        )
        version_now, commit = table.newest(run_id)
        committed_now = commit is not None and commit.metadata.get("attempt") == attempt
        vacuum_due = committed_now and bool(commit and commit.read_version)  # 0 is the empty table's creation
    else:  # a MERGE commits exactly when it says so (a replay finds no row to change)
        committed_now = rows is not None and table.merge(rows, metadata, run_id, census.ids)
        if rows is not None and not committed_now:
            log.info("%s: nothing new or changed among %d records; no commit", stream.name, census.rows)
        version_now, commit = table.newest(run_id)
        vacuum_due = False
    if commit is not None and not committed_now:
        log.info("%s: run %s already committed version %d; nothing written again", stream.name, run_id, commit.version)
    if vacuum_due:
        table.vacuum(lakehouse.config.delta_log_retention_days)
    if commit is None:
        mode, reason, changes, version, bookmark = plan.mode, plan.reason, None, version_now, plan.bookmark
    else:
        mode, reason = SyncMode(commit.metadata["sync"]), commit.metadata["reason"]
        changes, version, bookmark = table.changes(commit), commit.version, commit.metadata.get("bookmark")
    return Landed(
        mode=mode,
        reason=reason,
        rows_inserted=changes.inserted if changes else 0,
        rows_updated=changes.updated if changes else 0,
        rows_deleted=changes.deleted if changes else 0,
        rows_marked_deleted=changes.marked if changes else 0,
        table_version=version,
        table_rows=_table_rows(table, commit if committed_now else None),
        bookmark=bookmark,
        seconds=time.monotonic() - started,
        records_rejected=rejected,
        type_mismatches=mismatches,
    )


def _table_rows(table: StreamTable, commit: CommitInfo | None) -> int:
    """The table's rows: an overwrite this landing just committed says how many it wrote (no job to count them);
    otherwise (a MERGE, or a full sync's commit that changed nothing, an empty append) they are counted."""
    if commit is not None and commit.replaced and "numOutputRows" in commit.metrics:
        return int(commit.metrics["numOutputRows"])
    return table.count()


def latest_per_key(stream: Stream, rows: DataFrame, files: int | None = None) -> DataFrame:
    """One row per key (the stream's `key`): the newest version (`updated_at`; segments have none), then the latest
    fetch, then the raw text, so ties resolve the same way whatever order pages arrived in.

    With `files` (a full sync), the shuffle partitions by id range into that many partitions and the window
    reuses it, so each file written holds a narrow id range and a later MERGE can skip the files outside its ids;
    into one partition, Spark needs no sampling pass for the range. Without (an incremental sync), the window's
    own shuffle by id, which the MERGE's join by id reuses."""
    version = [F.col(stream.version_field).desc_nulls_last()] if stream.version_field else []
    order = Window.partitionBy(stream.key).orderBy(*version, F.col("_extracted_at").desc(), F.col("_raw").desc())
    ranged = rows.repartitionByRange(files, stream.key) if files else rows
    return ranged.withColumn("_rank", F.row_number().over(order)).where("_rank = 1").drop("_rank")
