"""The run lock: one run per table at a time, a busy lock named with its holder, a dead holder's lock freed
(at once on its own host, after the expiry elsewhere), a taken-over holder told so, and exactly one winner
when many runs start at the same instant."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from wootric_ingest.lake.lakehouse import Lakehouse
from wootric_ingest.lake.locks import LockLost, RunInProgress, TableLocks
from wootric_ingest.lake.storage import HadoopStorage, LocalStorage

from conftest import runs_path, table_path

LOCKS_DIR = "_wootric_ingest/locks"

TABLES = ["raw.wootric.wootric_end_users", "raw.wootric.wootric_responses"]


def locks(root: Path, run_id: str, names=TABLES, **kw) -> TableLocks:
    return TableLocks(LocalStorage(), str(root / LOCKS_DIR), names, run_id, **kw)


def lock_files(root: Path) -> list[str]:
    folder = root / LOCKS_DIR
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_second_run_of_the_same_tables_stops_naming_the_run_in_progress(tmp_path):
    with locks(tmp_path, "20250101T060000Z-aaaa"):
        with pytest.raises(RunInProgress) as busy:
            locks(tmp_path, "20250101T061500Z-bbbb").acquire()
    message = str(busy.value)
    assert message.startswith("another run of this source is in progress since ")
    assert "run 20250101T060000Z-aaaa" in message and f"pid {os.getpid()}" in message
    assert "raw.wootric.wootric_end_users" in message
    assert lock_files(tmp_path) == [], "the locks were not given back"


def test_locks_are_all_or_nothing(tmp_path):
    with locks(tmp_path, "scheduled", names=["raw.wootric.wootric_responses"]):
        with pytest.raises(RunInProgress):
            locks(tmp_path, "manual").acquire()
        assert lock_files(tmp_path) == ["raw.wootric.wootric_responses.beat", "raw.wootric.wootric_responses.lock"]
        with locks(tmp_path, "other-table", names=["raw.wootric.wootric_declines"]):
            pass  # a run of other tables is not blocked


def test_a_released_lock_can_be_taken_again(tmp_path):
    with locks(tmp_path, "first"):
        assert len(lock_files(tmp_path)) == 4
    with locks(tmp_path, "second") as held:
        holder = json.loads((tmp_path / LOCKS_DIR / f"{TABLES[0]}.lock").read_text())
        assert holder["run_id"] == "second" and holder["token"] == held.me.token


HOLD_AND_SLEEP = textwrap.dedent("""
    import sys, time
    from wootric_ingest.lake.locks import TableLocks
    from wootric_ingest.lake.storage import LocalStorage
    TableLocks(LocalStorage(), sys.argv[1] + "/_wootric_ingest/locks", sys.argv[2:], "killed-run", heartbeat=30,
               expiry=3600).acquire()
    print("holding", flush=True)
    time.sleep(600)
