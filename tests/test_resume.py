"""Crash and resume, with real kills: the job runs in a subprocess (its own Spark) and gets SIGKILL when its
progress shows a chosen point; then the next run, in this process, must find what the killed one left and end
with exactly the tables an uninterrupted run makes, fetching again none of what the killed run had staged."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from sandbox import Sandbox, SandboxOptions
from wootric_ingest.api.timestamps import unix_seconds
from wootric_ingest.config import parse_config
from wootric_ingest.lake.staging import MANIFEST
from wootric_ingest.run.job import run
from wootric_ingest.run.resume import RESUMED

from conftest import config_dict, table_path

STAGING_DIR = "_wootric_ingest/staging"


def write_config(tmp_path: Path, sandbox: Sandbox, streams: dict) -> tuple[Path, object]:
    data = config_dict(catalog={"root": str(tmp_path / "lakehouse"), "table_prefix": "wootric_"})
    data["source"]["api"] = {
        "requests_per_minute": 6000,
        "base_url": sandbox.base_url,
        "max_concurrency": 2,
        "auth": {"username": sandbox.credentials.username, "password": "${RESUME_PASSWORD}"},
    }
    data["streams"] = streams
    path = tmp_path / "source.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, parse_config(data, environ={"RESUME_PASSWORD": sandbox.credentials.password})


def run_and_kill(tmp_path: Path, config_path: Path, sandbox: Sandbox, killed_when) -> None:
    """`wootric-ingest run` in its own process group, SIGKILLed (JVM included) once `killed_when()` is true."""
    env = {
        **os.environ,
        "RESUME_PASSWORD": sandbox.credentials.password,
        "WOOTRIC_SPARK_SCRATCH": str(tmp_path / "killed-spark"),
    }
    with open(tmp_path / "killed-run.log", "w") as log:
        job = subprocess.Popen(
            [sys.executable, "-m", "wootric_ingest.cli", "run", "--config", str(config_path)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 600
    try:
        while not killed_when():
            assert job.poll() is None, (
                f"the run ended before the kill point: {(tmp_path / 'killed-run.log').read_text()}"
            )
            assert time.monotonic() < deadline, "the kill point never came"
            time.sleep(0.01)
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    assert job.returncode == -signal.SIGKILL


def staged(root: Path, stream: str, name: str) -> list[Path]:
    return sorted((root / STAGING_DIR).glob(f"*/{stream}/{name}"))


def data_commits(table: Path) -> list[dict]:
    """The commits that wrote rows (not the table's creation), oldest first."""
    commits = []
    for entry in sorted((table / "_delta_log").glob("*.json")):
        for line in entry.read_text().splitlines():
            info = json.loads(line).get("commitInfo")
            if info and info.get("operation") in ("WRITE", "MERGE", "CREATE OR REPLACE TABLE AS SELECT"):
                commits.append(info)
    return commits


def assert_table_is_the_truth(spark, config, stream: str, truth: list[dict]) -> None:
    rows = spark.read.format("delta").load(table_path(config, stream)).collect()
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), f"{stream}: a record landed twice"
    by_id = {r["id"]: json.loads(r["_raw"]) for r in rows}
    assert set(by_id) == {str(r["id"]) for r in truth}, f"{stream}: records lost or extra"
    for record in truth:
        assert by_id[str(record["id"])] == record, f"{stream} {record['id']}: not its latest content"


def assert_the_output_is_the_jobs_own(output: str) -> None:
    """A run's terminal output at the default log level: our lines, no Ivy report, no Spark start-up chatter."""
    lines = output.splitlines()
    assert re.fullmatch(r"\S+ \S+ INFO wootric_ingest: wootric-ingest \S+ run \(package at .*\)", lines[0]), lines[:5]
    assert all(re.match(r"\S+ \S+ (INFO|WARNING|ERROR) wootric_ingest[.:]", line) for line in lines), lines


def served_records(sandbox: Sandbox) -> int:
    return sandbox.stats.snapshot()["records_served"]


