"""Delta tables of the lakehouse: created with their schema, comments and properties; a stream's table also
MERGEd (incremental), overwritten in one commit (full sync) and vacuumed.

Each data commit carries our bookkeeping in its `userMetadata` (run id, sync mode and why, bookmark, last
full sync), so the table and its history are the only state. Each is also an idempotent Delta write keyed
on the run id (`txnAppId`), so replaying a run after a crash that followed its commit changes nothing.
Session confs are shared by every thread of a session, so a write that needs them gets its own
`spark.newSession()`; concurrent streams never race on one another's settings.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TypeVar

from delta.exceptions import (
    ConcurrentAppendException,
    ConcurrentDeleteDeleteException,
    ConcurrentDeleteReadException,
    ConcurrentTransactionException,
    ConcurrentWriteException,
    DeltaConcurrentModificationException,
    MetadataChangedException,
    ProtocolChangedException,
)
from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, MapType, StructType, TimestampType
from pyspark.storagelevel import StorageLevel

from wootric_ingest.config import FullSyncWrite
from wootric_ingest.lake.schemas import marked, table_schema
from wootric_ingest.streams import Stream

log = logging.getLogger(__name__)

METADATA_KEY = "wootric_ingest"
_USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"
_TXN_APP_ID_CONF = "spark.databricks.delta.write.txnAppId"
_TXN_VERSION_CONF = "spark.databricks.delta.write.txnVersion"
_TXN_VERSION = 0  # the app id is unique per run, so every run's one data commit is version 0 of its own app id

#: Commit conflicts with a concurrent writer: the commit did not happen and is safe to try again. They reach
#: Python converted to these classes only where `delta.exceptions.captured` was imported, and as a plain
#: Py4JJavaError elsewhere, so both are recognised (the Java classes have the same names).
CONFLICTS = (
    ConcurrentAppendException,
    ConcurrentDeleteReadException,
    ConcurrentDeleteDeleteException,
    ConcurrentTransactionException,
    ConcurrentWriteException,
    DeltaConcurrentModificationException,
    MetadataChangedException,
    ProtocolChangedException,
)
_JAVA_CONFLICTS = {f"io.delta.exceptions.{c.__name__}" for c in CONFLICTS}
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 16.0)


def newer(stream: Stream) -> str:
    """When a matched row is rewritten: only when the incoming record is newer, i.e. a later version field
    (`updated_at`), or the same (or an unknown) one with different content, an edit within the same second; or
    when the row was marked deleted and its record is back. Unchanged rows stay put. A stream without a version
    field (segments) rewrites a row whose content differs."""
    version = stream.version_field
    later = f"coalesce(s.{version} >= t.{version}, true) AND " if version else ""
    return f"({later}NOT (s._raw <=> t._raw)) OR t._deleted_at IS NOT NULL"


DELETED_AT = "_deleted_at"
_GONE = "_gone"  # the MERGE source's marker of an id the source no longer has

T = TypeVar("T")


def with_retries(action: Callable[[], T], what: str) -> T:
    """Run a Delta commit, trying again after a conflict with a concurrent writer; other errors propagate."""
    for delay in RETRY_DELAYS:
        try:
            return action()
        except Exception as e:
            conflict = _conflict(e)
            if conflict is None:
                raise
            log.warning("%s conflicted with a concurrent commit (%s); retrying in %.0fs", what, conflict, delay)
            time.sleep(delay)
    return action()


def _conflict(error: Exception) -> str | None:
    """The conflict's class name if `error` is a commit conflict, else None."""
    if isinstance(error, CONFLICTS):
        return type(error).__name__
    java = getattr(error, "java_exception", None)
    name = java.getClass().getName() if java is not None else ""
    return name.rsplit(".", 1)[-1] if name in _JAVA_CONFLICTS else None


@dataclass(frozen=True)
class CommitInfo:
    """One of our commits, as the table's history records it."""

    version: int
    read_version: int | None
    operation: str
    metrics: dict[str, str]
    metadata: dict
    parameters: dict[str, str] = field(default_factory=dict)  # the operation's, e.g. a WRITE's `mode`

    @property
    def replaced(self) -> bool:
        """Whether the commit replaced the table's rows (an overwrite), so its output rows are all the table has."""
        return self.operation == "WRITE" and self.parameters.get("mode") == "Overwrite"


