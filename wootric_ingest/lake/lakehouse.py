"""One source's lakehouse: built once from the config and the Spark session, it hands out every table and file
the job uses under the catalog (stream tables, the runs and rejected tables, staging areas and locks), so no
other module builds a path, a name or a table's properties.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql.types import StructType

from wootric_ingest.config import SourceConfig, StreamConfig
from wootric_ingest.lake.history import RUNS_SCHEMA, RunHistory
from wootric_ingest.lake.layout import Layout
from wootric_ingest.lake.locks import TableLocks
from wootric_ingest.lake.rejects import REJECTED_SCHEMA, RejectedRecords
from wootric_ingest.lake.spark import on_databricks
from wootric_ingest.lake.staging import StagingArea
from wootric_ingest.lake.storage import Storage, python_reaches, storage_for
from wootric_ingest.lake.tables import DELETED_AT, StreamTable, Table
from wootric_ingest.privacy import Policy
from wootric_ingest.streams import STREAMS, Stream


def table_properties(retention_days: int, change_data_feed: bool) -> dict[str, str]:
    """The Delta properties every table gets: log and deleted-file retention of the configured days, so time
    travel reaches back exactly that far. The idempotent-write ids each run leaves in the log (one per table)
    expire after as long, instead of piling up forever; a replay comes within minutes, not days. The change
    data feed is how a downstream pipeline follows a table that MERGEs (README: "Following these tables")."""
    days = f"interval {retention_days} days"
    return {
        "delta.logRetentionDuration": days,
        "delta.deletedFileRetentionDuration": days,
        "delta.setTransactionRetentionDuration": days,
        "delta.enableChangeDataFeed": str(change_data_feed).lower(),
    }


def statistics_columns(stream: Stream) -> str:
    """The columns a stream table keeps file statistics on (`delta.dataSkippingStatsColumns`): the key (a MERGE
    reads only the files whose key range holds its keys), the cursor and version times (time ranges, which follow
    the files' key ranges since ids grow with creation) and `_deleted_at`. Delta's default, its first 32 columns
    with nested fields, costs about a tenth of a full sync's landing and skips little: the other columns do not
    follow the files' key ranges."""
    columns = (stream.key, stream.cursor_field, stream.version_field, DELETED_AT)
    return ",".join(dict.fromkeys(c for c in columns if c))


def pii_labels(policy: Policy, stream: Stream) -> tuple[dict[str, str], dict[str, str]]:
    """What the personal data policy does to a stream's table, for its column comments (per column path) and
    its Unity Catalog tags (per top-level column: a struct's tag lists what happens inside it). `_raw` holds the
    whole record, so it carries every action of the policy, also those on fields it names no column for."""
    labels = {path: action.value for path, action in policy.marks(stream.fields)}
    if policy:
        labels["_raw"] = ", ".join(policy.actions)
    tops: dict[str, set[str]] = {}
    for path, label in labels.items():
        tops.setdefault(path.split(".")[0], set()).update(label.split(", "))
    return labels, {column: ", ".join(sorted(found)) for column, found in tops.items()}


class Lakehouse:
    def __init__(self, config: SourceConfig, spark: SparkSession | Future[SparkSession]):
        """`spark` may still be starting (see `lake.spark.start_spark`): what needs it waits for it, what the
        file system alone can tell does not."""
        self.config, self._spark = config, spark
        self.layout = Layout(config.catalog)
        self.properties = table_properties(config.delta_log_retention_days, config.catalog.change_data_feed)
        self.policy = config.pii.policy
        self._shared: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def spark(self) -> SparkSession:
        """The session, once it has started."""
        return self._spark.result() if isinstance(self._spark, Future) else self._spark

    @property
    def spark_started(self) -> bool:
        return not isinstance(self._spark, Future) or self._spark.done()

    @property
    def files_need_spark(self) -> bool:
        """Whether the files beside the tables are reached through Spark's Hadoop API (not Python's)."""
        return not python_reaches(self.layout.root)

    def _once(self, name: str, build: Callable[[], Any]) -> Any:
        """One object per name (a stream's table, the run history, ...) however many of the run's threads ask at
        once (`cached_property` no longer locks since Python 3.12, which recent Databricks runtimes run). Built
        outside the lock, since a build may wait for Spark: two threads may both build, and both get the first
        one kept."""
        if name not in self._shared:
            built = build()
            with self._lock:
                self._shared.setdefault(name, built)
        return self._shared[name]

    @property
    def files(self) -> Storage:
        """The file operations beside the tables (staging, locks) on the root's storage."""
        return self._once("files", lambda: storage_for(self.layout.root, self.spark if self.files_need_spark else None))

    def certainly_absent(self, stream: StreamConfig) -> bool:
        """Whether the stream's table does not exist yet, as the file system alone tells: a path table whose
        folder holds no Delta log, where Python reaches the root (only the catalog knows a managed table)."""
        if self.layout.managed or self.files_need_spark:
            return False
        return "_delta_log" not in self.files.names(self.layout.table_path(stream))

    def table(self, stream: StreamConfig) -> StreamTable:
        """The stream's table (one object per stream, shared by the run's threads)."""
        return self._once(f"table {stream.name}", lambda: self._stream_table(stream))

    def _stream_table(self, stream: StreamConfig) -> StreamTable:
        labels, tags = pii_labels(self.policy, stream.stream) if stream.stream.personal_data else ({}, {})
        return StreamTable(
            self.spark,
            stream.stream,
            {**self.properties, "delta.dataSkippingStatsColumns": statistics_columns(stream.stream)},
            path=None if self.layout.managed else self.layout.table_path(stream),
            name=self.layout.metastore_name(stream),
            comment=self._comment(
                f"{stream.stream.description} Wootric stream {stream.name}, one row per {stream.stream.key}"
            ),
            labels=labels,
            tags=tags if self.layout.managed and on_databricks() else None,
        )

    def gold(self, table: str, schema: StructType, holds: str) -> Table:
        """One NPS gold table (`config.nps` set): at its path, or by name when tables are managed."""
        nps = self.config.nps
        assert nps is not None, "the gold layer needs the nps section"
        return Table(
            self.spark,
            schema,
            self.properties,
            path=None if self.layout.managed else self.layout.gold_path(nps, table),
            name=self.layout.gold_name(nps, table),
            comment=self._comment(holds),
        )

    @property
    def runs(self) -> RunHistory:
        return self._once(
            "runs",
            lambda: RunHistory(
                self._job_table(
                    self.layout.runs_path,
                    self.layout.runs_name,
                    RUNS_SCHEMA,
                    "the job's run history, one row per stream per run",
                )
            ),
        )

    @property
    def rejected(self) -> RejectedRecords:
        return self._once(
            "rejected",
            lambda: RejectedRecords(
                self._job_table(
                    self.layout.rejected_path,
                    self.layout.rejected_name,
                    REJECTED_SCHEMA,
                    "records the API sent that could not be keyed, with the reason",
                )
            ),
        )

    def _job_table(self, path: str, name: str | None, schema: StructType, holds: str) -> Table:
        return Table(
            self.spark,
            schema,
            self.properties,
            path=None if self.layout.managed else path,
            name=name,
            comment=self._comment(holds),
        )

    def _comment(self, holds: str) -> str:
        """A table's comment: the source's description, then what the table holds."""
        return f"{self.config.description} ({holds}; written by wootric-ingest)"

    def path_table_left_behind(self, stream: StreamConfig) -> str | None:
        """In managed mode, the path where path mode kept this stream's table, if a Delta table is still there (a
        source moved to managed tables starts them afresh; its old history stays there)."""
        if not self.layout.managed:
            return None
        path = self.layout.table_path(stream)
        return path if DeltaTable.isDeltaTable(self.spark, path) else None

    def staging(self, run_id: str, stream: str, **batching: int) -> StagingArea:
        """The staging of one stream in one run (opening an existing one resumes it)."""
        return StagingArea(
            self.files,
            self.layout.staging_folder(run_id, stream),
            STREAMS[stream],
            run_id,
            policy=self.policy if STREAMS[stream].personal_data else None,
            **batching,
        )

    def staged_runs(self, stream: str) -> set[str]:
        """The runs that left staging for `stream`."""
        root = self.layout.staging_root
        return {run for run in self.files.names(root) if stream in self.files.names(f"{root}/{run}")}

    def locks(
        self, streams: Iterable[StreamConfig], run_id: str, *, gold: tuple[str, ...] = (), **timing: Any
    ) -> TableLocks:
        """The locks of the tables a run writes for `streams`, and of the gold tables named in `gold` (which it
        refreshes), to be taken together."""
        names = [self.layout.lock_name(s) for s in streams]
        if gold:
            nps = self.config.nps
            assert nps is not None, "the gold layer needs the nps section"
            names += [self.layout.gold_lock_name(nps, table) for table in gold]
        return TableLocks(self.files, self.layout.locks_folder, names, run_id, **timing)
