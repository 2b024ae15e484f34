"""A run fetches while Spark starts: the streams whose fetch needs no table history go first, and each of them is
planned again from its table's history before it lands.

The session is handed to the run as a future the test completes itself, so what the run did before Spark was
there is read off the sandbox's request counts at that moment."""

from __future__ import annotations

import subprocess
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import pytest
from test_delta_incremental import landed, source

from sandbox import Sandbox, SandboxOptions
from wootric_ingest.lake.spark import class_archive
from wootric_ingest.run.job import run
from wootric_ingest.run.planning import RunOptions

from conftest import lakehouse
from test_sink import land_records

STREAMS = ("end_users", "responses", "declines")


@pytest.fixture
def sandbox():
    with Sandbox(SandboxOptions(end_users=40, responses=120, declines=20, seed=9)) as sb:
        yield sb


def run_while_spark_starts(config, spark, sandbox, options=RunOptions(), *, before=lambda: None):
    """The run with a session that is not there yet: waits until the run has nothing left to do without it,
    notes the list requests per stream served by then, runs `before`, then hands the session over."""
    starting: Future = Future()
    results: list = []
    runner = threading.Thread(target=lambda: results.extend(run(config, starting, options)))
    runner.start()
    served = _settled_requests(sandbox)
    before()
    starting.set_result(spark)
    runner.join(timeout=300)
    assert not runner.is_alive()
    return results, served


def _settled_requests(sandbox) -> dict[str, int]:
    """List requests per stream once they have stopped growing for a second (the run then waits for Spark)."""
    last, still_since = None, time.monotonic()
    while time.monotonic() - still_since < 1.0:
        time.sleep(0.1)
        now = {s: sandbox.stats.snapshot()["by_endpoint"].get(s, 0) for s in STREAMS}
        if now != last:
            last, still_since = now, time.monotonic()
    assert last is not None
    return last


def test_a_first_run_fetches_every_stream_before_spark_is_there_and_lands_them_all(spark, sandbox, make_config):
    config = make_config(sandbox)
    results, served = run_while_spark_starts(config, spark, sandbox)
    assert all(served[s] >= 1 for s in STREAMS), served
    assert [(r.stream_name, r.status, r.mode) for r in results] == [(s, "ok", "FULL") for s in STREAMS]
    assert [r.reason for r in results] == [
        "first run: the table does not exist yet",
        "first run: the table does not exist yet",
        "sync type is FULL_TABLE",
    ]
    for stream in STREAMS:
        assert landed(spark, config, stream) == source(sandbox, stream)


def test_a_later_run_fetches_only_its_full_table_stream_before_spark_is_there(spark, sandbox, make_config):
    config = make_config(sandbox)
    run(config, spark)
    sandbox.dataset.add("responses", n=7)
    sandbox.dataset.delete("declines", n=2)
    before = {s: sandbox.stats.snapshot()["by_endpoint"].get(s, 0) for s in STREAMS}
    results, served = run_while_spark_starts(config, spark, sandbox)
    assert served["declines"] > before["declines"]
    assert (served["end_users"], served["responses"]) == (before["end_users"], before["responses"])
    assert [(r.stream_name, r.status, r.mode) for r in results] == [
        ("end_users", "ok", "INCREMENTAL"),
        ("responses", "ok", "INCREMENTAL"),
        ("declines", "ok", "FULL"),
    ]
    for stream in STREAMS:
        assert landed(spark, config, stream) == source(sandbox, stream)


def test_a_stream_whose_table_history_plans_otherwise_by_landing_time_lands_nothing_and_is_resumed(
    spark, sandbox, make_config
):
    config = make_config(sandbox)
    table = lakehouse(spark, config).table(config.stream("responses"))
    responses = RunOptions(streams=("responses",))
    first = sandbox.dataset.records("responses")[:10]

    def another_run_lands_first() -> None:  # its commit gives the table a bookmark: an incremental sync is next
        land_records(spark, config, "responses", first, now=datetime.now(timezone.utc))

    results, _ = run_while_spark_starts(config, spark, sandbox, responses, before=another_run_lands_first)
    [result] = results
    assert result.status == "failed"
    assert "fetched for a FULL sync (first run: the table does not exist yet) while Spark started" in result.error
    assert "the table's history now calls for INCREMENTAL" in result.error
    assert table.count() == len(first)
    assert lakehouse(spark, config).staged_runs("responses"), "the staged records wait for the next run"

    [again] = run(config, spark, responses)
    assert again.status == "ok" and again.records_fetched == 0  # the staging covered every range
    assert landed(spark, config, "responses") == source(sandbox, "responses")


def test_a_local_session_maps_the_class_archive_setup_recorded(spark):
    """The local JVM runs with the archive `make setup` recorded, and the archive fits that JVM's class path: the
    same JVM with sharing required (`-Xshare:on`) starts with it, where a stale archive would stop it."""
    jvm = spark.sparkContext._jvm
    arguments = list(jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments())
    assert {"-XX:TieredStopAtLevel=1", "-XX:ReservedCodeCacheSize=240m"} <= set(arguments)
    assert f"-XX:SharedArchiveFile={class_archive()}" in arguments
    java = Path(jvm.System.getProperty("java.home")) / "bin" / "java"
    class_path = jvm.System.getProperty("java.class.path")
    for path, usable in ((class_path, True), (str(Path(class_path.split(":")[0]).parent), False)):
        check = subprocess.run(
            [str(java), "-Xshare:on", f"-XX:SharedArchiveFile={class_archive()}", "-cp", path, "-version"],
            capture_output=True,
            text=True,
        )
        assert (check.returncode == 0) is usable, check.stdout + check.stderr


def test_objects_that_wait_for_spark_are_built_once_and_hold_up_nothing_else(spark, make_config):
    """The run history and the rejected records are one object each however many landing threads ask at once; while
    they wait for the session, the files beside the tables (staging, locks) still answer."""
    from wootric_ingest.lake.lakehouse import Lakehouse

    starting: Future = Future()
    house = Lakehouse(make_config(), starting)
    pool = ThreadPoolExecutor(max_workers=9)
    try:
        runs = [pool.submit(lambda: house.runs) for _ in range(4)]
        rejected = [pool.submit(lambda: house.rejected) for _ in range(4)]
        time.sleep(0.5)  # the eight are waiting for the session
        files = pool.submit(lambda: house.staging("r1", "responses").completed)
        assert files.result(timeout=10) == []
        assert not any(f.done() for f in runs + rejected)
    finally:
        starting.set_result(spark)
        pool.shutdown()
    assert len({id(f.result()) for f in runs}) == len({id(f.result()) for f in rejected}) == 1
