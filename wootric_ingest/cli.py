"""`wootric-ingest`: the command line, and the one `main()` every entry point calls.

`jobs/wootric_to_delta.py` (spark-submit), the Databricks wheel task and `make run` all end up here,
so a run behaves the same wherever it is started.
"""
from __future__ import annotations

import argparse
import logging
import sys

from wootric_ingest import redaction
from wootric_ingest.config import ConfigError, load_config

log = logging.getLogger("wootric_ingest")


def _configure_logging(level: str) -> None:
    """Log to stderr through a redacting handler; works in a terminal and a Databricks driver log alike."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_wootric", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._wootric = True  # type: ignore[attr-defined]
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    redaction.install(handler)
    logging.getLogger("wootric_ingest").setLevel(level.upper())
    root.setLevel(logging.WARNING)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wootric-ingest",
        description="Land Wootric NPS data (end users, responses, declines) in Delta Lake.",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="how much to log (default: INFO)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="sync the configured streams into Delta tables")
    run.add_argument("--config", required=True, metavar="FILE", help="the source's YAML config")
    run.add_argument("--streams", metavar="A,B", help="only these streams (default: all configured)")
    run.add_argument("--full-sync", action="store_true", help="rewrite every selected table from the start date")
    run.add_argument("--dry-run", action="store_true", help="show what would run; fetch and write nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 on success, non-zero with a one-line reason on failure)."""
    args = _parser().parse_args(argv)
    _configure_logging(args.log_level)
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(redaction.redact(str(e)), file=sys.stderr)
        return 2
    from wootric_ingest.job import run
    from wootric_ingest.planning import RunOptions
    from wootric_ingest.spark import get_spark

    options = RunOptions(
        streams=tuple(s.strip() for s in args.streams.split(",")) if args.streams else (),
        full_sync=args.full_sync,
        dry_run=args.dry_run,
    )
    try:
        results = run(config, get_spark(), options)
    except Exception as e:  # the one place that turns any failure into a one-line reason and an exit status
        log.debug("run failed", exc_info=True)
        print(f"wootric-ingest: {redaction.redact(str(e)).splitlines()[0] if str(e) else type(e).__name__}",
              file=sys.stderr)
        return 1
    for r in results:
        print(f"{r.stream}: {r.mode} ({r.reason}) fetched={r.records_fetched} written={r.rows_written} "
              f"table_rows={r.table_rows} "
              f"requests={r.api_requests} {r.seconds:.1f}s {r.status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
