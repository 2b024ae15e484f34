"""Full-sync write benchmark: `catalog.full_sync_write: merge` against `rewrite` on one table of N responses,
with 1% of the records changed and 0.1% gone from the source since the last full sync.

The API is out of the way (a full sync's fetch costs the same either way): the table and the source are built
in Spark, with every column of the responses table (seed columns null but the id, `updated_at` and `_raw`),
written by id range as the job writes them. Both writes start from copies of the same table and take the same
source; for each it reports the wall time of `StreamTable.full_sync`, the files the commit removed and added,
and the rows its change feed holds. Both must leave the same rows; the benchmark checks that too.

    python bench/full_sync.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHANGED_EVERY = 100  # 1% of the ids: a newer `updated_at` and `_raw`
GONE_EVERY = 1000  # 0.1% of the ids: no longer in the source
FILE_ROWS = 100_000  # rows per file, as a full sync writes them (by id range)


def _rows(spark, n: int, *, source: bool):
    """The table's rows (`source=False`) or the source's next full sync (`source=True`)."""
    from pyspark.sql import functions as F

    from wootric_ingest.lake.schemas import table_schema
    from wootric_ingest.streams import STREAMS

    ids = spark.range(n)
    if source:
        ids = ids.where(F.col("id") % GONE_EVERY != GONE_EVERY - 1)
    changed = F.lit(source) & (F.col("id") % CHANGED_EVERY == 1)
    values = {
        "id": F.col("id").cast("string"),
        "updated_at": F.when(changed, F.lit("2026-12-01T00:00:00Z")).otherwise(F.lit("2026-01-01T00:00:00Z")),
        "_raw": F.concat(F.lit('{"id":'), F.col("id").cast("string"), F.when(changed, F.lit(',"v":2}')).otherwise("}")),
        "_extracted_at": F.lit(datetime(2026, 12, 1, tzinfo=timezone.utc)),
        "_run_id": F.lit("source" if source else "table"),
    }
    schema = table_schema(STREAMS["responses"])
    rows = ids.select(*[values.get(f.name, F.lit(None)).cast(f.dataType).alias(f.name) for f in schema.fields])
    return rows.repartitionByRange(max(1, n // FILE_ROWS), "id")


def _write(spark, path: str, rows, write) -> dict:
    from wootric_ingest.lake.lakehouse import table_properties
    from wootric_ingest.lake.tables import StreamTable
    from wootric_ingest.streams import STREAMS

    table = StreamTable(spark, STREAMS["responses"], table_properties(30, True), path=path)
    table.ensure()
    before = table.version()
    started = time.monotonic()
    table.full_sync(
        rows,
        {"bench": write.value},
        f"bench-{write.value}-{time.time_ns()}",
        write=write,
        soft=False,
        at=datetime.now(timezone.utc),
    )
    seconds = time.monotonic() - started
    commit = table.commits(1)[0]
    feed = spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", before + 1).load(path)
    return {
        "seconds": seconds,
        "files_removed": int(commit.metrics.get("numRemovedFiles", commit.metrics.get("numTargetFilesRemoved", 0))),
        "files_added": int(commit.metrics.get("numFiles", commit.metrics.get("numTargetFilesAdded", 0))),
        "feed_rows": feed.where("_change_type != 'update_preimage'").count(),
        "operation": commit.operation,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)

    from wootric_ingest.config import FullSyncWrite
    from wootric_ingest.lake.spark import get_spark

    scratch = Path(tempfile.mkdtemp(prefix="wootric-bench-full-sync-"))
    try:
        spark = get_spark(app_name="wootric-bench-full-sync", scratch=scratch / "spark")
        base = str(scratch / "base")
        _write(spark, base, _rows(spark, args.rows, source=False), FullSyncWrite.REWRITE)
        results = {}
        for write in (FullSyncWrite.MERGE, FullSyncWrite.REWRITE):
            path = str(scratch / write.value)
            shutil.copytree(base, path)
            results[write] = _write(spark, path, _rows(spark, args.rows, source=True), write)
        merged, rewritten = (spark.read.format("delta").load(str(scratch / w.value)) for w in FullSyncWrite)
        columns = ["id", "updated_at", "_raw", "_deleted_at"]
        same = (
            merged.select(columns).exceptAll(rewritten.select(columns)).isEmpty()
            and rewritten.select(columns).exceptAll(merged.select(columns)).isEmpty()
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    changed, gone = args.rows // CHANGED_EVERY, args.rows // GONE_EVERY
    print(f"full sync of {args.rows:,} responses, {changed:,} changed, {gone:,} gone; both leave the same rows: {same}")
    print("| write | seconds | files removed / added | change feed rows | ours / rewrite |")
    print("|---|---:|---:|---:|---:|")
    for write, r in results.items():
        ratio = r["seconds"] / results[FullSyncWrite.REWRITE]["seconds"]
        print(
            f"| {write.value} ({r['operation']}) | {r['seconds']:.1f} | {r['files_removed']} / {r['files_added']} "
            f"| {r['feed_rows']:,} | {ratio:.2f} |"
        )
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