def test_a_run_killed_mid_extraction_is_resumed_without_fetching_its_staged_windows_again(spark, tmp_path, caplog):
    with Sandbox(SandboxOptions(end_users=60, responses=12_000, declines=0, seed=31, latency=0.02)) as sandbox:
        config_path, config = write_config(
            tmp_path, sandbox, {"responses": {"layer": "raw", "folder": "wootric", "table": "responses"}}
        )
        root = Path(config.catalog.root)
        # The first batch (5,000 of 12,000 records) is staged, with the ranges it completes in the manifest.
        run_and_kill(tmp_path, config_path, sandbox, lambda: staged(root, "responses", MANIFEST))
        assert_the_output_is_the_jobs_own((tmp_path / "killed-run.log").read_text())
        table = Path(table_path(config, "responses"))
        assert not data_commits(table), "the killed run committed"
        (manifest,) = staged(root, "responses", MANIFEST)
        done = json.loads(manifest.read_text())["completed"]
        truth = sandbox.dataset.records("responses")
        staged_records = sum(1 for r in truth if any(lo <= unix_seconds(r["created_at"]) <= hi for lo, hi in done))
        assert staged_records >= 4_000

        served_before = served_records(sandbox)
        with caplog.at_level(logging.INFO, logger="wootric_ingest"):
            (result,) = run(config, spark)
        served = served_records(sandbox) - served_before

        assert result.status == "ok", result.error
        assert RESUMED in caplog.text
        # Only the ranges outside the manifest are asked for; a window's boundary second is read twice.
        assert served <= (len(truth) - staged_records) * 1.05, "the resumed run fetched staged windows again"
        assert_table_is_the_truth(spark, config, "responses", truth)
    assert len(data_commits(table)) == 1
    assert not list((root / STAGING_DIR).glob("*/responses")), "the landed staging was not removed"


ALL_STREAMS = {
    "end_users": {"layer": "raw", "folder": "wootric", "table": "end_users"},
    "responses": {"layer": "raw", "folder": "wootric", "table": "responses"},
    "declines": {"layer": "raw", "folder": "wootric", "table": "declines", "sync_type": "FULL_TABLE"},
}


def test_a_run_killed_mid_landing_resumes_from_its_complete_staging_and_fetches_nothing_again(spark, tmp_path, caplog):
    with Sandbox(SandboxOptions(end_users=80, responses=300, declines=30, seed=32)) as sandbox:
        config_path, config = write_config(tmp_path, sandbox, {"responses": ALL_STREAMS["responses"]})
        root = Path(config.catalog.root)
        run_and_kill(tmp_path, config_path, sandbox, lambda: staged(root, "responses", MANIFEST))
        assert_the_output_is_the_jobs_own((tmp_path / "killed-run.log").read_text())
        table = Path(table_path(config, "responses"))
        assert not data_commits(table), "the killed run committed"

        served_before = served_records(sandbox)
        with caplog.at_level(logging.INFO, logger="wootric_ingest"):
            (result,) = run(config, spark)

        assert result.status == "ok", result.error
        assert RESUMED in caplog.text
        assert served_records(sandbox) == served_before, "the resumed run fetched staged records again"
        assert result.records_fetched == 0
        assert_table_is_the_truth(spark, config, "responses", sandbox.dataset.records("responses"))
    assert len(data_commits(table)) == 1


def test_a_run_killed_right_after_a_commit_keeps_it_and_the_next_run_completes_the_others(spark, tmp_path, caplog):
    with Sandbox(SandboxOptions(end_users=80, responses=300, declines=30, seed=33)) as sandbox:
        config_path, config = write_config(tmp_path, sandbox, ALL_STREAMS)
        root = Path(config.catalog.root)
        end_users = Path(table_path(config, "end_users"))
        run_and_kill(tmp_path, config_path, sandbox, lambda: data_commits(end_users))
        (killed_commit,) = data_commits(end_users)

        with caplog.at_level(logging.INFO, logger="wootric_ingest"):
            results = run(config, spark)

        assert [r.status for r in results] == ["ok", "ok", "ok"], [r.error for r in results]
        assert f"end_users: {RESUMED}" not in caplog.text, "a committed staging was landed again"
        for stream in ALL_STREAMS:
            assert_table_is_the_truth(spark, config, stream, sandbox.dataset.records(stream))
        first, *later = data_commits(end_users)
        assert first == killed_commit
        assert all(int(c["operationMetrics"].get("numTargetRowsInserted", 0)) == 0 for c in later)
    assert not list((root / STAGING_DIR).glob("*/*")), "staging was left behind"
