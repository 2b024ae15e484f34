"""Personal data policy benchmark: what hashing and dropping costs staging, on N responses.

Staging is where the policy runs (each record, before it is shaped and written as Parquet), so the figure is
staging throughput: the same N response records, shaped like the API's (an end user with email, external id
and custom properties, an IP address, tags, notes), staged without a policy and with the README's example policy
(hash email, phone_number, external_id; drop ip_address, properties.name), in batches as the job stages them.
Each is run twice and the faster run counts (the first warms the caches). The API and Spark are out of the way.
The records come from a pool of distinct ones, each page a fresh copy with new ids (the copying costs both runs
alike), so memory stays flat at any N.

    python bench/pii.py [--records 1000000]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PAGE = 50  # records per API page: what the client hands staging at a time
POOL = 50_000  # distinct records the pages are copied from
POLICY = {"hash": ("email", "phone_number", "external_id"), "drop": ("ip_address", "properties.name")}


def _records(n: int) -> list[dict]:
    rng = random.Random(7)
    return [
        {
            "id": 500_000_000 + i,
            "end_user_id": 1_000_000 + i % 200_000,
            "survey_id": 101,
            "score": rng.randrange(11),
            "text": rng.choice((None, "Great service.", "Too expensive for what it does, honestly.")),
            "completed": True,
            "excluded_from_calculations": False,
            "ip_address": f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            "origin_url": "https://app.example.com/dashboard",
            "created_at": "2025-03-04 10:11:12 -0800",
            "updated_at": "2025-03-04 10:11:12 -0800",
            "tags": ["UX"],
            "notes": [],
            "end_user": {
                "email": f"user.{i % 200_000}@example.com",
                "external_id": f"{rng.getrandbits(64):016x}",
                "properties": {"name": "Ana Almeida", "role": "admin", "pricing_plan": "Pro", "seat count": 12},
            },
        }
        for i in range(n)
    ]


def _pages(pool: list[dict], n: int):
    """N records in pages of PAGE, copied from the pool with ids of their own."""
    for first in range(0, n, PAGE):
        yield [{**pool[i % len(pool)], "id": 500_000_000 + i} for i in range(first, min(first + PAGE, n))]


def _stage(pool: list[dict], n: int, policy, folder: Path) -> float:
    """Seconds to stage N records (pages of PAGE, flushed at the end), as the job's extraction does."""
    from wootric_ingest.lake.staging import StagingArea
    from wootric_ingest.lake.storage import LocalStorage
    from wootric_ingest.streams import STREAMS

    shutil.rmtree(folder, ignore_errors=True)
    staging = StagingArea(LocalStorage(), str(folder), STREAMS["responses"], "bench", policy=policy)
    started = time.perf_counter()
    for page in _pages(pool, n):
        staging.write(page, fetched_at=1700000000)
    staging.flush()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args(argv)

    from wootric_ingest.privacy import Policy

    n = args.records
    pool = _records(min(n, POOL))
    policy = Policy(POLICY["hash"], POLICY["drop"], "bench-salt-0123456789")
    with tempfile.TemporaryDirectory(prefix="wootric-bench-pii-") as scratch:
        folder = Path(scratch) / "responses"
        plain = min(_stage(pool, n, None, folder) for _ in range(2))
        hashed = min(_stage(pool, n, policy, folder) for _ in range(2))
    started = time.perf_counter()
    for page in _pages(pool, n):
        for record in page:
            policy.apply(record)
    applying = time.perf_counter() - started

    print(f"staging {n:,} responses (Python {sys.version.split()[0]}), policy: {POLICY}")
    print("| staging | seconds | records/s | cost |")
    print("|---|---:|---:|---:|")
    print(f"| no policy | {plain:.1f} | {n / plain:,.0f} | |")
    print(f"| with the policy | {hashed:.1f} | {n / hashed:,.0f} | +{(hashed / plain - 1) * 100:.0f}% |")
    print(f"| the policy alone (apply, with the page copies) | {applying:.1f} | {n / applying:,.0f} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
