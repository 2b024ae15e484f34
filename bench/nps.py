"""NPS gold refresh benchmark: after an incremental run that changed 1% of N responses (the newest, as a
look-back re-reads them), the gold refresh from the change feed against a full recompute of the gold tables.

The API is out of the way: the responses (two years of them, with scores, exclusions, tags and properties)
and declines tables are built in Spark and committed as the job commits them (a full sync, then an incremental
MERGE carrying 1% of the ids with a new score and tags). It reports the wall time of `gold.refresh` after the
MERGE (incremental: only the dates and months it touched) and of a refresh into new gold tables (everything
recomputed), and checks that both leave the same rows.

    python bench/nps.py [--rows 1000000]
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

CHANGED_EVERY = 100  # 1% of the responses, the newest: a new score and tags
DAYS = 730
FILE_ROWS = 100_000


def _config(root: Path, gold_layer: str):
    from wootric_ingest.config import parse_config

    return parse_config(
        {
            "source": {
                "description": "NPS gold benchmark",
                "api": {"auth": {"username": "u", "password": "p"}},
                "start_date": "2024-01-01",
                "trigger": {"cron": "0 6 * * *"},
            },
            "catalog": {"root": str(root)},
            "streams": {"responses": {"layer": "raw"}, "declines": {"layer": "raw"}},
            "nps": {"layer": gold_layer, "timezone": "America/Los_Angeles"},
        },
        environ={},
    )


def _responses(spark, n: int, *, changed: bool):
    from pyspark.sql import functions as F

    from wootric_ingest.lake.schemas import table_schema
    from wootric_ingest.streams import STREAMS

    ids = spark.range(n)
    if changed:
        ids = ids.where(F.col("id") >= n - n // CHANGED_EVERY)
    seconds = F.lit(1_717_200_000) + (F.col("id") * (DAYS * 86_400) / F.lit(n)).cast("long")
    created = F.date_format(F.timestamp_seconds(seconds), "yyyy-MM-dd'T'HH:mm:ss'Z'")
    score = ((F.col("id") * 7 + (3 if changed else 0)) % 11).cast("int")
    tags = F.when(F.col("id") % 3 == 0, F.lit('["PRICING"]')).otherwise(F.lit('["UX","SUPPORT"]'))
    plan = F.element_at(F.array(*[F.lit(p) for p in ("Lite", "Pro", "Enterprise")]), (F.col("id") % 3 + 1).cast("int"))
    values = {
        "id": F.col("id").cast("string"),
        "score": score,
        "excluded_from_calculations": F.col("id") % 20 == 0,
        "created_at": created,
        "updated_at": F.lit("2026-06-01T00:00:00Z") if changed else created,
        "tags": tags,
        "end_user": F.struct(
            *[F.lit(None).alias(f) for f in ("email", "external_id", "external_created_at", "created_at")],
            F.to_json(F.create_map(F.lit("pricing_plan"), plan)).alias("properties"),
        ),
        "_raw": F.concat(F.lit('{"id":'), F.col("id").cast("string"), F.lit(',"v":2}' if changed else "}")),
        "_extracted_at": F.lit(datetime(2026, 6, 1, tzinfo=timezone.utc)),
        "_run_id": F.lit("bench"),
    }
    schema = table_schema(STREAMS["responses"])
    rows = ids.select(*[values.get(f.name, F.lit(None)).cast(f.dataType).alias(f.name) for f in schema.fields])
    return rows.repartitionByRange(max(1, rows.count() // FILE_ROWS) if not changed else 1, "id")


def _declines(spark, n: int, schema):
    """One decline per ten responses, over the same two years."""
    from pyspark.sql import functions as F

    seconds = F.lit(1_717_200_000) + (F.col("id") * (DAYS * 86_400) / F.lit(n)).cast("long")
    created = F.date_format(F.timestamp_seconds(seconds), "yyyy-MM-dd'T'HH:mm:ss'Z'")
    values = {
        "id": F.col("id").cast("string"),
        "created_at": created,
        "updated_at": created,
        "_raw": F.concat(F.lit('{"id":'), F.col("id").cast("string"), F.lit("}")),
    }
    return spark.range(n).select(
        *[values.get(f.name, F.lit(None)).cast(f.dataType).alias(f.name) for f in schema.fields]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)

    from wootric_ingest.lake import gold
    from wootric_ingest.lake.lakehouse import Lakehouse
    from wootric_ingest.lake.spark import get_spark

    scratch = Path(tempfile.mkdtemp(prefix="wootric-bench-nps-"))
    try:
        spark = get_spark(app_name="wootric-bench-nps", scratch=scratch / "spark")
        kept = Lakehouse(_config(scratch / "lake", "gold"), spark)
        responses = kept.table(kept.config.stream("responses"))
        declines = kept.table(kept.config.stream("declines"))
        for table in (responses, declines):
            table.ensure()
        full = {"sync": "FULL", "reason": "bench"}
        responses.overwrite(_responses(spark, args.rows, changed=False), full, "bench-full")
        declines.overwrite(_declines(spark, args.rows // 10, declines.schema), full, "bench-full")
        gold.refresh(kept, "bench-first")  # the gold tables as the full sync left them

        responses.merge(
            _responses(spark, args.rows, changed=True), {"sync": "INCREMENTAL", "reason": "bench"}, "bench-run"
        )
        started = time.monotonic()
        incremental = gold.refresh(kept, "bench-incremental")
        incremental_seconds = time.monotonic() - started

        recomputed = Lakehouse(_config(scratch / "lake", "gold_recomputed"), spark)
        started = time.monotonic()
        gold.refresh(recomputed, "bench-recompute")
        full_seconds = time.monotonic() - started

        same = all(
            gold.gold_table(kept, g.name).read().exceptAll(gold.gold_table(recomputed, g.name).read()).isEmpty()
            and gold.gold_table(recomputed, g.name).read().exceptAll(gold.gold_table(kept, g.name).read()).isEmpty()
            for g in gold.GOLD
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    changed = args.rows // CHANGED_EVERY
    print(
        f"gold refresh after an incremental run changing {changed:,} of {args.rows:,} responses "
        f"({incremental.dates} local dates, {incremental.months} months touched); both leave the same rows: {same}"
    )
    print("| refresh | seconds | gold rows written | ours / full |")
    print("|---|---:|---:|---:|")
    ratio = incremental_seconds / full_seconds
    print(f"| incremental (change feed) | {incremental_seconds:.1f} | {incremental.rows_written:,} | {ratio:.2f} |")
    print(f"| full recompute | {full_seconds:.1f} | - | 1.00 |")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
