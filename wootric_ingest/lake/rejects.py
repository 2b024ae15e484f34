"""Records that cannot be keyed: kept with the reason in `{root}/_wootric_ingest/rejected`, never dropped.

A record becomes a row whenever it has an id: values that do not fit their column land as null (counted in
the run history, the original kept in `_raw`). A record without a usable id cannot: a MERGE by id would not
know which row it is. Those go to one Delta table for every stream, beside the run history, so a single query
shows whatever the API sent that the tables could not take:

    SELECT stream, reason, last_run_id, record FROM delta.`<root>/_wootric_ingest/rejected`

A usable id is a whole JSON number (of at most 38 digits, as Spark keeps it exactly) or a string with a
non-blank character (the tables store ids as strings, so `12` and `"12"` are the same record); `shaping` tells,
and staging writes such records to files of their own. A record is stored once per stream, keyed on a hash of
its text, however many runs fetch it again (the look-back re-reads a bad response every day, and a replayed run
lands the same staging twice); `first_run_id` and `last_run_id` tell when it was seen.
"""

from __future__ import annotations

import threading

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType, TimestampType

from wootric_ingest.lake.schemas import column
from wootric_ingest.lake.tables import Table, with_retries

REJECTED_SCHEMA = StructType(
    [
        column("stream", StringType(), "The Wootric stream the record came from"),
        column(
            "record_sha256", StringType(), "SHA-256 of the record's text: the same record is stored once per stream"
        ),
        column("reason", StringType(), "Why the record could not become a row"),
        column("record", StringType(), "The record as the API sent it (JSON)"),
        column("first_run_id", StringType(), "The run that first fetched it"),
        column("last_run_id", StringType(), "The run that fetched it most recently"),
        column("first_fetched_at", TimestampType(), "When it was first fetched (UTC)"),
        column("last_fetched_at", TimestampType(), "When it was most recently fetched (UTC)"),
    ]
)

#: A rejected record as staging writes it beside its part (`shaping` decides the reason).
STAGED_REJECTS_SCHEMA = StructType(
    [
        StructField("record", StringType()),
        StructField("_extracted_at", TimestampType()),
        StructField("reason", StringType()),
    ]
)


class RejectedRecords:
    """The rejected-records table. Streams land on threads of their own; their writes here take turns, so they
    never race to create the table or conflict in a MERGE."""

    def __init__(self, table: Table):
        self.table = table
        self._writing = threading.Lock()

    def record(self, stream: str, run_id: str, rejected: DataFrame) -> int:
        """Store a run's rejected records of one stream (each once); how many distinct ones there were."""
        fetched = F.col("_extracted_at")
        rows = (
            rejected.groupBy(
                F.lit(stream).alias("stream"), F.sha2(F.coalesce("record", F.lit("null")), 256).alias("record_sha256")
            )
            .agg(
                F.first("reason").alias("reason"),
                F.first("record").alias("record"),
                F.min(fetched).alias("first_fetched_at"),
                F.max(fetched).alias("last_fetched_at"),
            )
            .withColumns({"first_run_id": F.lit(run_id), "last_run_id": F.lit(run_id)})
            .select(*REJECTED_SCHEMA.fieldNames())
            .cache()
        )
        try:
            count = rows.count()
            if not count:
                return 0
            with self._writing:
                self.table.ensure()

                def attempt() -> None:
                    (
                        self.table.delta()
                        .alias("t")
                        .merge(rows.alias("s"), "t.stream = s.stream AND t.record_sha256 = s.record_sha256")
                        .whenMatchedUpdate(set={"last_run_id": "s.last_run_id", "last_fetched_at": "s.last_fetched_at"})
                        .whenNotMatchedInsertAll()
                        .execute()
                    )

                with_retries(attempt, f"recording rejected {stream} records in {self.table}")
            return count
        finally:
            rows.unpersist()
