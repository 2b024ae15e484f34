"""The run history: one row per stream per run in `{root}/_wootric_ingest/runs`, failures included, read back
from the real table after a real run against the sandbox; a runs table that cannot be prepared fails the run."""

from __future__ import annotations

import threading
import time
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from pyspark.sql.types import StructType

from sandbox import Sandbox, SandboxOptions
from wootric_ingest import redaction
from wootric_ingest.lake.history import RUNS_SCHEMA, RunHistory, RunRow
from wootric_ingest.lake.lakehouse import Lakehouse
from wootric_ingest.lake.state import SyncMode
from wootric_ingest.run.job import run
from wootric_ingest.run.landing import Landed
from wootric_ingest.run.planning import RunOptions
from wootric_ingest.run.result import FAILED, OK, StreamResult

from conftest import runs_path, table_path
from test_sink import assert_delta_rs_reads_the_same_rows


@pytest.fixture
def sandbox():
    with Sandbox(SandboxOptions(end_users=30, responses=60, declines=12, seed=3)) as sb:
        yield sb


def runs(spark, config, run_id: str) -> dict[str, dict]:
    rows = spark.read.format("delta").load(runs_path(config)).where(f"run_id = '{run_id}'")
    return {r["stream"]: r.asDict() for r in rows.collect()}


def test_each_stream_gets_its_row_a_failed_one_says_why_and_its_retry_replaces_it(spark, sandbox, make_config):
    config = make_config(sandbox)
    blocked = Path(table_path(config, "declines"))
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where the declines table should be")

    results = {r.stream_name: r for r in run(config, spark, RunOptions(run_id="night-1"))}

    assert {s: r.status for s, r in results.items()} == {"end_users": "ok", "responses": "ok", "declines": "failed"}
    history = runs(spark, config, "night-1")
    for stream in ("end_users", "responses"):
        row, n = history[stream], len(sandbox.dataset.records(stream))
        assert (row["status"], row["sync_mode"], row["sync_reason"], row["error"]) == (
            "ok",
            "FULL",
            "first run: the table does not exist yet",
            None,
        )
        assert (
            row["records_fetched"],
            row["rows_inserted"],
            row["rows_updated"],
            row["rows_deleted"],
            row["table_rows"],
        ) == (n, n, 0, 0, n)
        assert row["api_requests"] == results[stream].api_requests > 0
        assert row["started_at"] <= row["finished_at"] and row["type_mismatches"] == {}
        assert row["table_path"] == table_path(config, stream)
    failed = history["declines"]
    assert (failed["status"], failed["sync_mode"], failed["rows_inserted"]) == ("failed", "FULL", 0)
    assert "declines" in failed["error"] and failed["error"] == results["declines"].error
    for stream in ("end_users", "responses"):
        assert_delta_rs_reads_the_same_rows(spark, table_path(config, stream))
    assert_delta_rs_reads_the_same_rows(spark, runs_path(config))

    blocked.unlink()
    run(config, spark, RunOptions(streams=("declines",), run_id="night-1"))
    history = runs(spark, config, "night-1")
    assert sorted(history) == ["declines", "end_users", "responses"]
    n = len(sandbox.dataset.records("declines"))
    assert (history["declines"]["status"], history["declines"]["rows_inserted"], history["declines"]["error"]) == (
        "ok",
        n,
        None,
    )


def test_the_row_has_a_field_for_every_column_of_the_runs_table():
    assert tuple(f.name for f in fields(RunRow)) == tuple(RUNS_SCHEMA.fieldNames())


def test_errors_are_recorded_without_secrets(spark, make_config):
    config = make_config()
    redaction.register("hunter2-very-secret")
    now = datetime.now(timezone.utc)
    failed = StreamResult(
        "responses",
        FAILED,
        "t",
        now,
        now,
        error="401 for https://user:hunter2-very-secret@api.example.com/v1/responses",
    )
    Lakehouse(config, spark).runs.record(failed.run_row("r"), replace=False)
    assert runs(spark, config, "r")["responses"]["error"] == "401 for https://user:***@api.example.com/v1/responses"


