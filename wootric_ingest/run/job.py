"""One run of the job: for each selected stream, plan it, then sync it (extract to staging, land in Delta).

One Spark session serves every stream. The driver fetches the streams one after another (the client's
rate limit is shared by all of them); each fetched stream is handed to a landing thread of its own, so it
lands while the next stream is fetched, beside the landings of streams fetched before. A stream lands once
per run, after its own fetch, so its commits keep their order; results come back in stream order.

The session may still be starting when the run begins. The client needs none, so the streams whose fetch
cannot depend on the table's history go first, while the JVM starts: a FULL_TABLE stream, `--full-sync`, and
a path table that does not exist yet (first run), when no interrupted staging waits to be resumed. Such a
stream is planned again from its table's history before it lands, and lands only if that plan fetches the
same range; the other streams are planned from the history before they are fetched, as always (their
histories read at once, on the landing threads, while the first stream is fetched). While a stream's pages
arrive, a landing thread prepares its table (creates it on a first run, reconciles it otherwise) and confirms
an early plan, so the landing after the fetch starts with its commit.

A run that refreshes the NPS gold layer (it syncs one of the streams the layer follows) also takes the gold
tables' locks, and refreshes them after its streams landed, before it gives the locks back: a concurrent run or
`forget` cannot refresh them beside it.
"""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

from pyspark.sql import SparkSession

from wootric_ingest import redaction
from wootric_ingest.api import WootricClient
from wootric_ingest.api.errors import WootricError
from wootric_ingest.config import SourceConfig, StreamConfig, SyncType
from wootric_ingest.lake.gold import FOLLOWS as GOLD_FOLLOWS
from wootric_ingest.lake.gold import GOLD, gold_table, refresh
from wootric_ingest.lake.lakehouse import Lakehouse
from wootric_ingest.lake.staging import StagingArea
from wootric_ingest.lake.state import SyncMode, TableState, read_state
from wootric_ingest.run.landing import Fetched, Landed, extract, land, prepare
from wootric_ingest.run.planning import Plan, RunOptions, plan_stream
from wootric_ingest.run.progress import Progress
from wootric_ingest.run.result import FAILED, OK, StreamResult
from wootric_ingest.run.resume import staging_for

log = logging.getLogger(__name__)

_MAX_ERROR_CHARS = 4000
GOLD_STREAM = "nps"  # the gold refresh's name in the run history and the summary


def selected_streams(config: SourceConfig, names: tuple[str, ...]) -> list[StreamConfig]:
    """The configured streams a run or plan covers: those named, or all."""
    return [s for s in config.streams if not names or s.name in names]


def plans(lakehouse: Lakehouse, options: RunOptions, now: datetime) -> list[Plan]:
    """Each selected stream's plan, from its table's state."""
    config = lakehouse.config
    return [
        plan_stream(config, s, read_state(lakehouse.table(s)), options, now)
        for s in selected_streams(config, options.streams)
    ]


@dataclass(frozen=True)
class _Stream:
    """One stream on its way through a run: when it started and what it planned."""

    config: StreamConfig
    started_at: datetime
    plan: Plan | None = None


