"""Landing benchmark: what a run costs on our side (driver memory, Spark, Delta), with the API's cost out of
the way: the sandbox serves every size over HTTP with its rate limit lifted.

For each size N (responses; the sandbox also holds N/5 end users and N/10 declines) it measures, each figure
beside a baseline measured in the same run:

- driver memory: peak RSS of the Python driver and JVM heap, for a full sync of all three streams through
  staging, against the naive path (records in Python lists, then `spark.createDataFrame`);
- landing throughput: staged records to committed Delta rows per second, against the naive path;
- a no-op incremental run of all streams (`job.run` in a fresh process as `wootric-ingest run` runs it, Spark
  start included, look-back 0): wall time and API requests per stream, against the full sync of the same data;
- at the largest N, an incremental run with 1% of the responses changed (the default 30-day look-back
  re-reads the recent ones; the changed ones are among them) against a full rewrite of the same table;
- Spark session start-up, apart, against a plain local session without Delta.

Every measurement runs in its own process, so memory figures belong to that run alone and the sandbox's
data set (in its own process) never counts as the driver's.

    python bench/landing.py [--quick] [--sizes 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sandbox.process import SandboxProcess  # noqa: E402

SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (1_000, 10_000)
RUN_ID = "bench-full-sync"
CHANGED = 0.01
FLAT_RSS_MB = 150
TARGET_LAND_1M_S = 25  # issue 18: 1M staged responses landed
TARGET_NOOP_S = 15  # issue 18: a no-op run of three streams, Spark start included
TARGET_NOOP_REQUESTS = 2
TARGET_INCREMENTAL_RATIO = 1 / 3


# ------------------------------------------------------------------------------------------------ children
# Each runs in its own Python process (`--child NAME`), prints one JSON line, and exits.


class Probe:
    """Peak JVM heap used, sampled every 100 ms while a child runs; the Python peak RSS comes from the kernel."""

    def __init__(self, spark):
        self._runtime = spark.sparkContext._jvm.java.lang.Runtime.getRuntime()
        self._jvm = spark.sparkContext._jvm
        self.heap_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _used(self) -> int:
        return self._runtime.totalMemory() - self._runtime.freeMemory()

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            self.heap_peak = max(self.heap_peak, self._used())

    def finish(self) -> dict:
        self._stop.set()
        self._thread.join()
        self.heap_peak = max(self.heap_peak, self._used())
        self._jvm.java.lang.System.gc()
        return {
            "rss_peak_mb": _rss_peak_mb(),
            "heap_peak_mb": self.heap_peak / 2**20,
            "heap_after_gc_mb": self._used() / 2**20,
            "heap_max_mb": self._runtime.maxMemory() / 2**20,
        }


def _rss_peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _config(url: str | None, root: str, lookback: int | None):
    """All three streams incremental (look-back: the streams' defaults, or `lookback` days), the client's
    rate limit lifted; `url` None for a run that never calls the API."""
    from wootric_ingest.config import parse_config

    credentials = (
        json.loads(urllib.request.urlopen(f"{url}/_sandbox/credentials").read())
        if url
        else {"username": "nobody", "password": "unused"}
    )
    stream = {"layer": "raw", "folder": "wootric", "sync_type": "INCREMENTAL"}
    if lookback is not None:
        stream["lookback_days"] = lookback
    return parse_config(
        {
            "source": {
                "description": "landing benchmark",
                "api": {
                    "base_url": url or "http://127.0.0.1:1",
                    "auth": {"username": credentials["username"], "password": credentials["password"]},
                    "requests_per_minute": 1_000_000,
                    "max_concurrency": 4,
                },
                "start_date": "2024-01-01T00:00:00Z",
                "trigger": {"cron": "0 6 * * *", "timezone": "UTC"},
            },
            "catalog": {"root": root},
            "streams": {name: dict(stream, table=name) for name in ("end_users", "responses", "declines")},
        },
        environ={},
    )


def _started_spark() -> tuple[object, float]:
    from wootric_ingest.lake.spark import get_spark

    started = time.monotonic()
    spark = get_spark(app_name="wootric-bench", scratch=os.environ["BENCH_SCRATCH"])
    spark.range(1).count()  # the session is usable, not just built
    return spark, time.monotonic() - started


def _lakehouses(url: str | None, root: str, lookback: int | None):
    """The benchmark's lakehouse, and one beside it (`{root}-staged`) where the full sync stages: later runs'
    own staging clean-up never sees it, so the naive baseline and the full rewrite read the very same
    records."""
    from wootric_ingest.lake.lakehouse import Lakehouse

    spark, spark_start = _started_spark()
    config = _config(url, root, lookback)
    kept = _config(url, f"{root}-staged", lookback)
    return spark, spark_start, Lakehouse(config, spark), Lakehouse(kept, spark)


def _plan(lakehouse, stream_config, **options):
    from wootric_ingest.lake.state import read_state
    from wootric_ingest.run.planning import RunOptions, plan_stream

    return plan_stream(
        lakehouse.config,
        stream_config,
        read_state(lakehouse.table(stream_config)),
        RunOptions(**options),
        datetime.now(timezone.utc),
    )


def child_sync(url: str, root: str) -> dict:
    """A full sync of every stream through staging: extract all, then land each (timed apart); staging kept
    for the baseline and the rewrite."""
    from wootric_ingest.api import WootricClient
    from wootric_ingest.run.landing import extract, land, prepare
    from wootric_ingest.run.progress import Progress

    spark, spark_start, lakehouse, kept = _lakehouses(url, root, None)
    probe = Probe(spark)
    out: dict = {"spark_start_s": spark_start, "streams": {}}
    with WootricClient(lakehouse.config.api) as client:
        client.authenticate()
        fetched = []
        for stream_config in lakehouse.config.streams:
            plan = _plan(lakehouse, stream_config)
            staging = kept.staging(RUN_ID, stream_config.name)
            fetched.append((plan, staging, extract(client, staging, plan, Progress())))
    for plan, staging, fetch in fetched:
        started = time.monotonic()
        prepare(lakehouse, plan)  # a run does it while the pages arrive; timed with the landing all the same
        landed = land(lakehouse, staging, plan, RUN_ID)
        out["streams"][plan.stream.name] = {
            "records": fetch.records,
            "requests": fetch.api_requests,
            "fetch_s": fetch.seconds,
            "land_s": time.monotonic() - started,
            "rows": landed.table_rows,
            "parts": len(staging.parts()),
        }
    return {**out, **probe.finish()}


def child_naive(root: str) -> dict:
    """The baseline: every stream's records in a Python list (as a client without staging would hand them
    over), then the same shaping into Python rows, `createDataFrame`, and one overwrite per stream."""
    import pyarrow.parquet as pq

    from wootric_ingest.lake.state import SyncMode
    from wootric_ingest.lake.tables import StreamTable
    from wootric_ingest.run.landing import latest_per_key
    from wootric_ingest.shaping import shape

    spark, spark_start, lakehouse, kept = _lakehouses(None, root, None)
    probe = Probe(spark)
    naive = lakehouse.layout.root + "/naive"
    out: dict = {"spark_start_s": spark_start, "streams": {}}
    for stream_config in lakehouse.config.streams:
        records = [
            (json.loads(row["_raw"]), row["_extracted_at"])
            for part in kept.staging(RUN_ID, stream_config.name).parts()
            for row in pq.read_table(part, columns=["_raw", "_extracted_at"]).to_pylist()
        ]
        table = StreamTable(spark, stream_config.stream, lakehouse.properties, path=f"{naive}/{stream_config.name}")
        plan = _plan(lakehouse, stream_config, full_sync=True)
        assert plan.mode is SyncMode.FULL
        started = time.monotonic()
        table.ensure()  # as `prepare` does
        shaped = [shape(plan.stream, record, fetched, "naive").values for record, fetched in records]
        rows = latest_per_key(plan.stream, spark.createDataFrame(shaped, table.schema))
        table.overwrite(rows, plan.commit_metadata("naive", None), "naive")
        out["streams"][stream_config.name] = {"records": len(records), "land_s": time.monotonic() - started}
        del records, shaped, rows
    return {**out, **probe.finish()}


def child_noop(url: str, root: str) -> dict:
    """`job.run` of every stream when nothing is new, in a fresh process, as `wootric-ingest run` runs it (Spark
    starting on its own thread while the run authenticates and takes its locks): wall time with Spark's start."""
    started = time.monotonic()
    from wootric_ingest.lake.spark import start_spark
    from wootric_ingest.run.job import run

    os.environ["WOOTRIC_SPARK_SCRATCH"] = os.environ["BENCH_SCRATCH"]
    spark = start_spark("wootric-bench")
    ready: list[float] = []
    spark.add_done_callback(lambda _: ready.append(time.monotonic() - started))
    results = run(_config(url, root, lookback=0), spark)
    wall = time.monotonic() - started
    return {
        "wall_s": wall,
        "spark_start_s": ready[0],
        "streams": {
            r.stream_name: {
                "mode": r.mode,
                "requests": r.api_requests,
                "records": r.records_fetched,
                "status": r.status,
                "seconds": r.seconds,
            }
            for r in results
        },
    }


