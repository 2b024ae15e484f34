"""`run --dry-run`, `run` and `plan` through `main()` against the sandbox, in the real local Spark session.

One lakehouse goes through a new user's sequence: the dry run fetches and writes nothing, the run lands
every stream (checked row by row against the sandbox) and prints its summary, and the plan afterwards
is incremental from the bookmarks the run left. The password must never appear: not in stdout, stderr
or log records, not in a table's rows, commit metadata or properties, not in the run history.
"""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from sandbox import Sandbox, SandboxOptions
from tests.conftest import config_dict
from wootric_ingest.cli import main

STREAMS = ("end_users", "responses", "declines")


def test_dry_run_then_run_then_plan(tmp_path: Path, spark, capsys, caplog, monkeypatch):
    root = tmp_path / "lakehouse"
    with Sandbox(SandboxOptions(end_users=90, responses=180, declines=25, seed=21)) as sandbox:
        password = sandbox.credentials.password
        monkeypatch.setenv("WOOTRIC_PASSWORD", password)
        data = config_dict(catalog={"root": str(root), "table_prefix": "wootric_"})
        data["source"]["api"] = {
            "requests_per_minute": 6000,
            "base_url": sandbox.base_url,
            "auth": {"username": sandbox.credentials.username, "password": "${WOOTRIC_PASSWORD}"},
        }
        config = tmp_path / "source.yaml"
        config.write_text(yaml.safe_dump(data, sort_keys=False))
        expected = {s: sorted(str(i) for i in sandbox.dataset.ids(s)) for s in STREAMS}

        sandbox.stats.reset()
        assert main(["run", "--config", str(config), "--dry-run"]) == 0
        dry = capsys.readouterr().out.splitlines()
        assert dry[-1] == "dry run: nothing fetched, nothing written"
        assert [line for line in dry if line.startswith(STREAMS)] == [
            "end_users: FULL sync, first run: the table does not exist yet",
            "responses: FULL sync, first run: the table does not exist yet",
            "declines: FULL sync, sync type is FULL_TABLE",
        ]
        assert (
            f"  writes  {root}/raw/wootric/wootric_responses (full_sync_write rewrite: one overwrite commit, the table "
            "becomes what the API returns)" in dry
        )
        assert any(
            line.startswith(
                "  table   delta.logRetentionDuration=interval 30 days, "
                "delta.deletedFileRetentionDuration=interval 30 days"
            )
            for line in dry
        )
        assert sandbox.stats.snapshot()["requests"] == 0 and not root.exists()

        with caplog.at_level(logging.DEBUG, logger="wootric_ingest"):
            assert main(["run", "--config", str(config), "--log-level", "DEBUG"]) == 0
        ran = capsys.readouterr()

        assert main(["plan", "--config", str(config), "--streams", "end_users,declines"]) == 0
        planned = capsys.readouterr().out.splitlines()
        assert main(["plan", "--config", str(config), "--streams", "end_users", "--full-sync"]) == 0
        forced = capsys.readouterr().out.splitlines()

    summary = ran.out.splitlines()
    assert summary[0].split() == [
        "stream",
        "sync",
        "pages",
        "fetched",
        "inserted",
        "updated",
        "deleted",
        "marked",
        "deleted",
        "table",
        "rows",
        "requests",
        "seconds",
        "records/s",
        "status",
    ]
    for stream in STREAMS:
        row = next(line.split() for line in summary if line.startswith(stream + " "))
        n = str(len(expected[stream]))
        assert (row[1], row[3], row[4], row[8], row[-1]) == ("FULL", n, n, n, "ok")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for stream in STREAMS:
        assert f"{stream}: fetched {len(expected[stream])} records in " in logged

    tables = {s: spark.read.format("delta").load(f"{root}/raw/wootric/wootric_{s}") for s in STREAMS}
    for stream, table in tables.items():
        assert sorted(r["id"] for r in table.select("id").collect()) == expected[stream]

    bookmark_lines = [line for line in planned if line.startswith(("end_users", "declines"))]
    assert bookmark_lines[0].startswith("end_users: INCREMENTAL sync, bookmark ")
    assert bookmark_lines[1] == "declines: FULL sync, sync type is FULL_TABLE"
    assert not any(line.startswith("responses") for line in planned)
    assert [line for line in forced if line.startswith(STREAMS)] == ["end_users: FULL sync, --full-sync was given"]

    # The password is nowhere: output, logs, rows, commits, properties, run history.
    assert password not in ran.out + ran.err + logged + "\n".join(planned)
    for stream, table in tables.items():
        assert table.filter(table["_raw"].contains(password)).count() == 0
        history = spark.sql(f"DESCRIBE HISTORY delta.`{root}/raw/wootric/wootric_{stream}`")
        assert password not in str(history.select("userMetadata", "operationParameters").collect())
        details = spark.sql(f"DESCRIBE DETAIL delta.`{root}/raw/wootric/wootric_{stream}`").collect()[0]
        assert password not in str(details["properties"])
    runs = spark.read.format("delta").load(str(root / "_wootric_ingest" / "runs"))
    assert sorted(r["stream"] for r in runs.collect()) == sorted(STREAMS)
    assert password not in str(runs.collect())


def test_a_run_whose_streams_fail_exits_1_naming_them(tmp_path: Path, spark, capsys, monkeypatch):
    """The token works but the API path is wrong (a region mix-up): every stream fails, each is reported."""
    with Sandbox(SandboxOptions(end_users=10, responses=10, declines=5, seed=2)) as sandbox:
        monkeypatch.setenv("WOOTRIC_PASSWORD", sandbox.credentials.password)
        data = config_dict(catalog={"root": str(tmp_path / "lakehouse")})
        data["source"]["api"] = {
            "requests_per_minute": 6000,
            "base_url": f"{sandbox.base_url}/wrong-region",
            "auth": {"username": sandbox.credentials.username, "password": "${WOOTRIC_PASSWORD}"},
        }
        config = tmp_path / "source.yaml"
        config.write_text(yaml.safe_dump(data, sort_keys=False))
        status = main(["run", "--config", str(config), "--log-level", "ERROR"])
    captured = capsys.readouterr()
    assert status == 1
    assert captured.err.splitlines()[-1] == "wootric-ingest: run failed for end_users, responses, declines"
    failures = [line for line in captured.out.splitlines() if "; failed: " in line]
    assert [line.split(":")[0] for line in failures] == list(STREAMS)
    assert all("404" in line for line in failures)
