"""Peer benchmark: the job beside the simplest loader a user could write instead, on the same data.

For each size N (responses; the sandbox also holds N/5 end users and N/10 declines, rate limit lifted), each in
a fresh process so every figure pays its own start-up:

- end to end: `job.run` of the responses stream (full sync: Spark's start, fetch, staging, landing, run
  history) against `plain_loader`, a sequential `requests` loop that walks the same endpoint past the 30-page
  cap and writes the records with delta-rs (`deltalake.write_deltalake`) in one commit;
- landing alone: the same staged responses (the job's Parquet staging) landed by the job (`prepare`, which
  creates the table and which a run does while the pages arrive, then `land`, a full sync; timed apart) against
  delta-rs creating a table of those very parts, the lower bound for landing them.

It prints one table with the ratios (job / peer; below 1.0 the job is faster).

    python bench/peer.py [--sizes 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.landing import machine, run_child, serve  # noqa: E402

SIZES = (10_000, 100_000, 1_000_000)
PER_PAGE, MAX_PAGE = 50, 30


def plain_loader(url: str, path: str) -> int:
    """Every response, fetched one page after another, then one delta-rs write: what a user writes in an
    afternoon. Walks newest first by `created[lte]`, 30 pages at a time, de-duplicating the boundary second."""
    import pyarrow as pa
    import requests
    from deltalake import write_deltalake

    session = requests.Session()
    credentials = session.get(f"{url}/_sandbox/credentials", timeout=30).json()
    token = session.post(
        f"{url}/oauth/token",
        data={"grant_type": "password", "username": credentials["username"], "password": credentials["password"]},
        timeout=30,
    ).json()["access_token"]
    session.headers["Authorization"] = f"Bearer {token}"
    records: dict[object, dict] = {}
    upper = int(datetime.now(timezone.utc).timestamp()) + 86_400
    while True:
        page, last = [], upper
        for number in range(1, MAX_PAGE + 1):
            answer = session.get(
                f"{url}/v1/responses",
                params={"created[lte]": upper, "page": number, "per_page": PER_PAGE, "sort_order": "desc"},
                timeout=30,
            )
            answer.raise_for_status()
            page = answer.json()
            for record in page:
                records[record["id"]] = record
            if page:
                last = int(datetime.fromisoformat(page[-1]["created_at"].replace("Z", "+00:00")).timestamp())
            if len(page) < PER_PAGE:
                break
        if len(page) < PER_PAGE:
            break
        upper = last
    table = pa.Table.from_pylist([{**r, "_raw": json.dumps(r)} for r in records.values()])
    write_deltalake(path, table, mode="overwrite")
    return len(records)


def child_plain(url: str, root: str) -> dict:
    started = time.monotonic()
    records = plain_loader(url, f"{root}/plain")
    return {"wall_s": time.monotonic() - started, "records": records}


def child_job(url: str, root: str) -> dict:
    """`job.run` of responses (a full sync), Spark's start included, as `wootric-ingest run` does it; the stream's
    fetch and its landing after it, as the run result times them."""
    started = time.monotonic()
    from bench.landing import _config
    from wootric_ingest.lake.spark import start_spark
    from wootric_ingest.run.job import run
    from wootric_ingest.run.planning import RunOptions

    [result] = run(_config(url, f"{root}/job", None), start_spark("wootric-bench"), RunOptions(streams=("responses",)))
    assert result.status == "ok" and result.fetched and result.landed, result.error
    return {
        "wall_s": time.monotonic() - started,
        "records": result.records_fetched,
        "fetch_s": result.fetched.seconds,
        "land_s": result.landed.seconds,
    }


def child_landing(url: str, root: str) -> dict:
    """The responses staged once by the job's extraction, then landed by the job and written by delta-rs."""
    import pyarrow.dataset as ds
    from deltalake import write_deltalake

    from bench.landing import _lakehouses, _plan
    from wootric_ingest.api import WootricClient
    from wootric_ingest.run.landing import extract, land, prepare
    from wootric_ingest.run.progress import Progress

    _, _, lakehouse, kept = _lakehouses(url, f"{root}/landing", None)
    stream_config = lakehouse.config.stream("responses")
    plan = _plan(lakehouse, stream_config)
    staging = kept.staging("bench-peer", stream_config.name)
    with WootricClient(lakehouse.config.api) as client:
        client.authenticate()
        fetched = extract(client, staging, plan, Progress())
    started = time.monotonic()
    prepare(lakehouse, plan)
    prepare_s = time.monotonic() - started
    started = time.monotonic()
    landed = land(lakehouse, staging, plan, "bench-peer")
    job_s = time.monotonic() - started
    started = time.monotonic()
    write_deltalake(
        f"{root}/delta-rs", ds.dataset([str(p) for p in staging.parts()], format="parquet").scanner().to_reader()
    )
    delta_rs_s = time.monotonic() - started
    return {
        "records": fetched.records,
        "rows": landed.table_rows,
        "job_prepare_s": prepare_s,
        "job_land_s": job_s,
        "delta_rs_s": delta_rs_s,
    }


CHILDREN = {"plain": child_plain, "job": child_job, "landing": child_landing}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", help="comma-separated response counts (default 10000,100000,1000000)")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child](*args.args)), flush=True)
        return 0
    sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else SIZES
    workdir = Path(tempfile.mkdtemp(prefix="wootric-peer-"))
    os.environ["BENCH_SCRATCH"] = str(workdir / "spark")
    print(f"machine: {machine()}", flush=True)
    rows = []
    try:
        for n in sizes:
            with serve(n, workdir) as sandbox:
                root = str(workdir / f"lake-{n}")
                measured = {}
                for name in ("plain", "job", "landing"):
                    print(f"N={n}: {name}...", flush=True)
                    measured[name] = run_child(name, sandbox.url, root, script=__file__)
                shutil.rmtree(root, ignore_errors=True)
            rows.append((n, measured))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(
        "| responses | job end to end | plain requests + delta-rs | ratio "
        "| job: preparing the table + landing | delta-rs write | ratio (landing) | ratio (both) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    failed = False
    for n, m in rows:
        if any("failed" in v for v in m.values()):
            print(f"| {n:,} | failed: {[k for k, v in m.items() if 'failed' in v]} | | | | | | |")
            failed = True
            continue
        plain, job, landing = m["plain"], m["job"], m["landing"]
        assert plain["records"] == job["records"] == landing["rows"], m
        print(
            f"| {n:,} | {job['wall_s']:.1f} s (fetch {job['fetch_s']:.1f} s, landing after it {job['land_s']:.1f} s) "
            f"| {plain['wall_s']:.1f} s | {job['wall_s'] / plain['wall_s']:.2f} "
            f"| {landing['job_prepare_s']:.1f} s + {landing['job_land_s']:.1f} s | {landing['delta_rs_s']:.1f} s "
            f"| {landing['job_land_s'] / landing['delta_rs_s']:.1f} "
            f"| {(landing['job_prepare_s'] + landing['job_land_s']) / landing['delta_rs_s']:.1f} |"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