def test_a_runs_table_from_an_older_version_gains_the_new_columns(spark, make_config):
    config = make_config()
    path = runs_path(config)
    newer = ("type_mismatches", "table_rows", "rows_marked_deleted")
    older = StructType([f for f in RUNS_SCHEMA.fields if f.name not in newer])
    DeltaTable.createIfNotExists(spark).location(path).addColumns(older).execute()
    spark.createDataFrame([("old-run", "end_users", "ok")], "run_id string, stream string, status string").write.format(
        "delta"
    ).mode("append").save(path)

    now = datetime.now(timezone.utc)
    landed = Landed(
        SyncMode.INCREMENTAL,
        "bookmark",
        0,
        0,
        0,
        rows_marked_deleted=2,
        table_version=3,
        table_rows=12,
        bookmark=None,
        seconds=1.0,
        type_mismatches={"email": 1},
    )
    Lakehouse(config, spark).runs.record(
        StreamResult("end_users", OK, "t", now, now, landed=landed).run_row("new-run"), replace=False
    )

    table = spark.read.format("delta").load(path)
    assert table.columns[-3:] == ["table_rows", "type_mismatches", "rows_marked_deleted"]
    rows = {
        r["run_id"]: (r["status"], r["table_rows"], r["type_mismatches"], r["rows_marked_deleted"])
        for r in table.collect()
    }
    assert rows == {"old-run": ("ok", None, None, None), "new-run": ("ok", 12, {"email": 1}, 2)}
    comments = {f.name: f.metadata.get("comment") for f in table.schema.fields}
    assert comments["table_rows"] == "Rows in the table after the commit"


def test_a_run_with_a_new_id_appends_its_rows_so_streams_finishing_together_never_conflict(spark, sandbox, make_config):
    config = make_config(sandbox)
    run(config, spark)

    path = runs_path(config)
    rows = spark.read.format("delta").load(path).select("run_id", "stream", "status").collect()
    assert len({r["run_id"] for r in rows}) == 1
    assert sorted((r["stream"], r["status"]) for r in rows) == [
        ("declines", "ok"),
        ("end_users", "ok"),
        ("responses", "ok"),
    ]
    commits = DeltaTable.forPath(spark, path).history().orderBy("version").collect()
    assert {(c["operation"], c["operationParameters"].get("mode")) for c in commits[1:]} == {("WRITE", "Append")}
    assert 1 <= len(commits[1:]) <= 3  # rows recorded while a commit is on its way go in the next one
    assert sum(int(c["operationMetrics"]["numOutputRows"]) for c in commits[1:]) == 3


def test_rows_recorded_while_a_commit_is_on_its_way_go_together_in_the_next_one(spark, make_config, monkeypatch):
    config = make_config()
    history = Lakehouse(config, spark).runs
    history.prepare()
    first_commit_started, release_first = threading.Event(), threading.Event()
    append = history.table.append

    def slow_first_append(rows):
        if not first_commit_started.is_set():
            first_commit_started.set()
            assert release_first.wait(60)
        append(rows)

    monkeypatch.setattr(history.table, "append", slow_first_append)
    now = datetime.now(timezone.utc)

    def record(stream: str) -> threading.Thread:
        row = StreamResult(stream, OK, "t", now, now).run_row("grouped")
        thread = threading.Thread(target=history.record, args=(row,), kwargs={"replace": False})
        thread.start()
        return thread

    threads = [record("end_users")]
    assert first_commit_started.wait(60)
    threads += [record("responses"), record("declines")]
    time.sleep(0.5)  # both queued behind the first commit
    release_first.set()
    for thread in threads:
        thread.join(60)

    assert set(runs(spark, config, "grouped")) == {"end_users", "responses", "declines"}
    commits = DeltaTable.forPath(spark, runs_path(config)).history().orderBy("version").collect()
    assert [int(c["operationMetrics"]["numOutputRows"]) for c in commits if c["operation"] == "WRITE"] == [1, 2]


def test_a_commit_the_runs_table_refuses_fails_the_record(spark, make_config, monkeypatch):
    config = make_config()
    history = Lakehouse(config, spark).runs
    history.prepare()

    def refused(rows):
        raise OSError("the runs table's storage refused the write")

    monkeypatch.setattr(history.table, "append", refused)
    now = datetime.now(timezone.utc)
    with pytest.raises(OSError, match="refused the write"):
        history.record(StreamResult("responses", OK, "t", now, now).run_row("refused"), replace=False)


def test_a_runs_table_that_cannot_be_prepared_fails_the_run_where_it_records(spark, sandbox, make_config, monkeypatch):
    def unprepared(self) -> None:
        raise RuntimeError("the runs table cannot be prepared")

    monkeypatch.setattr(RunHistory, "prepare", unprepared)  # recording would still create it: only this fails
    with pytest.raises(RuntimeError, match="the runs table cannot be prepared"):
        run(make_config(sandbox), spark, RunOptions(streams=("declines",)))
