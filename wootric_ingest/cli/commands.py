"""`wootric-ingest`: the command line, and the one `main()` every entry point calls.

The console script, `jobs/wootric_to_delta.py` (spark-submit), the Databricks wheel task, `make run`
and the tests all end up in `main()`, so a run behaves the same wherever it is started. Results go to
stdout; logs and the one-line reason for a failure go to stderr, both with secrets redacted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from wootric_ingest import redaction
from wootric_ingest.cli.nps_report import PERIODS
from wootric_ingest.config import ConfigError, Deletes, FullSyncWrite, SecretReader, SourceConfig, load_config

log = logging.getLogger("wootric_ingest")

COMMANDS = ("run", "check", "plan", "nps", "reconcile", "forget", "discover", "docs")
CHECK_PATIENCE_SECONDS = 20.0  # `check` is a quick probe: an unreachable API is reported, not waited out
EXIT_FAILED, EXIT_USAGE = 1, 2

EPILOG = """\
examples:
  wootric-ingest check --config conf/example.yaml        credentials work, every stream answers
  wootric-ingest plan --config conf/example.yaml         what the next run does per stream, and why
  wootric-ingest run --config conf/example.yaml          sync every configured stream
  wootric-ingest run --config conf/example.yaml --streams responses --full-sync
  wootric-ingest run --config conf/example.yaml --dry-run
  wootric-ingest nps --config conf/example.yaml --by week   NPS trend from the gold tables
  wootric-ingest reconcile --config conf/example.yaml     Wootric's NPS per month against the gold tables
  wootric-ingest forget --config conf/example.yaml --email alice@example.com
                                                         erase a person from every table (one commit each)
  wootric-ingest discover > catalog.json                 streams, keys, cursors, JSON schemas
  wootric-ingest docs > wootric-streams.md               the tables' fields as Markdown

Secrets: write ${ENV_VAR} in the config, or {{secrets/<scope>/<key>}} on Databricks.
Exit status: 0 success, 1 the run or check failed, 2 bad usage or an invalid config.
"""


REGIONS_HINT = "US https://api.wootric.com, EU https://app.wootric.eu, AU https://app.wootric.au"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time (pytest and notebooks swap it)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(level: str) -> None:
    """Our lines to stderr through a redacting handler, and every other root handler redacting too.

    Works in a terminal and in a Databricks driver log alike; the platform's own handlers get the
    redacting filter as well, so no handler can print a secret.
    """
    root = logging.getLogger()
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        ours = _StderrHandler()
        ours.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(ours)
    for handler in root.handlers:
        redaction.install(handler)
    logging.getLogger("wootric_ingest").setLevel(level.upper())
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)


def _dbutils() -> Any:
    """The notebook's `dbutils` when there is one, else one made for the session (wheel and spark-submit tasks)."""
    try:
        from IPython import get_ipython  # a notebook on Databricks

        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is not None and "dbutils" in shell.user_ns:
        return shell.user_ns["dbutils"]
    from pyspark.dbutils import DBUtils  # exists only on the Databricks Runtime

    from wootric_ingest.lake.spark import get_spark

    return DBUtils(get_spark())