def child_incremental(url: str, root: str) -> dict:
    """The responses table after 1% of its records changed: an incremental run (MERGE), then a full rewrite
    of the same table from the full sync's staging (overwrite), each timed from staged records to commit; then
    the same incremental run again on the table with deletion vectors enabled, which the job does not (yet) do."""
    from wootric_ingest.lake.state import SyncMode
    from wootric_ingest.run.landing import land, prepare

    spark, spark_start, lakehouse, kept = _lakehouses(url, root, None)
    stream_config = lakehouse.config.stream("responses")
    table = lakehouse.table(stream_config)
    out: dict = {"spark_start_s": spark_start, "changed": _change_recent_responses(spark, url, table.path)}
    out["incremental"] = _incremental(lakehouse, kept, "bench-incremental")

    plan = _plan(lakehouse, stream_config, full_sync=True)
    assert plan.mode is SyncMode.FULL
    started = time.monotonic()
    prepare(lakehouse, plan)
    landed = land(lakehouse, kept.staging(RUN_ID, "responses"), plan, "bench-rewrite")
    out["rewrite"] = {"land_s": time.monotonic() - started, "rows": landed.table_rows}

    spark.sql(f"ALTER TABLE {table.sql} SET TBLPROPERTIES ('delta.enableDeletionVectors' = 'true')")
    _change_recent_responses(spark, url, table.path)
    out["incremental_dv"] = _incremental(lakehouse, kept, "bench-incremental-dv")
    return out


