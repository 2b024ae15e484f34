"""Data source benchmark: a batch read of `spark.read.format("wootric")` against the job's extraction of the
same records.

The sandbox serves N responses (default 100,000; N/5 end users, N/10 declines) in its own process over HTTP,
rate limit lifted, so the figures are our own cost. In one local Spark session, one after the other:

- the job's extraction of responses to staging (`run.landing.extract`: the client with `max_concurrency`
  requests in flight, shaping, Parquet parts), as a full sync plans it;
- a batch read of the same responses through the data source (`max_concurrency` partitions, each walking its
  window one request at a time, shaping in the Python workers), counted: a Python source pushes nothing down,
  so every row is shaped and crosses into the JVM.

Per path: rows, API requests (by the sandbox's count), wall seconds, rows per second; then the ratio. It exits
non-zero unless both paths got every record.

    python bench/datasource.py [--records N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from landing import _config, _plan, machine, serve  # noqa: E402

RECORDS = 100_000
CONCURRENCY = 4


def _served(url: str) -> int:
    return int(json.loads(urllib.request.urlopen(f"{url}/_sandbox/stats").read())["by_endpoint"].get("responses", 0))


def job_extraction(spark, url: str, root: str) -> dict:
    from wootric_ingest.api import WootricClient
    from wootric_ingest.lake.lakehouse import Lakehouse
    from wootric_ingest.run.landing import extract
    from wootric_ingest.run.progress import Progress

    lakehouse = Lakehouse(_config(url, root, None), spark)
    stream_config = lakehouse.config.stream("responses")
    before, started = _served(url), time.monotonic()
    with WootricClient(lakehouse.config.api) as client:
        client.authenticate()
        staging = lakehouse.staging("bench-datasource", "responses")
        fetched = extract(client, staging, _plan(lakehouse, stream_config), Progress())
    return {"rows": fetched.records, "requests": _served(url) - before, "seconds": time.monotonic() - started}


def data_source_read(spark, url: str) -> dict:
    from wootric_ingest.source import register

    register(spark)
    credentials = json.loads(urllib.request.urlopen(f"{url}/_sandbox/credentials").read())
    df = (
        spark.read.format("wootric")
        .option("stream", "responses")
        .option("base_url", url)
        .option("username", credentials["username"])
        .option("password", credentials["password"])
        .option("start_date", "2024-01-01T00:00:00Z")
        .option("requests_per_minute", "1000000")
        .option("max_concurrency", str(CONCURRENCY))
        .load()
    )
    before, started = _served(url), time.monotonic()
    rows = df.count()
    return {"rows": rows, "requests": _served(url) - before, "seconds": time.monotonic() - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=RECORDS, help=f"responses (default {RECORDS:,})")
    args = parser.parse_args(argv)
    from wootric_ingest.lake.spark import get_spark

    with (
        tempfile.TemporaryDirectory(prefix="wootric-bench-ds-") as work,
        serve(args.records, Path(work)) as sb,
    ):
        spark = get_spark(app_name="wootric-bench", scratch=Path(work) / "spark")
        truth = len(json.loads(urllib.request.urlopen(f"{sb.url}/_sandbox/records/responses").read()))
        job = job_extraction(spark, sb.url, str(Path(work) / "lakehouse"))
        source = data_source_read(spark, sb.url)
        spark.stop()
    print(f"{machine()}; {truth:,} responses in the sandbox (rate limit lifted), {CONCURRENCY} in flight / partitions")
    header = f"{'path':<44} {'rows':>9} {'requests':>8} {'wall s':>7} {'rows/s':>8}"
    print(header)
    print("-" * len(header))
    for label, r in (
        ("job extraction to staging (run.landing.extract)", job),
        ("data source batch read (count)", source),
    ):
        print(f"{label:<44} {r['rows']:>9,} {r['requests']:>8,} {r['seconds']:>7.1f} {r['rows'] / r['seconds']:>8,.0f}")
    print(f"data source / job, wall: {source['seconds'] / job['seconds']:.2f}")
    return 0 if job["rows"] == truth and source["rows"] == truth else 1


if __name__ == "__main__":
    sys.exit(main())