""")


def test_a_lock_left_by_a_killed_run_on_this_host_is_taken_over_at_once(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_AND_SLEEP, str(tmp_path), *TABLES], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(RunInProgress, match="run killed-run"):
            locks(tmp_path, "next").acquire()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    with locks(tmp_path, "next", expiry=3600) as held:  # the expiry is an hour: the dead pid freed it
        assert json.loads((tmp_path / LOCKS_DIR / f"{TABLES[0]}.lock").read_text())["token"] == held.me.token


def test_a_lock_from_another_host_expires_when_its_heartbeats_stop(tmp_path):
    elsewhere = locks(tmp_path, "on-another-driver", host="driver-elsewhere", pid=1, heartbeat=0.05, expiry=60)
    elsewhere.acquire()
    time.sleep(0.2)  # a few heartbeats
    with pytest.raises(RunInProgress, match=r"last heartbeat \d+ s ago"):
        locks(tmp_path, "here", expiry=60).acquire()
    elsewhere._stop.set()  # the other driver dies: no more heartbeats, its files stay
    elsewhere._beater.join()
    later = time.time() + 61
    with locks(tmp_path, "here", expiry=60, clock=lambda: later) as held:
        assert held.me.run_id == "here"


def test_a_run_whose_lock_was_taken_over_is_told_before_it_writes_again(tmp_path):
    stalled = locks(tmp_path, "stalled", host="driver-elsewhere", pid=1, heartbeat=0.05, expiry=60)
    stalled.acquire()
    stalled.check()
    later = time.time() + 120  # seen from a clock two minutes on, its last heartbeat is stale
    with locks(tmp_path, "successor", expiry=60, clock=lambda: later):
        deadline = time.time() + 5
        while stalled._lost is None and time.time() < deadline:
            time.sleep(0.02)
        with pytest.raises(LockLost, match="taken over by run successor"):
            stalled.check()
    stalled.release()


def test_exactly_one_of_many_simultaneous_runs_gets_the_lock(tmp_path):
    start, winners, losers = threading.Barrier(12), [], []

    def contend(i: int) -> None:
        attempt = locks(tmp_path, f"run-{i}")
        start.wait()
        try:
            attempt.acquire()
            winners.append(attempt)
        except RunInProgress:
            losers.append(i)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1 and len(losers) == 11
    winners[0].release()


def test_a_lock_under_a_uri_root_goes_through_hadoop(spark, tmp_path):
    store = HadoopStorage(spark)
    path = f"file://{tmp_path}/{LOCKS_DIR}/t.lock"
    assert store.create_new(path, b"first")
    assert not store.create_new(path, b"second")
    assert store.read(path) == b"first"
    assert abs(store.modified(path) - time.time()) < 60
    store.write(path, b"beat")
    assert store.read(path) == b"beat"
    store.delete(path)
    assert store.read(path) is None and store.modified(path) is None


def test_a_run_locks_the_tables_of_its_streams(spark, make_config):
    config = make_config()
    with Lakehouse(config, spark).locks(config.streams, "r1"):
        names = lock_files(Path(config.catalog.root))
    assert names == [
        f"raw.wootric.wootric_{s}.{kind}" for s in ("declines", "end_users", "responses") for kind in ("beat", "lock")
    ]


def test_a_manual_run_during_a_scheduled_one_stops_and_the_scheduled_one_lands_everything_once(
    spark, tmp_path, make_config, capsys, monkeypatch
):
    import yaml

    from sandbox import Sandbox, SandboxOptions
    from tests.conftest import config_dict
    from wootric_ingest.cli import main
    from wootric_ingest.run.job import run

    with Sandbox(SandboxOptions(end_users=40, responses=90, declines=12, seed=52, latency=0.3)) as sb:
        config = make_config(sb)
        data = config_dict(catalog={"root": config.catalog.root, "table_prefix": "wootric_"})
        data["source"]["api"] = {
            "requests_per_minute": 6000,
            "base_url": sb.base_url,
            "auth": {"username": sb.credentials.username, "password": "${LOCK_TEST_PASSWORD}"},
        }
        monkeypatch.setenv("LOCK_TEST_PASSWORD", sb.credentials.password)
        (tmp_path / "source.yaml").write_text(yaml.safe_dump(data))
        locks = Path(config.catalog.root) / LOCKS_DIR

        scheduled: list = []
        thread = threading.Thread(target=lambda: scheduled.extend(run(config, spark)))
        thread.start()
        deadline = time.monotonic() + 300
        while not (locks.exists() and any(locks.glob("*.lock"))):
            assert thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.01)
        status = main(["run", "--config", str(tmp_path / "source.yaml")])
        manual = capsys.readouterr()
        thread.join()

        assert status == 1
        assert "run failed: another run of this source is in progress since " in manual.err
        assert [r.status for r in scheduled] == ["ok", "ok", "ok"]
        for stream in ("end_users", "responses", "declines"):
            rows = spark.read.format("delta").load(table_path(config, stream)).collect()
            assert sorted(r["id"] for r in rows) == sorted(str(i) for i in sb.dataset.ids(stream))
        history = spark.read.format("delta").load(runs_path(config)).collect()
        assert len(history) == 3 and len({r["run_id"] for r in history}) == 1, "the manual run recorded something"
    assert lock_files(Path(config.catalog.root)) == []


def test_a_run_that_refreshes_the_gold_layer_holds_the_gold_tables_locks_too(spark, make_config):
    from sandbox import Sandbox, SandboxOptions
    from wootric_ingest.lake.gold import GOLD
    from wootric_ingest.run.job import run
    from wootric_ingest.run.planning import RunOptions

    with Sandbox(SandboxOptions(end_users=3, responses=3, declines=0, seed=5)) as sb:
        config = make_config(sb, nps={"layer": "gold", "folder": "wootric"})
        root = Path(config.catalog.root)
        with locks(root, "a-forget", ["gold.wootric.wootric_nps_by_tag"]):  # say, a forget refreshing the gold layer
            with pytest.raises(RunInProgress, match="it holds the lock of gold.wootric.wootric_nps_by_tag"):
                run(config, spark, RunOptions(streams=("responses",)))
            assert not (root / "raw").exists()  # stopped before any table was touched
    with Lakehouse(config, spark).locks(config.streams, "r1", gold=tuple(spec.name for spec in GOLD)):
        names = {name.rsplit(".", 1)[0] for name in lock_files(root)}
    assert names == {f"raw.wootric.wootric_{s}" for s in ("declines", "end_users", "responses")} | {
        f"gold.wootric.wootric_{spec.name}" for spec in GOLD
    }
