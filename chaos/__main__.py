"""`python -m chaos [--runs N] [--seed S] ...`: run the chaos suite and print its table; exit 1 unless nothing
was lost, duplicated or left stale."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from chaos.harness import KILL_POINTS, run_chaos


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=50, help="job runs, killed ones included (default %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="data, faults and kill points (default %(default)s)")
    p.add_argument("--kill-rate", type=float, default=0.5, help="share of runs killed (default %(default)s)")
    p.add_argument("--kill-points", default=",".join(KILL_POINTS), help="where kills may happen, some of %(default)s")
    p.add_argument("--faults-per-run", type=int, default=3, help="at most this many scripted faults per run")
    p.add_argument("--max-minutes", type=float, default=None, help="stop starting runs after this long")
    p.add_argument("--workdir", type=Path, default=None, help="keep the sandbox logs, job logs and lakehouse here")
    args = p.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="wootric-chaos-"))
    try:
        report = run_chaos(
            workdir,
            runs=args.runs,
            seed=args.seed,
            kill_rate=args.kill_rate,
            kill_points=tuple(k.strip() for k in args.kill_points.split(",") if k.strip()),
            faults_per_run=args.faults_per_run,
            max_minutes=args.max_minutes,
            say=lambda line: print(line, flush=True),
        )
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(report.table())
    return 0 if report.lost == report.duplicates == report.stale == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