@dataclass(frozen=True)
class RowChanges:
    inserted: int
    updated: int
    deleted: int
    marked: int = 0  # rows marked deleted (`_deleted_at` set) by a full sync with soft deletes


class CatalogProblem(RuntimeError):
    """The metastore refused us something: a missing catalog or schema, a missing privilege, or a table by our
    name that is not ours to write (another schema, another location). One line naming the object."""


class Table:
    """One Delta table: at a path (optionally also registered in the metastore under `name`, quoted), or a
    managed table addressed only by `name` (`path` None: Unity Catalog decides where its files live).

    `ensure()` creates it with the schema, column comments, table comment and properties when it is missing;
    otherwise it adds the columns a newer version of the job defines (top level, with their comments; existing
    rows read them as null), and reconciles the properties with one ALTER and the column comments with one per
    column, only when they differ. `tags` (Unity Catalog only) are the `pii` tags of top-level columns: set when
    the table is created or a comment changed (the personal data policy changed), and removed from the others.
    """

    def __init__(
        self,
        spark: SparkSession,
        schema: StructType,
        properties: dict[str, str],
        *,
        path: str | None = None,
        name: str | None = None,
        comment: str = "",
        tags: dict[str, str] | None = None,
    ):
        if path is None and name is None:
            raise ValueError("a table needs a path or a name")
        self.spark, self.schema, self.properties = spark, schema, properties
        self.path, self.name, self.comment, self.tags = path, name, comment, tags

    def __str__(self) -> str:
        return self.path or self.name or ""

    @property
    def managed(self) -> bool:
        return self.path is None

    @property
    def sql(self) -> str:
        """The table in SQL: its name when managed, else its path."""
        return self.name if self.path is None else f"delta.{quote(self.path)}"  # type: ignore[return-value]

    def exists(self) -> bool:
        if self.path is None:
            with catalog_problems(self):
                return self.spark.catalog.tableExists(unquoted(self.sql))
        return DeltaTable.isDeltaTable(self.spark, self.path)

    def read(self, spark: SparkSession | None = None) -> DataFrame:
        """The table, through `spark` when given (a session with confs of its own)."""
        session = spark or self.spark
        return session.read.table(self.sql) if self.path is None else session.read.format("delta").load(self.path)

    def read_version(self, version: int, spark: SparkSession | None = None) -> DataFrame:
        """The table as of one of its versions (time travel)."""
        return (spark or self.spark).sql(f"SELECT * FROM {self.sql} VERSION AS OF {int(version)}")

    def change_feed(self, first: int, last: int, spark: SparkSession | None = None) -> DataFrame:
        """The change data feed of versions `first` to `last` (inclusive): each changed row with `_change_type`."""
        reader = (
            (spark or self.spark)
            .read.format("delta")
            .option("readChangeFeed", "true")
            .option("startingVersion", int(first))
            .option("endingVersion", int(last))
        )
        return reader.table(self.sql) if self.path is None else reader.load(self.path)

    def delta(self, spark: SparkSession | None = None) -> DeltaTable:
        if self.path is None:
            return DeltaTable.forName(spark or self.spark, self.sql)
        return DeltaTable.forPath(spark or self.spark, self.path)

    def check(self) -> None:
        """Refuse, with one line naming it, a table by our name or at our path that this job cannot have
        written: another kind of table under our managed name, a name registered at another location, a column
        of another type. Nothing is ever written to such a table."""
        with catalog_problems(self):
            if not self.exists():
                return
            if self.path is None:
                found = self.spark.catalog.getTable(unquoted(self.sql))
                if found.tableType != "MANAGED":
                    raise CatalogProblem(
                        f"{self.name} exists as an {found.tableType.lower()} table; this job writes "
                        "a managed table by that name (rename or drop the existing one, or change "
                        "the name)"
                    )
            elif self.name and self.spark.catalog.tableExists(unquoted(self.name)):
                location = self._registered_location()
                if location.removeprefix("file:").rstrip("/") != self.path.removeprefix("file:").rstrip("/"):
                    raise CatalogProblem(
                        f"{self.name} is registered at {location}, not at {self.path}: it is not "
                        "this job's table (rename or drop it, or change the name)"
                    )
        existing = {f.name: f for f in self.read().schema.fields}
        clashing = [
            f
            for f in self.schema.fields
            if f.name in existing and _type(existing[f.name].dataType) != _type(f.dataType)
        ]
        if clashing:
            f = clashing[0]
            raise CatalogProblem(
                f"{self} has column {f.name} of type {existing[f.name].dataType.simpleString()}, "
                f"where this job writes {f.dataType.simpleString()}: it is not this job's table "
                "(rename or drop it, or point the config elsewhere)"
            )

    def ensure(self) -> None:
        with catalog_problems(self):
            if self.name:
                self.spark.sql(f"CREATE SCHEMA IF NOT EXISTS {self.name.rsplit('.', 1)[0]}")
            created = not self.exists()
            if created:
                with_retries(self._create, f"creating {self}")
            self.check()
            if self.name and self.path is not None and not self.spark.catalog.tableExists(unquoted(self.name)):
                self.spark.sql(f"CREATE TABLE IF NOT EXISTS {self.name} USING DELTA LOCATION {sql_string(self.path)}")
        current_schema = self.read().schema
        existing = {f.name: f for f in current_schema.fields}
        missing = [f for f in self.schema.fields if f.name not in existing]
        if missing:
            columns = ", ".join(
                f"{quote(f.name)} {f.dataType.simpleString()} COMMENT {sql_string(f.metadata.get('comment', ''))}"
                for f in missing
            )
            log.info("%s: adding columns %s", self, [f.name for f in missing])
            with_retries(
                lambda: self.spark.sql(f"ALTER TABLE {self.sql} ADD COLUMNS ({columns})"), f"adding columns to {self}"
            )
        current = {
            row["key"]: row["value"]  # SHOW TBLPROPERTIES, not detail(): that one costs seconds in a new JVM
            for row in self.spark.sql(f"SHOW TBLPROPERTIES {self.sql}").collect()
        }
        drift = {k: v for k, v in self.properties.items() if current.get(k) != v}
        if drift:
            settings = ", ".join(f"{sql_string(k)} = {sql_string(v)}" for k, v in sorted(drift.items()))
            log.info("%s: setting table properties %s", self, drift)
            with_retries(
                lambda: self.spark.sql(f"ALTER TABLE {self.sql} SET TBLPROPERTIES ({settings})"),
                f"setting properties on {self}",
            )
        comments = comment_statements(self.sql, current_schema, self.schema)
        if comments:
            log.info("%s: updating %d column comments", self, len(comments))
        if comments or created:
            tags = tag_statements(self.sql, self.tags, self.schema) if self.tags is not None else []
            for statement in comments + tags:
                with_retries(partial(self.spark.sql, statement), f"commenting and tagging the columns of {self}")

    def append(self, rows: DataFrame) -> None:
        """Add rows in one commit (an append never conflicts with another append)."""
        rows.select(*self.schema.fieldNames()).writeTo(self.sql).append()

    def _create(self) -> None:
        """A managed table by its name (any number of parts; the schema's comments, nested ones too, kept); a path
        table at its path (registered by `ensure`)."""
        if self.path is not None:
            builder = DeltaTable.createIfNotExists(self.spark).location(self.path).addColumns(self.schema)
            builder = builder.comment(self.comment)
            for key, value in self.properties.items():
                builder = builder.property(key, value)
            builder.execute()
            return
        writer = self.spark.createDataFrame([], self.schema).writeTo(self.sql).using("delta")
        for key, value in {"comment": self.comment, **self.properties}.items():
            writer = writer.tableProperty(key, value)
        try:
            writer.create()
        except Exception:
            if not self.exists():  # not a concurrent run creating it first
                raise

    def _registered_location(self) -> str:
        return next(
            (
                r["data_type"]
                for r in self.spark.sql(f"DESCRIBE TABLE EXTENDED {self.name}").collect()
                if r["col_name"] == "Location"
            ),
            "",
        )

    def commits(self, limit: int = 1000) -> list[CommitInfo]:
        """Our commits, newest first (commits by others, such as OPTIMIZE or VACUUM, are skipped)."""
        return self.history(limit)[1]

    def history(self, limit: int = 1000) -> tuple[int, list[CommitInfo]]:
        """The newest version and our commits among the newest `limit` versions (newest first), from one read of
        the history."""
        history = (
            self.delta()
            .history(limit)
            .select("version", "readVersion", "operation", "operationParameters", "operationMetrics", "userMetadata")
            .collect()
        )
        result = []
        for row in history:
            meta = decode(row["userMetadata"]) if row["userMetadata"] is not None else None
            if meta is not None:
                result.append(
                    CommitInfo(
                        row["version"],
                        row["readVersion"],
                        row["operation"],
                        dict(row["operationMetrics"] or {}),
                        meta,
                        dict(row["operationParameters"] or {}),
                    )
                )
        return max(row["version"] for row in history), result

    def commit_of(self, run_id: str) -> CommitInfo | None:
        """The commit a run made to this table, if it made one (also after a crash and a replay)."""
        return self.newest(run_id)[1]

    def newest(self, run_id: str) -> tuple[int, CommitInfo | None]:
        """The table's newest version, and the commit run `run_id` made if it made one, from one read of the
        history."""
        version, commits = self.history()
        return version, next((c for c in commits if c.metadata.get("run_id") == run_id), None)

    def version(self) -> int:
        return one(self.delta().history(1))["version"]

    def count(self) -> int:
        return self.read().count()

    def max_value(self, column: str) -> str | None:
        return one(self.read().agg(F.max(column)))[0]

    def vacuum(self, retention_days: int) -> None:
        """Delete files the table stopped using longer ago than its `delta.deletedFileRetentionDuration`
        (`retention_days`).

        A table whose whole history (version 0 included) is younger than the retention cannot have such files,
        so it is left alone: a vacuum lists every file of the table, which costs seconds even on a small one.
        Our tables are unpartitioned, one directory, so the listing gets the cluster's parallelism instead of
        Spark's default of 10,000 tasks (which alone takes tens of seconds on a small machine)."""
        cutoff = F.current_timestamp() - F.expr(f"INTERVAL {int(retention_days)} DAYS")
        if one(self.delta().history().agg((F.min("version") == 0) & (F.min("timestamp") > cutoff)))[0]:
            return
        session = self.spark.newSession()
        session.conf.set(
            "spark.sql.sources.parallelPartitionDiscovery.parallelism", str(self.spark.sparkContext.defaultParallelism)
        )
        self.delta(session).vacuum()

    def delete_matching(self, rows: DataFrame, keys: tuple[str, ...], metadata: dict, run_id: str) -> None:
        """Delete the table's rows that `rows` match on `keys`, in one commit carrying `metadata`. A MERGE, so the
        log records the join (`t.id = s.id`), never the values that chose the rows, as a DELETE's predicate would."""
        session = self._committing(metadata, run_id)
        condition = " AND ".join(f"t.{quote(k)} <=> s.{quote(k)}" for k in keys)
        source = rows.select(*keys).distinct()
        with_retries(
            lambda: self.delta(session).alias("t").merge(source.alias("s"), condition).whenMatchedDelete().execute(),
            f"erasing rows from {self}",
        )

    def _committing(self, metadata: dict, run_id: str) -> SparkSession:
        """A session of the commit's own carrying its metadata and idempotency key."""
        session = self.spark.newSession()
        session.conf.set(_USER_METADATA_CONF, encode(metadata))
        session.conf.set(_TXN_APP_ID_CONF, txn_app_id(run_id))
        session.conf.set(_TXN_VERSION_CONF, str(_TXN_VERSION))
        return session