def databricks_secret_reader() -> SecretReader | None:
    """On Databricks, `{{secrets/<scope>/<key>}}` is read with `dbutils.secrets.get`; elsewhere there is none."""
    if not os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        return None

    def read(scope: str, key: str) -> str:
        return _dbutils().secrets.get(scope=scope, key=key)

    return read


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, then the exit status for bad usage
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--log-level",
        default=argparse.SUPPRESS,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="how much to log to stderr (default: INFO)",
    )
    parser = _Parser(
        prog="wootric-ingest",
        description="Land Wootric NPS data (end users, responses, declines) in Delta Lake tables.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def command(name: str, summary: str, *, config: bool) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=summary, description=summary, parents=[common])
        if config:
            sub.add_argument("--config", required=True, metavar="FILE", help="the source's YAML config")
        return sub

    run = command("run", "sync the configured streams into their Delta tables", config=True)
    run.add_argument("--streams", metavar="A,B", help="only these configured streams (default: all)")
    run.add_argument(
        "--full-sync", action="store_true", help="re-read every selected stream from start_date and replace its table"
    )
    run.add_argument("--dry-run", action="store_true", help="print the plan; fetch nothing, write nothing")
    command("check", "validate the config, obtain a token and read one page per stream (no Spark)", config=True)
    plan = command(
        "plan", "per stream: incremental from which bookmark or full sync and why, where it writes", config=True
    )
    plan.add_argument("--streams", metavar="A,B", help="only these configured streams (default: all)")
    plan.add_argument("--full-sync", action="store_true", help="plan as if --full-sync were given to run")
    trend = command("nps", "print the NPS trend from the gold tables, one row per period with a bar", config=True)
    trend.add_argument("--by", choices=PERIODS, default="month", help="the period of a row (default: month)")
    trend.add_argument("--segment", metavar="NAME", help="one segment's values per month (an end-user property)")
    trend.add_argument("--last", type=_positive, default=12, metavar="N", help="the last N periods (default: 12)")
    reconcile = command(
        "reconcile", "compare Wootric's own NPS per month (/v1/nps_summary) with the gold tables", config=True
    )
    reconcile.add_argument("--months", type=_positive, default=12, metavar="N", help="the last N months (default: 12)")
    forget = command(
        "forget",
        "erase people (by email or end-user id) from every stream table, the rejected table and staging",
        config=True,
    )
    forget.add_argument("--email", action="append", default=[], metavar="E", help="a person's email (repeatable)")
    forget.add_argument(
        "--end-user-id", action="append", default=[], metavar="ID", help="a person's end-user id (repeatable)"
    )
    forget.add_argument("--vacuum", action="store_true", help="then vacuum the tables, as far as the retention allows")
    discover = command("discover", "print the streams, their keys, cursors and schemas as JSON", config=False)
    docs = command("docs", "print the tables and fields reference as Markdown", config=False)
    for sub in (discover, docs):
        sub.add_argument("--config", metavar="FILE", help="also show the personal data policy of this source's config")
    return parser


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, not {text!r}")
    return int(text)


class UsageError(ValueError):
    """A command line that names something the config does not have."""


def _selected_streams(config: SourceConfig, text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    configured = [s.name for s in config.streams]
    unknown = [n for n in names if n not in configured]
    if unknown or not names:
        raise UsageError(
            f"--streams: {', '.join(unknown) or 'no stream given'} is not a configured stream; "
            f"configured: {', '.join(configured)}"
        )
    return names


def _utc(instant: datetime) -> str:
    return instant.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cmd_discover(_args, config: SourceConfig | None) -> int:
    from wootric_ingest.cli.docs import catalog

    print(json.dumps(catalog(config.pii if config else None), indent=2))
    return 0


def _cmd_docs(_args, config: SourceConfig | None) -> int:
    from wootric_ingest.cli.docs import markdown

    print(markdown(config.pii if config else None), end="")
    return 0


def _cmd_forget(args, config: SourceConfig) -> int:
    """Erase people; per table the rows removed and until when older versions hold them. Nobody is printed by
    email or id, only by hash."""
    from wootric_ingest.lake.lakehouse import Lakehouse
    from wootric_ingest.lake.spark import get_spark
    from wootric_ingest.run.erasure import People, forget

    if not args.email and not args.end_user_id:
        raise UsageError("forget: name at least one person with --email or --end-user-id")
    if not all(value.strip() for value in args.email + args.end_user_id):
        raise UsageError("forget: an --email or --end-user-id is blank")
    people = People(tuple(args.email), tuple(args.end_user_id))
    erasure = forget(Lakehouse(config, get_spark()), people, vacuum=args.vacuum)
    retention = config.delta_log_retention_days
    print(f"forget {erasure.run_id}: {len(people.emails) + len(people.end_user_ids)} identifiers")
    for erased in erasure.tables:
        if erased.rows:
            print(
                f"{erased.stream}: {erased.rows} rows removed in version {erased.version} of {erased.table}; "
                f"older versions hold them until {_utc(erased.ages_out)} (delta_log_retention_days: {retention})"
            )
        else:
            print(f"{erased.stream}: no rows of these people in {erased.table}")
    for folder in erasure.staging_removed:
        print(f"staging: removed {folder} (an interrupted run's; the next run fetches its ranges again)")
    for person in erasure.not_found:
        print(f"not found: the person with hash {person} is in no table (nothing to erase)")
    if erasure.vacuumed:
        print(
            f"vacuumed {len(erasure.vacuumed)} tables: files unused for more than {retention} days are gone; "
            "run forget --vacuum again after the dates above to remove the versions this erasure replaced"
        )
    return 0


def _cmd_check(args, config: SourceConfig) -> int:
    """Credentials and every stream, one page each: what a new user runs before scheduling anything."""
    from wootric_ingest.api import CredentialsRejected, RetryPolicy, WootricClient

    print(f"config {args.config}: OK ({len(config.streams)} streams: {', '.join(s.name for s in config.streams)})")
    patience = min(CHECK_PATIENCE_SECONDS, config.api.retry_give_up_seconds)
    failures = 0
    with WootricClient(config.api, retry=RetryPolicy(give_up_after=patience)) as client:
        try:
            client.authenticate()
        except Exception as e:
            print(f"token: FAILED: {_reason(e)}")
            if isinstance(e, CredentialsRejected):
                print(
                    f"  check {' and '.join(_pair(config))}, and that base_url is your account's region "
                    f"({REGIONS_HINT})"
                )
            print(f"check failed: no token for {config.api.auth.principal} at {config.api.base_url}", file=sys.stderr)
            return EXIT_FAILED
        print(f"token: OK ({config.api.auth.grant} grant for {config.api.auth.principal} at {config.api.base_url})")
        now = datetime.now(timezone.utc)
        for stream_config in config.streams:
            stream = stream_config.stream
            try:
                with closing(client.pages(stream, config.start_date, now)) as pages:
                    first = next(pages, None)
                records = first.records if first else []
                where = (
                    "in the whole list" if stream.read_whole else f"on the first page since {_utc(config.start_date)}"
                )
                print(f"{stream.name}: OK ({len(records)} records {where})")
            except Exception as e:
                failures += 1
                print(f"{stream.name}: FAILED: {_reason(e)}")
    if failures:
        print(f"check failed: {failures} of {len(config.streams)} streams could not be read", file=sys.stderr)
        return EXIT_FAILED
    print("OK")
    return 0


def _pair(config: SourceConfig) -> tuple[str, str]:
    return ("username", "password") if config.api.auth.grant == "password" else ("client_id", "client_secret")


def _print_plan(config: SourceConfig, source: str, options) -> None:
    from wootric_ingest.lake.lakehouse import Lakehouse
    from wootric_ingest.lake.spark import get_spark
    from wootric_ingest.lake.state import SyncMode
    from wootric_ingest.run.job import plans

    now = datetime.now(timezone.utc)
    schedules = f"trigger '{config.trigger.cron}' {config.trigger.timezone}"
    if config.additional_full_sync:
        schedules += (
            f"; additional full sync '{config.additional_full_sync.cron}' {config.additional_full_sync.timezone}"
        )
    print(f"plan for {source} at {_utc(now)} ({schedules})")
    lakehouse = Lakehouse(config, get_spark())
    properties = ", ".join(f"{k}={v}" for k, v in lakehouse.properties.items())
    for plan in plans(lakehouse, options, now):
        stream, table = plan.stream, lakehouse.table(plan.config)
        if plan.mode is SyncMode.INCREMENTAL:
            write = "MERGE by id: new rows inserted, a row updated when its updated_at is newer"
        elif config.catalog.full_sync_write is FullSyncWrite.MERGE:
            write = "full_sync_write merge: one MERGE of only the new, edited and gone records"
        else:
            write = "full_sync_write rewrite: one overwrite commit, the table becomes what the API returns"
        print(f"{stream.name}: {plan.mode.value} sync, {plan.reason}")
        if stream.read_whole:
            print(f"  reads   {stream.name} whole, in one request (the API has no filter for it)")
        else:
            print(
                f"  reads   {stream.name} by {stream.cursor_field} from {_utc(plan.since)} to {_utc(plan.until)} "
                f"(the API's '{stream.cursor_filter}' filter)"
            )
        if table.managed:
            print(f"  writes  {table.name} (a managed table; {write})")
            if plan.config.folder:
                print(
                    f"  folder  '{plan.config.folder}' is not part of a managed table's three-level name; "
                    "it only names this table's lock file"
                )
        else:
            print(f"  writes  {table.path} ({write})")
            if table.name:
                print(f"  name    {table.name} (in the metastore)")
        print(f"  deletes {_deletes(plan.config.deletes, table)}")
        left = lakehouse.path_table_left_behind(plan.config)
        if left:
            print(
                f"  note    a path table of this stream exists at {left}: the managed table is new and a full "
                "sync fills it (README: moving a source to managed tables)"
            )
        print(f"  table   {properties}")


def _deletes(deletes: Deletes, table) -> str:
    """What a full sync does with records gone from the source, and what a switch to hard deletes removes."""
    if deletes is Deletes.SOFT:
        return "soft: a record gone from the source keeps its row, marked with _deleted_at, at a full sync"
    rows = table.read() if table.exists() else None
    marked = rows.where("_deleted_at IS NOT NULL").count() if rows is not None and "_deleted_at" in rows.columns else 0
    removed = f"; the {marked} rows earlier soft deletes marked are removed at the next full sync" if marked else ""
    return f"hard: a record gone from the source loses its row at a full sync{removed}"


def _cmd_plan(args, config: SourceConfig) -> int:
    from wootric_ingest.run.planning import RunOptions

    options = RunOptions(streams=_selected_streams(config, args.streams), full_sync=args.full_sync)
    _print_plan(config, args.config, options)
    return 0


def _cmd_run(args, config: SourceConfig) -> int:
    from wootric_ingest.run.planning import RunOptions

    options = RunOptions(streams=_selected_streams(config, args.streams), full_sync=args.full_sync)
    if args.dry_run:
        _print_plan(config, args.config, options)
        print("dry run: nothing fetched, nothing written")
        return 0

    from wootric_ingest.cli.summary import summary
    from wootric_ingest.lake.spark import start_spark
    from wootric_ingest.run.job import run
    from wootric_ingest.run.progress import Progress

    progress = Progress()
    results = run(config, start_spark(), options, progress=progress)
    print(summary(results, progress))
    failed = [r.stream_name for r in results if r.status != "ok"]
    if failed:
        print(f"wootric-ingest: run failed for {', '.join(failed)}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _gold_daily(config: SourceConfig, command: str) -> list:
    """`nps_daily` as (date, Counts) rows; a usage error without the `nps` section, a failure without the table."""
    from wootric_ingest.cli.nps_report import Counts
    from wootric_ingest.lake.gold import gold_table
    from wootric_ingest.lake.lakehouse import Lakehouse
    from wootric_ingest.lake.spark import get_spark

    if config.nps is None:
        raise UsageError(f"{command}: the config has no nps section (the gold layer); see the README's NPS section")
    table = gold_table(Lakehouse(config, get_spark()), "nps_daily")
    if not table.exists():
        raise RuntimeError(f"{table} does not exist yet: run the job first (wootric-ingest run)")
    fields = ("responses", "promoters", "passives", "detractors")
    return [(r["date"], Counts(*(r[f] for f in fields))) for r in table.read().collect()]


def _cmd_nps(args, config: SourceConfig) -> int:
    from pyspark.sql import functions as F

    from wootric_ingest.cli.nps_report import Counts, render, segment_trend, trend
    from wootric_ingest.lake.gold import gold_table
    from wootric_ingest.lake.lakehouse import Lakehouse
    from wootric_ingest.lake.spark import get_spark

    daily = _gold_daily(config, "nps")
    zone = config.nps.timezone if config.nps else "UTC"
    if args.segment is None:
        print(render(trend(daily, args.by, args.last), f"NPS by {args.by} ({zone}), the last {args.last}"))
        return 0
    if args.by != "month":
        raise UsageError("nps: --segment counts are kept per month; use --by month with --segment")
    table = gold_table(Lakehouse(config, get_spark()), "nps_by_segment")
    fields = ("responses", "promoters", "passives", "detractors")
    rows = [
        (r["month"], r["value"], Counts(*(r[f] for f in fields)))
        for r in table.read().where(F.col("segment") == args.segment).collect()
    ]
    title = f"NPS of segment {args.segment!r} by month and value ({zone}), the last {args.last} months"
    print(render(segment_trend(rows, args.last), title))
    return 0


def _cmd_reconcile(args, config: SourceConfig) -> int:
    """Wootric's NPS summary per month against the gold tables; exit 1 naming the months that differ."""
    from wootric_ingest.api import WootricClient
    from wootric_ingest.cli.nps_report import (
        Counts,
        MonthCheck,
        lake_figures,
        local_today,
        recent_months,
        render_reconciliation,
        wootric_figures,
    )

    daily = _gold_daily(config, "reconcile")
    assert config.nps is not None
    months = recent_months(local_today(config.nps.timezone), args.months)
    lake: dict = {}
    for day, counts in daily:
        lake[day.replace(day=1)] = lake.get(day.replace(day=1), Counts()) + counts
    with WootricClient(config.api) as client:
        client.authenticate()
        checks = [
            MonthCheck(first, wootric_figures(client.nps_summary(first, last)), lake_figures(lake.get(first, Counts())))
            for first, last in months
        ]
    print(f"NPS per month ({config.nps.timezone}): Wootric's /v1/nps_summary against {args.config}'s gold tables")
    print(render_reconciliation(checks))
    differing = [c.month.strftime("%Y-%m") for c in checks if c.differences]
    if differing:
        print(f"wootric-ingest: reconcile: the lake differs from Wootric in {', '.join(differing)}", file=sys.stderr)
        return EXIT_FAILED
    print(f"OK: the lake matches Wootric in all {len(checks)} months")
    return 0


def _reason(error: BaseException) -> str:
    """An exception as one redacted line."""
    text = redaction.redact(str(error)).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wootric-ingest")
    except PackageNotFoundError:
        return "(not installed)"


_HANDLERS: dict[str, Callable[..., int]] = {
    "run": _cmd_run,
    "check": _cmd_check,
    "plan": _cmd_plan,
    "nps": _cmd_nps,
    "reconcile": _cmd_reconcile,
    "forget": _cmd_forget,
    "discover": _cmd_discover,
    "docs": _cmd_docs,
}


def _dispatch(argv: Iterable[str]) -> int:
    try:
        args = _parser().parse_args(list(argv))
    except SystemExit as e:  # --help (0) or bad usage (2), already printed by argparse
        return int(e.code or 0)
    configure_logging(getattr(args, "log_level", "INFO"))
    if args.command in ("discover", "docs") and not args.config:
        return _HANDLERS[args.command](args, None)
    log.log(
        logging.INFO if args.command == "run" else logging.DEBUG,
        "wootric-ingest %s %s (package at %s)",
        _version(),
        args.command,
        Path(__file__).parents[1],
    )
    try:
        config = load_config(args.config, secret_reader=databricks_secret_reader())
    except ConfigError as e:
        print(redaction.redact(str(e)), file=sys.stderr)
        return EXIT_USAGE
    try:
        return _HANDLERS[args.command](args, config)
    except UsageError as e:
        print(f"wootric-ingest: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # the one place that turns any failure into a one-line reason and an exit status
        log.debug("%s failed", args.command, exc_info=True)
        print(f"wootric-ingest: {args.command} failed: {_reason(e)}", file=sys.stderr)
        return EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status: 0 success, 1 failure, 2 bad usage or config.

    Called without arguments (the console script, the Databricks wheel task) it reads `sys.argv` and
    a failure also raises `SystemExit`, since a wheel task would ignore a returned status.
    """
    status = _dispatch(sys.argv[1:] if argv is None else argv)
    if argv is None and status:
        raise SystemExit(status)
    return status


if __name__ == "__main__":
    sys.exit(main())