def run(
    config: SourceConfig,
    spark: SparkSession | Future[SparkSession],
    options: RunOptions = RunOptions(),
    *,
    client: WootricClient | None = None,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> list[StreamResult]:
    """Sync every selected stream, recording each in the run history; a failed stream gets status `failed`
    (and its history row) and the others still run. `spark` may still be starting (`lake.spark.start_spark`)."""
    now = now or datetime.now(timezone.utc)
    run_id = options.run_id or f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    lakehouse = Lakehouse(config, spark)
    selected = selected_streams(config, options.streams)
    progress = progress or Progress()
    folders = sorted({s.folder for s in selected if s.folder})
    if lakehouse.layout.managed and folders:
        log.info(
            "managed tables: folder %s is not part of a three-level table name; it only names the tables' lock files",
            ", ".join(folders),
        )
    own_client = client is None
    client = client or WootricClient(config.api)
    try:
        client.authenticate()  # bad credentials fail here, before any table is touched
        refreshes_gold = config.nps is not None and any(s.name in GOLD_FOLLOWS for s in selected)
        locks = lakehouse.locks(selected, run_id, gold=tuple(spec.name for spec in GOLD) if refreshes_gold else ())
        with (
            locks,
            ThreadPoolExecutor(max_workers=len(selected) + 1, thread_name_prefix="wootric-landing") as lander,
        ):
            early = {s.name: plan for s in selected if (plan := _plan_before_spark(lakehouse, s, options, now))}
            prepared = lander.submit(lambda: lakehouse.runs.prepare())  # `runs` waits for Spark: on a thread
            planned = {  # the others' histories read at once, while the early streams are fetched
                s.name: lander.submit(_planned, lakehouse, run_id, s, options, now)
                for s in selected
                if s.name not in early
            }
            landed: dict[str, Future[StreamResult]] = {}
            for stream_config in sorted(selected, key=lambda s: s.name not in early):
                locks.check()
                stream = _Stream(stream_config, datetime.now(timezone.utc), early.get(stream_config.name))
                try:
                    if stream.plan is None:
                        plan, staging = planned[stream_config.name].result()
                        stream = _Stream(stream_config, stream.started_at, plan)
                    else:
                        plan, staging = stream.plan, lakehouse.staging(run_id, stream_config.name)
                    log.info(
                        "%s: %s sync (%s) into %s",
                        plan.stream.name,
                        plan.mode.value,
                        plan.reason,
                        lakehouse.layout.where(plan.config),
                    )
                    confirm = (options, now) if stream_config.name in early else None
                    ready = lander.submit(_ready, lakehouse, plan, confirm)  # while the pages arrive
                    fetched = extract(client, staging, plan, progress)
                except Exception as e:  # one stream's failure is recorded and reported; the other streams still run
                    failed = _failed(lakehouse, stream, e)
                    landed[stream_config.name] = lander.submit(_record, lakehouse, run_id, options, prepared, failed)
                    continue
                landed[stream_config.name] = lander.submit(
                    _land, lakehouse, run_id, options, prepared, stream, staging, fetched, ready
                )
            results = [landed[s.name].result() for s in selected]
            if refreshes_gold:  # still holding the gold tables' locks: no concurrent run or forget refreshes them
                locks.check()
                results.append(_record(lakehouse, run_id, options, prepared, _refresh_gold(lakehouse, run_id)))
        return results
    finally:
        if own_client:
            client.close()


def _planned(
    lakehouse: Lakehouse, run_id: str, stream_config: StreamConfig, options: RunOptions, now: datetime
) -> tuple[Plan, StagingArea]:
    """On a landing thread: the stream's plan from its table's history, and the staging its pages go to (an
    interrupted run's, resumed, when one waits)."""
    return _plan(lakehouse, stream_config, options, now), staging_for(lakehouse, run_id, lakehouse.table(stream_config))


def _plan(lakehouse: Lakehouse, stream_config: StreamConfig, options: RunOptions, now: datetime) -> Plan:
    """The stream's plan from its table's state (and history); warns of a path table a managed one replaces."""
    table = lakehouse.table(stream_config)
    state = read_state(table)
    left = None if state.exists else lakehouse.path_table_left_behind(stream_config)
    if left:
        log.warning(
            "%s: a path table of this stream is at %s; the managed table %s is new and this run fills it with a "
            "full sync",
            stream_config.name,
            left,
            table,
        )
    return plan_stream(lakehouse.config, stream_config, state, options, now)


def _plan_before_spark(
    lakehouse: Lakehouse, stream_config: StreamConfig, options: RunOptions, now: datetime
) -> Plan | None:
    """The plan of a stream whose fetch cannot depend on its table's history, made while Spark starts: a full
    sync from the start date (FULL_TABLE, `--full-sync`, or a path table not created yet), with no interrupted
    staging of the stream to resume. None when Spark has started or the history decides."""
    if lakehouse.spark_started or lakehouse.files_need_spark or lakehouse.staged_runs(stream_config.name):
        return None
    if stream_config.sync_type is SyncType.FULL_TABLE or options.full_sync or lakehouse.certainly_absent(stream_config):
        return plan_stream(lakehouse.config, stream_config, TableState(exists=False), options, now)
    return None


def _land(
    lakehouse: Lakehouse,
    run_id: str,
    options: RunOptions,
    prepared: Future[None],
    stream: _Stream,
    staging: StagingArea,
    fetched: Fetched,
    ready: Future[Plan],
) -> StreamResult:
    """On a landing thread: land one fetched stream once its table is `ready` (see `_ready`), remove its staging,
    then record it in the run history."""
    try:
        plan = ready.result()
        stream = _Stream(stream.config, stream.started_at, plan)
        landed = land(lakehouse, staging, plan, run_id)
        staging.cleanup()
        result = _result(lakehouse, stream, OK, fetched=fetched, landed=landed)
    except Exception as e:  # recorded like a failed fetch; the other streams still land
        result = _failed(lakehouse, stream, e, fetched)
    return _record(lakehouse, run_id, options, prepared, result)


def _ready(lakehouse: Lakehouse, plan: Plan, confirm: tuple[RunOptions, datetime] | None) -> Plan:
    """On a landing thread, while the stream's pages arrive: its table prepared to land in, and the plan to land
    by. With `confirm`, the stream is fetched by a plan made before Spark started: it is planned from its table's
    history first, and lands only if that plan reads the range fetched."""
    plan = _confirmed(lakehouse, plan, *confirm) if confirm else plan
    prepare(lakehouse, plan)
    return plan


def _confirmed(lakehouse: Lakehouse, early: Plan, options: RunOptions, now: datetime) -> Plan:
    """The plan the table's history makes, which must fetch what the early plan fetched (it records the history's
    last full sync); if it does not, nothing lands and the staging waits for the next run, which resumes it."""
    plan = _plan(lakehouse, early.config, options, now)
    if (plan.mode, plan.since, plan.until) != (early.mode, early.since, early.until):
        raise WootricError(
            f"{plan.stream.name}: fetched for a {early.mode.value} sync ({early.reason}) while Spark started, but "
            f"the table's history now calls for {plan.mode.value} ({plan.reason}); nothing landed, and the next "
            "run resumes the staged records"
        )
    return plan


def _refresh_gold(lakehouse: Lakehouse, run_id: str) -> StreamResult:
    """The NPS gold layer brought up to the commits just made, as the run history's `nps` row; a failure is
    recorded like a stream's (the streams' own commits stand)."""
    started = datetime.now(timezone.utc)
    table = str(gold_table(lakehouse, GOLD[0].name))
    try:
        done = refresh(lakehouse, run_id)
    except Exception as e:  # recorded and reported like a failed stream
        log.error("nps: gold refresh failed", exc_info=e)
        return StreamResult(GOLD_STREAM, FAILED, table, started, datetime.now(timezone.utc), error=_error_text(e))
    if done.left_out:
        log.warning("nps: responses left out of the NPS counts (kept in the responses table): %s", done.left_out)
    landed = Landed(
        mode=SyncMode(done.mode or SyncMode.INCREMENTAL.value),
        reason=done.reason,
        rows_inserted=done.rows_written,
        rows_updated=0,
        rows_deleted=0,
        rows_marked_deleted=0,
        table_version=done.table_version,
        table_rows=done.table_rows,
        bookmark=None,
        seconds=done.seconds,
        left_out=done.left_out,
    )
    return StreamResult(GOLD_STREAM, OK, table, started, datetime.now(timezone.utc), landed=landed)


def _record(
    lakehouse: Lakehouse, run_id: str, options: RunOptions, prepared: Future[None], result: StreamResult
) -> StreamResult:
    """Record a stream's row in the run history, once the runs table is `prepared`: a failure to prepare it is
    raised here, where the run records, rather than dropped with its Future."""
    prepared.result()
    lakehouse.runs.record(result.run_row(run_id), replace=options.run_id is not None)
    return result


def _result(lakehouse: Lakehouse, stream: _Stream, status: str, **steps) -> StreamResult:
    return StreamResult(
        stream.config.name,
        status,
        str(lakehouse.table(stream.config)),
        stream.started_at,
        datetime.now(timezone.utc),
        stream.plan,
        **steps,
    )


def _failed(lakehouse: Lakehouse, stream: _Stream, error: Exception, fetched: Fetched | None = None) -> StreamResult:
    """A failed stream's result: what it had fetched (if anything) and why it failed."""
    log.error("%s: sync failed", stream.config.name, exc_info=error)
    return _result(lakehouse, stream, FAILED, fetched=fetched, error=_error_text(error))


def _error_text(error: Exception) -> str:
    """An exception as history and summaries show it: type and message, secrets redacted, bounded in size."""
    return redaction.redact(f"{type(error).__name__}: {error}".strip())[:_MAX_ERROR_CHARS]
