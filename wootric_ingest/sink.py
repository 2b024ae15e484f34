"""Delta writes for one stream's table: create, MERGE (incremental), one-commit overwrite (full sync).

Each commit carries our bookkeeping in its `userMetadata` (run id, sync mode, bookmark), so the table
and its history are the only state: the next run reads its bookmark and the last full sync from there.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession

from wootric_ingest.streams import PRIMARY_KEY, Stream

METADATA_KEY = "wootric_ingest"
_USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"


@dataclass(frozen=True)
class CommitInfo:
    version: int
    timestamp: Any
    operation: str
    metadata: dict


class DeltaSink:
    """One stream's Delta table at a path."""

    def __init__(self, spark: SparkSession, path: str, stream: Stream, properties: dict[str, str]):
        self.spark, self.path, self.stream, self.properties = spark, path, stream, properties

    def exists(self) -> bool:
        return DeltaTable.isDeltaTable(self.spark, self.path)

    def ensure_table(self) -> None:
        """Create the table with the stream's schema, column comments and properties if it is not there."""
        builder = DeltaTable.createIfNotExists(self.spark).location(self.path).addColumns(self.stream.table_schema)
        for key, value in self.properties.items():
            builder = builder.property(key, value)
        builder.execute()

    def overwrite(self, rows: DataFrame, metadata: dict) -> None:
        """Replace the table's rows in one commit: readers see the old table or the new one, never half."""
        (rows.select(*self.stream.table_schema.fieldNames())
         .write.format("delta").mode("overwrite")
         .option("userMetadata", _encode(metadata))
         .save(self.path))

    def merge(self, rows: DataFrame, metadata: dict) -> None:
        """Upsert by id: insert new rows, update a row only when the incoming record is newer."""
        target = DeltaTable.forPath(self.spark, self.path)
        previous = self.spark.conf.get(_USER_METADATA_CONF, None)
        self.spark.conf.set(_USER_METADATA_CONF, _encode(metadata))
        try:
            (target.alias("t")
             .merge(rows.alias("s"), f"t.{PRIMARY_KEY} = s.{PRIMARY_KEY}")
             .whenMatchedUpdateAll(condition="s.updated_at > t.updated_at OR t.updated_at IS NULL")
             .whenNotMatchedInsertAll()
             .execute())
        finally:
            if previous is None:
                self.spark.conf.unset(_USER_METADATA_CONF)
            else:
                self.spark.conf.set(_USER_METADATA_CONF, previous)

    def commits(self, limit: int = 100) -> list[CommitInfo]:
        """Our commits, newest first (commits by others, such as OPTIMIZE or VACUUM, are skipped)."""
        history = DeltaTable.forPath(self.spark, self.path).history(limit)
        result = []
        for row in history.select("version", "timestamp", "operation", "userMetadata").collect():
            meta = _decode(row["userMetadata"])
            if meta is not None:
                result.append(CommitInfo(row["version"], row["timestamp"], row["operation"], meta))
        return result


def _encode(metadata: dict) -> str:
    return json.dumps({METADATA_KEY: metadata}, sort_keys=True, default=str)


def _decode(text: str | None) -> dict | None:
    if not text:
        return None
    try:
        payload = json.loads(text)
    except ValueError:
        return None
    return payload.get(METADATA_KEY) if isinstance(payload, dict) else None