class StreamTable(Table):
    """One stream's table: rows unique by the stream's key, written by one MERGE or one overwrite per run."""

    def __init__(
        self,
        spark: SparkSession,
        stream: Stream,
        properties: dict[str, str],
        *,
        path: str | None = None,
        name: str | None = None,
        comment: str = "",
        labels: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
    ):
        """`labels`: the personal data policy's label per column path, appended to its comment."""
        schema = marked(table_schema(stream), labels or {})
        super().__init__(spark, schema, properties, path=path, name=name, comment=comment, tags=tags)
        self.stream = stream
        self.newer = newer(stream)

    def _compared(self) -> DataFrame:
        """The columns of the table a MERGE compares incoming records with (see `newer`)."""
        version = [self.stream.version_field] if self.stream.version_field else []
        return self.read().select(self.stream.key, *version, "_raw", DELETED_AT)

    def full_sync(
        self, rows: DataFrame, metadata: dict, run_id: str, *, write: FullSyncWrite, soft: bool, at: datetime
    ) -> None:
        """Make the table equal to the source (`rows`: every record it has now), in one commit.

        `rewrite` overwrites the table. `merge` MERGEs only the rows that change it: new ids, records newer than
        their row (see `newer`), and ids the source no longer has, so its change feed holds exactly those rows and
        files of unchanged rows are not rewritten; a MERGE into an empty table is an overwrite (the same rows,
        files by id range). An id the source no longer has is removed, or with `soft` its row keeps its last
        content and gets `_deleted_at` = `at` (a row already marked keeps its first mark). Both ways leave the
        same rows; a full sync that changes nothing still commits, since its commit records the full sync.
        """
        if write is FullSyncWrite.MERGE and not self.read().isEmpty():
            self._reconcile(rows, metadata, run_id, soft=soft, at=at)
            return
        if soft:
            gone = self.read().join(rows.select(self.stream.key), self.stream.key, "left_anti")
            rows = _live(rows).unionByName(gone.withColumn(DELETED_AT, F.coalesce(DELETED_AT, F.lit(at))))
        self.overwrite(rows, metadata, run_id)

    def overwrite(self, rows: DataFrame, metadata: dict, run_id: str) -> None:
        """Replace the table's rows in one commit: readers see the old table or the new one, never half.
        The table's metadata (properties, comments) is kept: a WRITE in overwrite mode, not a REPLACE."""
        writer = (
            _live(rows)
            .select(*self.schema.fieldNames())
            .writeTo(self.sql)
            .option("userMetadata", encode(metadata))
            .option("txnAppId", txn_app_id(run_id))
            .option("txnVersion", str(_TXN_VERSION))
        )
        with_retries(lambda: writer.overwrite(F.lit(True)), f"overwriting {self}")

    def overwrite_nothing(self, metadata: dict, run_id: str) -> None:
        """A commit that changes no row, carrying the run's metadata (and idempotency key)."""
        writer = (
            self.spark.createDataFrame([], self.schema)
            .writeTo(self.sql)
            .option("userMetadata", encode(metadata))
            .option("txnAppId", txn_app_id(run_id))
            .option("txnVersion", str(_TXN_VERSION))
        )
        with_retries(writer.append, f"recording a full sync in {self}")

    def _reconcile(self, rows: DataFrame, metadata: dict, run_id: str, *, soft: bool, at: datetime) -> None:
        """The `merge` full sync: one MERGE of the changing rows and of markers for the ids that are gone.

        The source's unchanged records stay out of it: Delta rewrites every file holding a matched row, even one
        no clause then changes (`WHEN NOT MATCHED BY SOURCE` would need them all in the source, matching every
        row). The ids that are gone come from the table's side instead, each as a marker row."""
        table = self._compared()
        key = F.col(f"t.{self.stream.key}") == F.col(f"s.{self.stream.key}")
        changing = _live(rows).alias("s").join(table.alias("t"), key, "left").where(self.newer).select("s.*")
        gone = table.where(F.col(DELETED_AT).isNull()) if soft else table
        gone = gone.join(rows.select(self.stream.key), self.stream.key, "left_anti").select(self.stream.key)
        source = (
            changing.withColumn(_GONE, F.lit(False))
            .unionByName(gone.withColumn(_GONE, F.lit(True)), allowMissingColumns=True)
            .persist(StorageLevel.DISK_ONLY)
        )
        try:
            marked = source.where(_GONE).count() if soft else 0
            session = self._committing({**metadata, "rows_marked_deleted": marked}, run_id)
            if source.isEmpty():  # nothing changed: an empty commit still records the full sync
                self.overwrite_nothing(metadata, run_id)
                return
            columns: dict[str, str | Column] = {c: f"s.`{c}`" for c in self.schema.fieldNames()}
            merge = self.delta(session).alias("t").merge(source.alias("s"), key)
            if soft:
                merge = merge.whenMatchedUpdate(condition=f"s.{_GONE}", set={DELETED_AT: F.lit(at)})
            else:
                merge = merge.whenMatchedDelete(condition=f"s.{_GONE}")
            merge = merge.whenMatchedUpdate(condition=f"NOT s.{_GONE} AND ({self.newer})", set=columns)
            merge = merge.whenNotMatchedInsert(condition=f"NOT s.{_GONE}", values=columns)
            with_retries(merge.execute, f"merging a full sync into {self}")
        finally:
            source.unpersist()

    def merge(self, rows: DataFrame, metadata: dict, run_id: str, ids: tuple[str, str] | None = None) -> bool:
        """Upsert by id in one commit: insert new rows, rewrite a row only when the incoming record is newer;
        False, and no commit, when no row would change.

        Only the rows that change the table reach the MERGE: Delta rewrites (or marks deleted in) every file
        holding a matched row, even one the condition then leaves alone, so the unchanged records a look-back
        re-reads would rewrite files and hand downstream readers rows that did not change. A run that found
        nothing new leaves the table and its history alone.

        `ids` (the first and last id of `rows`) bounds the table side of both joins: every row an id of `rows`
        can match lies in that range, so the result is the same, but Delta skips the files whose id statistics
        lie outside it. Ids grow with creation time, so an incremental sync, which re-reads recent records,
        reads the table's newest files instead of all of them."""
        in_range = F.col(f"t.{self.stream.key}").between(*ids) if ids is not None else F.lit(True)
        condition = F.col(f"t.{self.stream.key}") == F.col(f"s.{self.stream.key}")
        table = self._compared()
        changing = (
            _live(rows)
            .alias("s")
            .join(table.alias("t").where(in_range), condition, "left")
            .where(self.newer)
            .select("s.*")
            .persist(StorageLevel.DISK_ONLY)
        )  # disk: the heap stays flat
        try:
            if not changing.count():
                return False
            session = self._committing(metadata, run_id)

            def attempt() -> None:  # `newer` again: a concurrent writer may have changed the table since
                (
                    self.delta(session)
                    .alias("t")
                    .merge(changing.alias("s"), condition & in_range)
                    .whenMatchedUpdateAll(condition=self.newer)
                    .whenNotMatchedInsertAll()
                    .execute()
                )

            with_retries(attempt, f"merging into {self}")
            return True
        finally:
            changing.unpersist()

    def changes(self, commit: CommitInfo) -> RowChanges:
        """Rows one commit inserted, updated, deleted and marked deleted: a MERGE reports them in its operation
        metrics (and its metadata, how many of its updates were marks); an overwrite is compared, by id, with the
        version it replaced."""
        m = commit.metrics
        if commit.operation == "MERGE":
            marked = int(commit.metadata.get("rows_marked_deleted") or 0)
            return RowChanges(
                int(m.get("numTargetRowsInserted", 0)),
                int(m.get("numTargetRowsUpdated", 0)) - marked,
                int(m.get("numTargetRowsDeleted", 0)),
                marked,
            )
        if commit.operation == "WRITE" and m.get("numRemovedFiles", "0") == "0":  # added to or replaced nothing
            return RowChanges(int(m.get("numOutputRows", 0)), 0, 0)
        before = self._version(commit.read_version if commit.read_version is not None else commit.version - 1)
        after = self._version(commit.version)
        b, a = F.col("b._present"), F.col("a._present")
        live_before, live_after = F.col(f"b.{DELETED_AT}").isNull(), F.col(f"a.{DELETED_AT}").isNull()
        counts = one(
            before.alias("b")
            .join(after.alias("a"), self.stream.key, "full_outer")
            .agg(
                F.count_if(b.isNull() & a).alias("inserted"),
                F.count_if(b & a & (~F.col("b._raw").eqNullSafe(F.col("a._raw")) | (~live_before & live_after))).alias(
                    "updated"
                ),
                F.count_if(b & a.isNull()).alias("deleted"),
                F.count_if(b & a & live_before & ~live_after).alias("marked"),
            )
        )
        return RowChanges(counts["inserted"], counts["updated"], counts["deleted"], counts["marked"])

    def _version(self, version: int) -> DataFrame:
        return _live(self.read_version(version)).select(
            self.stream.key, "_raw", DELETED_AT, F.lit(True).alias("_present")
        )