def _incremental(lakehouse, kept, run_id: str) -> dict:
    """One incremental run of responses: extraction, then landing (timed apart); what the MERGE touched."""
    from wootric_ingest.api import WootricClient
    from wootric_ingest.lake.state import SyncMode
    from wootric_ingest.run.landing import extract, land, prepare
    from wootric_ingest.run.progress import Progress

    stream_config = lakehouse.config.stream("responses")
    table = lakehouse.table(stream_config)
    plan = _plan(lakehouse, stream_config)
    assert plan.mode is SyncMode.INCREMENTAL, plan.reason
    staging = kept.staging(run_id, "responses")
    with WootricClient(lakehouse.config.api) as client:
        client.authenticate()
        fetch = extract(client, staging, plan, Progress())
    files = len(table.read().inputFiles())
    started = time.monotonic()
    prepare(lakehouse, plan)
    landed = land(lakehouse, staging, plan, run_id)
    seconds = time.monotonic() - started
    staging.cleanup()
    merge = table.commit_of(run_id).metrics
    return {
        "fetch_s": fetch.seconds,
        "requests": fetch.api_requests,
        "records": fetch.records,
        "land_s": seconds,
        "updated": landed.rows_updated,
        "inserted": landed.rows_inserted,
        "files": files,
        "files_rewritten": int(merge.get("numTargetFilesRemoved", 0)),
        "rows_copied": int(merge.get("numTargetRowsCopied", 0)),
    }


