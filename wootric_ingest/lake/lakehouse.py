"""One source's lakehouse: built once from the config and the Spark session, it hands out every table and file
the job uses under the catalog (stream tables, the runs and rejected tables, staging areas and locks), so no
other module builds a path, a name or a table's properties.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from functools import cached_property
from typing import Any

from pyspark.sql import SparkSession

from wootric_ingest.config import SourceConfig, StreamConfig
from wootric_ingest.lake.history import RUNS_SCHEMA, RunHistory
from wootric_ingest.lake.layout import Layout
from wootric_ingest.lake.locks import TableLocks
from wootric_ingest.lake.rejects import REJECTED_SCHEMA, RejectedRecords
from wootric_ingest.lake.staging import StagingArea
from wootric_ingest.lake.storage import Storage, storage_for
from wootric_ingest.lake.tables import StreamTable, Table
from wootric_ingest.streams import STREAMS


def table_properties(retention_days: int) -> dict[str, str]:
    """The Delta properties every table gets: log and deleted-file retention of the configured days, so time
    travel reaches back exactly that far. The idempotent-write ids each run leaves in the log (one per table)
    expire after as long, instead of piling up forever; a replay comes within minutes, not days."""
    days = f"interval {retention_days} days"
    return {
        "delta.logRetentionDuration": days,
        "delta.deletedFileRetentionDuration": days,
        "delta.setTransactionRetentionDuration": days,
    }


class Lakehouse:
    def __init__(self, config: SourceConfig, spark: SparkSession):
        self.config, self.spark = config, spark
        self.layout = Layout(config.catalog)
        self.properties = table_properties(config.delta_log_retention_days)
        self._tables: dict[str, StreamTable] = {}
        self._lock = threading.Lock()

    @cached_property
    def files(self) -> Storage:
        """The file operations beside the tables (staging, locks) on the root's storage."""
        return storage_for(self.layout.root, self.spark)

    def table(self, stream: StreamConfig) -> StreamTable:
        """The stream's table (one object per stream, shared by the run's threads)."""
        with self._lock:
            if stream.name not in self._tables:
                self._tables[stream.name] = StreamTable(
                    self.spark,
                    self.layout.table_path(stream),
                    stream.stream,
                    self.properties,
                    name=self.layout.metastore_name(stream),
                )
            return self._tables[stream.name]

    @cached_property
    def runs(self) -> RunHistory:
        return RunHistory(Table(self.spark, self.layout.runs_path, RUNS_SCHEMA, self.properties))

    @cached_property
    def rejected(self) -> RejectedRecords:
        return RejectedRecords(Table(self.spark, self.layout.rejected_path, REJECTED_SCHEMA, self.properties))

    def staging(self, run_id: str, stream: str, **batching: int) -> StagingArea:
        """The staging of one stream in one run (opening an existing one resumes it)."""
        return StagingArea(self.files, self.layout.staging_folder(run_id, stream), STREAMS[stream], run_id, **batching)

    def staged_runs(self, stream: str) -> set[str]:
        """The runs that left staging for `stream`."""
        root = self.layout.staging_root
        return {run for run in self.files.names(root) if stream in self.files.names(f"{root}/{run}")}

    def locks(self, streams: Iterable[StreamConfig], run_id: str, **timing: Any) -> TableLocks:
        """The locks of the tables a run writes for `streams`, to be taken together."""
        return TableLocks(
            self.files, self.layout.locks_folder, [self.layout.lock_name(s) for s in streams], run_id, **timing
        )