def _live(rows: DataFrame) -> DataFrame:
    """Rows with `_deleted_at` (null, live) when they come without it: from the source, or an older table."""
    return rows if DELETED_AT in rows.columns else rows.withColumn(DELETED_AT, F.lit(None).cast(TimestampType()))


PII_TAG = "pii"


def _type(dtype: DataType) -> object:
    """A column's type without its nested fields' comments, which the personal data policy changes."""
    if isinstance(dtype, StructType):
        return tuple((f.name, _type(f.dataType)) for f in dtype.fields)
    return dtype


def comment_statements(table: str, existing: StructType, wanted: StructType, prefix: str = "") -> list[str]:
    """The ALTERs that give the columns `existing` shares with `wanted` (nested ones too) their wanted comment."""
    have = {f.name: f for f in existing.fields}
    statements = []
    for f in wanted.fields:
        old = have.get(f.name)
        if old is None:
            continue
        path = f"{prefix}{quote(f.name)}"
        comment = f.metadata.get("comment", "")
        if old.metadata.get("comment", "") != comment:
            statements.append(f"ALTER TABLE {table} ALTER COLUMN {path} COMMENT {sql_string(comment)}")
        if isinstance(f.dataType, StructType) and isinstance(old.dataType, StructType):
            statements += comment_statements(table, old.dataType, f.dataType, f"{path}.")
    return statements


