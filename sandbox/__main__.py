"""`python -m sandbox`: serve a sandbox until SIGTERM/SIGINT (Makefiles, chaos, benchmarks).

Prints one line, `sandbox listening on http://127.0.0.1:PORT`, once it accepts requests; with
`--ready-file` it also writes the base URL there (atomically) and removes it on exit.
"""

from __future__ import annotations

import argparse
import calendar
import logging
import os
import signal
import sys
import threading
from datetime import date
from pathlib import Path

from .options import REGIONS, SandboxOptions
from .server import Sandbox


def _epoch(day: str) -> int:
    return calendar.timegm(date.fromisoformat(day).timetuple())


def parse_args(argv: list[str] | None) -> tuple[SandboxOptions, argparse.Namespace]:
    d = SandboxOptions()
    p = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port (default %(default)s)")
    p.add_argument("--end-users", type=int, default=d.end_users)
    p.add_argument("--responses", type=int, default=d.responses)
    p.add_argument("--declines", type=int, default=d.declines)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--start", type=_epoch, default=d.start, help="first day of the data range, YYYY-MM-DD (UTC)")
    p.add_argument("--end", type=_epoch, default=d.end, help="day the data range ends, YYYY-MM-DD (UTC)")
    p.add_argument("--rate-limit", type=int, default=d.rate_limit, help="requests per window (default: none)")
    p.add_argument("--rate-window", type=float, default=d.rate_window, help="seconds (default %(default)s)")
    p.add_argument("--token-ttl", type=int, default=d.token_ttl)
    p.add_argument("--latency", type=float, default=d.latency, help="seconds per list request")
    p.add_argument("--latency-jitter", type=float, default=d.latency_jitter)
    p.add_argument("--error-rate", type=float, default=d.error_rate, help="fraction answering a random 5xx")
    p.add_argument("--burst-hour", type=int, default=d.burst_hour)
    p.add_argument("--burst-second", type=int, default=d.burst_second)
    p.add_argument("--churn", type=int, default=d.churn, help="records updated after each page served")
    p.add_argument("--churn-deletes", action="store_true", help="also delete a record every few pages")
    p.add_argument("--churn-delete-every", type=int, default=d.churn_delete_every)
    p.add_argument("--region", choices=REGIONS, default=d.region)
    p.add_argument("--bad-credentials-status", type=int, choices=(400, 401), default=d.bad_credentials_status)
    p.add_argument("--timestamp-forms", choices=("ruby", "mixed"), default=d.timestamp_forms)
    p.add_argument("--honour-sort-order-everywhere", action="store_true")
    p.add_argument("--timeout-sleep", type=float, default=d.timeout_sleep)
    p.add_argument("--ready-file", type=Path, help="write the base URL here once listening")
    p.add_argument("--log-level", default="WARNING")
    args = p.parse_args(argv)
    fields = set(SandboxOptions.__dataclass_fields__)
    try:
        options = SandboxOptions(**{k: v for k, v in vars(args).items() if k in fields})
    except ValueError as problem:
        p.error(str(problem))
    return options, args


def main(argv: list[str] | None = None) -> int:
    options, args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    with Sandbox(options) as sandbox:
        if args.ready_file:  # before the line, so whoever reads the line finds the file too
            partial = args.ready_file.with_name(args.ready_file.name + ".partial")
            partial.write_text(sandbox.base_url + "\n")
            os.replace(partial, args.ready_file)
        print(f"sandbox listening on {sandbox.base_url}", flush=True)
        try:
            while not stopping.wait(0.5):
                pass
        finally:
            if args.ready_file:
                args.ready_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
