"""Extraction benchmark: how close the client runs to the rate limit, the physical ceiling.

Runs a full extraction of responses (with a dense hour and a dense second) against the sandbox over
HTTP, once with a fast API and once at about one second per page, and prints per run: records, requests
used against the minimum ceil(N/50), 429s received, and wall time against the floor (requests divided
by the rate limit). It exits non-zero unless every run lost nothing, met no 429, used at most
1.05 x ceil(N/50) + windows requests and finished within 10% of the floor. The rate limit is scaled up
(100 requests per `--window` seconds instead of per minute) so the whole benchmark takes a few minutes;
the client learns the window from the headers.

    python bench/extraction.py [--quick] [--window SECONDS] [--records N]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox import Sandbox, SandboxOptions  # noqa: E402
from wootric_ingest.api import WootricClient  # noqa: E402
from wootric_ingest.config import ApiConfig, Auth  # noqa: E402
from wootric_ingest.streams import STREAMS  # noqa: E402

RATE_LIMIT = 100
LATENCIES = (("fast", 0.0), ("~1 s/page", 1.0))


def run(records: int, latency: float, window: float) -> dict:
    options = SandboxOptions(
        end_users=3000,
        responses=records,
        declines=0,
        burst_hour=3000,
        burst_second=300,
        rate_limit=RATE_LIMIT,
        rate_window=window,
        latency=latency,
        latency_jitter=latency * 0.1,
    )
    with Sandbox(options) as sb:
        c = sb.credentials
        api = ApiConfig(
            base_url=sb.base_url,
            auth=Auth(username=c.username, password=c.password),
            max_concurrency=32,
            requests_per_minute=RATE_LIMIT,
            timeout_seconds=30,
        )
        with WootricClient(api) as client:
            started = time.monotonic()
            client.authenticate()
            ids: set[int] = set()
            yielded = 0
            for batch in client.pages(
                STREAMS["responses"],
                datetime(2020, 1, 1, tzinfo=timezone.utc),
                datetime.now(timezone.utc) + timedelta(days=1),
            ):
                yielded += len(batch.records)
                ids.update(r["id"] for r in batch.records)
            wall = time.monotonic() - started
            stats = client.stats.snapshot()
        served = sb.stats.snapshot()
        truth = sb.dataset.ids("responses")
    rate = RATE_LIMIT / window
    return {
        "records": len(truth),
        "exact": ids == truth and yielded == len(truth),
        "requests": served["requests"],
        "minimum": math.ceil(len(truth) / 50) + 1,
        "request_bound": 1.05 * math.ceil(len(truth) / 50) + stats["windows"],
        "windows": stats["windows"],
        "served_429": served["served_429"],
        "wall": wall,
        "floor": served["requests"] / rate,
        "minimum_floor": (math.ceil(len(truth) / 50) + 1) / rate,
        "in_flight": served["max_in_flight"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller data set (about a minute in all)")
    parser.add_argument("--window", type=float, default=10.0, help="rate-limit window in seconds (default 10)")
    parser.add_argument("--records", type=int, help="responses before the bursts (default 40000, quick 8000)")
    args = parser.parse_args(argv)
    records = args.records or (8_000 if args.quick else 40_000)

    print(
        f"rate limit: {RATE_LIMIT} requests per {args.window:g} s window (the real API: per 60 s); "
        "requests include the token request; minimum = ceil(N/50) + 1"
    )
    header = (
        f"{'latency':<10} {'records':>8} {'exact':>5} {'requests':>8} {'minimum':>7} {'req/min':>7} "
        f"{'windows':>7} {'429s':>4} {'in flight':>9} {'wall s':>7} {'floor s':>7} {'wall/floor':>10} "
        f"{'wall/min floor':>14}"
    )
    print(header)
    print("-" * len(header))
    ok = True
    for label, latency in LATENCIES:
        r = run(records, latency, args.window)
        ok &= (
            r["exact"]
            and r["served_429"] == 0
            and r["requests"] <= r["request_bound"]
            and r["wall"] <= 1.1 * r["floor"]
        )
        print(
            f"{label:<10} {r['records']:>8} {'yes' if r['exact'] else 'NO':>5} {r['requests']:>8} "
            f"{r['minimum']:>7} {r['requests'] / r['minimum']:>7.3f} {r['windows']:>7} {r['served_429']:>4} "
            f"{r['in_flight']:>9} {r['wall']:>7.1f} {r['floor']:>7.1f} {r['wall'] / r['floor']:>10.3f} "
            f"{r['wall'] / r['minimum_floor']:>14.3f}",
            flush=True,
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