def tag_statements(table: str, tags: dict[str, str], schema: StructType) -> list[str]:
    """Unity Catalog's `pii` tag on each top-level column in `tags` (tags take no nested paths), and removed from
    the other columns, which an earlier policy may have tagged (removing a tag a column lacks changes nothing)."""
    return [
        f"ALTER TABLE {table} ALTER COLUMN {quote(name)} SET TAGS ({sql_string(PII_TAG)} = {sql_string(tags[name])})"
        if name in tags
        else f"ALTER TABLE {table} ALTER COLUMN {quote(name)} UNSET TAGS ({sql_string(PII_TAG)})"
        for name in schema.fieldNames()
    ]


def literal_row(spark: SparkSession, schema: StructType, values: dict) -> DataFrame:
    """One row of literals in the JVM: no Python worker to start, as `createDataFrame` of local data needs (a
    second per row on a small machine)."""

    def literal(value: object, dtype: DataType) -> Column:
        if isinstance(dtype, MapType) and isinstance(value, dict):
            return F.create_map(*[part for k, v in value.items() for part in (F.lit(k), F.lit(v))]).cast(dtype)
        return F.lit(value).cast(dtype)

    return spark.range(1).select(*[literal(values[f.name], f.dataType).alias(f.name) for f in schema.fields])