def _change_recent_responses(spark, url: str, path: str) -> int:
    """Update 1% of all responses in the sandbox, picked among those the 30-day look-back re-reads."""
    from pyspark.sql import functions as F

    table = spark.read.format("delta").load(path)
    newest = table.agg(F.max("created_at")).first()[0]
    edge = (datetime.fromisoformat(newest.replace("Z", "+00:00")) - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    recent = [int(r["id"]) for r in table.where(F.col("created_at") >= edge).select("id").collect()]
    count = int(table.count() * CHANGED)
    ids = sorted(recent)[:: max(len(recent) // count, 1)][:count]
    body = json.dumps({"stream": "responses", "action": "update", "ids": ids}).encode()
    request = urllib.request.Request(
        f"{url}/_sandbox/mutate", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    return len(json.loads(urllib.request.urlopen(request).read())["ids"])


def child_plain_spark() -> dict:
    """The start-up baseline: a plain local session, no Delta jars or extensions."""
    from pyspark.sql import SparkSession

    started = time.monotonic()
    spark = (
        SparkSession.builder.master("local[*]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    spark.range(1).count()
    return {"spark_start_s": time.monotonic() - started}


CHILDREN = {
    "sync": child_sync,
    "naive": child_naive,
    "noop": child_noop,
    "incremental": child_incremental,
    "plain-spark": child_plain_spark,
}


# -------------------------------------------------------------------------------------------------- parent


def serve(responses: int, workdir: Path) -> SandboxProcess:
    """The sandbox with `responses` responses, N/5 end users and N/10 declines, rate limit lifted."""
    return SandboxProcess(workdir, responses=responses, end_users=max(responses // 5, 10), declines=responses // 10)


def _child_env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def run_child(name: str, *args: str, script: str = __file__) -> dict:
    """Run one child process of `script` (a benchmark with `--child`); its last stdout line is its JSON result
    (a failure is reported, not raised)."""
    proc = subprocess.run(
        [sys.executable, script, "--child", name, *args], cwd=REPO, env=_child_env(), capture_output=True, text=True
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"  {name} failed: {tail}", file=sys.stderr, flush=True)
        return {"failed": tail}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = (
        next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
        / 2**20
    )
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    from importlib.metadata import version

    load = os.getloadavg()[0]
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB; {java}; Python {platform.python_version()}, "
        f"pyspark {version('pyspark')}, delta-spark {version('delta-spark')}; load average {load:.1f} at start"
    )


def _total(result: dict, key: str, streams=("end_users", "responses", "declines")) -> float:
    return sum(result["streams"][s][key] for s in streams)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES} (a few minutes)")
    parser.add_argument("--sizes", help="comma-separated response counts (default 10000,100000,1000000)")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child](*args.args)), flush=True)
        return 0

    sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else QUICK_SIZES if args.quick else SIZES
    workdir = Path(tempfile.mkdtemp(prefix="wootric-bench-"))
    os.environ["BENCH_SCRATCH"] = str(workdir / "spark")
    print(f"machine: {machine()}", flush=True)
    measured: dict[int, dict] = {}
    try:
        for n in sizes:
            root = str(workdir / f"lake-{n}")
            with serve(n, workdir) as served:
                print(f"N={n}: sandbox generated in {served.ready_s:.0f} s; full sync...", flush=True)
                m = measured[n] = {"sandbox_s": served.ready_s, "sync": run_child("sync", served.url, root)}
                print(f"N={n}: naive baseline...", flush=True)
                m["naive"] = run_child("naive", root)
                print(f"N={n}: no-op incremental run...", flush=True)
                m["noop"] = run_child("noop", served.url, root)
                if n == sizes[-1]:
                    print(f"N={n}: {CHANGED:.0%} of responses changed; incremental run and full rewrite...", flush=True)
                    m["incremental"] = run_child("incremental", served.url, root)
            shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(f"{root}-staged", ignore_errors=True)
        plain = run_child("plain-spark")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(report(sizes, measured, plain))
    return 0


def report(sizes: tuple[int, ...], measured: dict[int, dict], plain: dict) -> str:
    """The table: one row per figure and size, ours beside the baseline and the target."""
    lines = ["| figure | N | ours | baseline | ours / baseline | target |", "|---|---:|---:|---:|---:|---|"]

    def row(figure: str, n, ours: str, base: str, ratio: str, target: str = "") -> None:
        lines.append(f"| {figure} | {n} | {ours} | {base} | {ratio} | {target} |")

    def ok(result: dict) -> bool:
        return "failed" not in result

    first = sizes[0]
    for n in sizes:
        m = measured[n]
        sync, naive = m["sync"], m["naive"]
        if not ok(sync):
            row("full sync through staging", f"{n:,}", f"failed: {sync['failed']}", "", "")
            continue
        rss_target = ""
        if n != first and ok(measured[first]["sync"]):
            growth = sync["rss_peak_mb"] - measured[first]["sync"]["rss_peak_mb"]
            rss_target = (
                f"{growth:+.0f} MB vs N={first:,}: {'met' if growth <= FLAT_RSS_MB else 'MISSED'} (≤ +{FLAT_RSS_MB})"
            )
        base_rss = f"{naive['rss_peak_mb']:.0f} MB" if ok(naive) else f"failed: {naive['failed']}"
        row(
            "driver peak RSS (Python), full sync of 3 streams",
            f"{n:,}",
            f"{sync['rss_peak_mb']:.0f} MB",
            base_rss,
            f"{sync['rss_peak_mb'] / naive['rss_peak_mb']:.2f}" if ok(naive) else "",
            rss_target,
        )
        row(
            "JVM heap used, peak sampled / after GC",
            f"{n:,}",
            f"{sync['heap_peak_mb']:.0f} / {sync['heap_after_gc_mb']:.0f} MB",
            f"{naive['heap_peak_mb']:.0f} / {naive['heap_after_gc_mb']:.0f} MB" if ok(naive) else "",
            f"{sync['heap_peak_mb'] / naive['heap_peak_mb']:.2f}" if ok(naive) else "",
            f"max heap {sync['heap_max_mb']:.0f} MB",
        )
        responses = sync["streams"]["responses"]
        ours_rate = responses["rows"] / responses["land_s"]
        target = ""
        if n >= 1_000_000:
            target = (
                f"{responses['land_s']:.0f} s: {'met' if responses['land_s'] <= TARGET_LAND_1M_S else 'MISSED'}"
                f" (≤ {TARGET_LAND_1M_S} s)"
            )
        if ok(naive):
            naive_rate = naive["streams"]["responses"]["records"] / naive["streams"]["responses"]["land_s"]
            base, ratio = (
                f"{naive_rate:,.0f} rows/s ({naive['streams']['responses']['land_s']:.1f} s)",
                f"{ours_rate / naive_rate:.2f}",
            )
        else:
            base, ratio = "", ""
        row(
            "landing responses: staged → committed Delta rows",
            f"{n:,}",
            f"{ours_rate:,.0f} rows/s ({responses['land_s']:.1f} s)",
            base,
            ratio,
            target,
        )
        fetch = _total(sync, "fetch_s")
        row(
            "extraction of 3 streams to staging (sandbox, no rate limit)",
            f"{n:,}",
            f"{_total(sync, 'records'):,.0f} records in {fetch:.1f} s, {_total(sync, 'requests'):,.0f} requests",
            "",
            "",
            "",
        )
        noop = m["noop"]
        if ok(noop):
            worst = max(s["requests"] for s in noop["streams"].values())
            full = sync["spark_start_s"] + fetch + _total(sync, "land_s")
            modes = {s["mode"] for s in noop["streams"].values()}
            row(
                "no-op incremental run of 3 streams, wall with Spark start",
                f"{n:,}",
                f"{noop['wall_s']:.1f} s (Spark ready at {noop['spark_start_s']:.1f} s; {'/'.join(sorted(modes))})",
                f"{full:.1f} s (full sync)",
                f"{noop['wall_s'] / full:.2f}",
                f"{'met' if noop['wall_s'] <= TARGET_NOOP_S else 'MISSED'} (≤ {TARGET_NOOP_S} s)",
            )
            row(
                "no-op incremental run: API requests per stream (most)",
                f"{n:,}",
                ", ".join(f"{k} {v['requests']}" for k, v in noop["streams"].items()),
                f"{_total(sync, 'requests'):,.0f} (full sync, all)",
                "",
                f"{'met' if worst <= TARGET_NOOP_REQUESTS else 'MISSED'} (≤ {TARGET_NOOP_REQUESTS})",
            )
        else:
            row("no-op incremental run", f"{n:,}", f"failed: {noop['failed']}", "", "")
        if "incremental" in m:
            inc = m["incremental"]
            if ok(inc):
                r = inc["rewrite"]
                for label, i in (("MERGE", inc["incremental"]), ("MERGE, deletion vectors on", inc["incremental_dv"])):
                    ratio = i["land_s"] / r["land_s"]
                    row(
                        f"incremental, {inc['changed']:,} responses changed ({label}) vs full rewrite",
                        f"{n:,}",
                        f"{i['land_s']:.1f} s: {i['records']:,} re-read, {i['updated']:,} updated, "
                        f"{i['files_rewritten']} of {i['files']} files rewritten ({i['rows_copied']:,} rows copied)",
                        f"{r['land_s']:.1f} s ({r['rows']:,} rows)",
                        f"{ratio:.2f}",
                        f"{'met' if ratio <= TARGET_INCREMENTAL_RATIO else 'MISSED'} (≤ 0.33)",
                    )
            else:
                row("incremental vs rewrite", f"{n:,}", f"failed: {inc['failed']}", "", "")
    starts = [m[k]["spark_start_s"] for m in measured.values() for k in ("sync", "naive", "noop") if ok(m[k])]
    if starts and ok(plain):
        median = statistics.median(starts)
        row(
            "Spark session start (local, Delta), median of runs",
            "",
            f"{median:.1f} s",
            f"{plain['spark_start_s']:.1f} s (plain, no Delta)",
            f"{median / plain['spark_start_s']:.2f}",
            "reported apart",
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