def one(frame: DataFrame) -> Row:
    """The first row of a frame that has one (an aggregate, a history of a table that exists)."""
    row = frame.first()
    if row is None:
        raise LookupError("expected a row, got none")
    return row


def txn_app_id(run_id: str) -> str:
    """The idempotent-write key of a run: Delta skips a second commit by the same app id and version."""
    return f"wootric-ingest:{run_id}"


def encode(metadata: dict) -> str:
    return json.dumps({METADATA_KEY: metadata}, sort_keys=True, default=str)


def decode(text: str | None) -> dict | None:
    if not text:
        return None
    try:
        payload = json.loads(text)
    except ValueError:
        return None
    return payload.get(METADATA_KEY) if isinstance(payload, dict) else None


@contextmanager
def catalog_problems(table: Table) -> Iterator[None]:
    """The metastore's refusals as one line naming the object and, where the message says, the privilege."""
    try:
        yield
    except CatalogProblem:
        raise
    except Exception as e:
        text = str(e)
        first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
        catalog = unquoted(table.name or "").split(".")[0]
        if re.search(
            r"CATALOG_NOT_FOUND|NO_SUCH_CATALOG|REQUIRES_SINGLE_PART_NAMESPACE|Catalog '[^']*' (was )?not found", text
        ):
            raise CatalogProblem(
                f"catalog {catalog} (of {table}) does not exist, or the job's user lacks USE CATALOG on it"
            ) from None
        if re.search(r"PERMISSION_DENIED|INSUFFICIENT_PERMISSIONS|does not have .* privilege", text, re.I):
            privilege = re.search(r"\b(USE CATALOG|USE SCHEMA|CREATE SCHEMA|CREATE TABLE|MODIFY|SELECT|MANAGE)\b", text)
            needed = privilege.group(1) if privilege else "a privilege"
            raise CatalogProblem(f"the job's user lacks {needed} for {table}: {first}") from None
        raise


def unquoted(name: str) -> str:
    """A quoted multi-part name as the catalog API takes it (our names are plain identifiers)."""
    return name.replace("`", "")


def quote(identifier: str) -> str:
    return "`" + identifier.replace("`", "``") + "`"


def sql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
