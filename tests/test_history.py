"""The run history: one row per stream per run in `{root}/_wootric_ingest/runs`, failures included, read back
from the real table after a real run against the sandbox."""
from __future__ import annotations

from pathlib import Path

import pytest
from delta.tables import DeltaTable
from pyspark.sql.types import StructType

from test_sink import assert_delta_rs_reads_the_same_rows
from wootric_ingest import redaction
from wootric_ingest.history import RUNS_DIR, RUNS_SCHEMA, RunHistory
from wootric_ingest.job import run
from wootric_ingest.landing import StreamResult
from wootric_ingest.planning import RunOptions, table_properties
from wootric_ingest.sandbox import Sandbox, SandboxOptions


@pytest.fixture
def sandbox():
    with Sandbox(SandboxOptions(end_users=30, responses=60, declines=12, seed=3)) as sb:
        yield sb


def runs(spark, config, run_id: str) -> dict[str, dict]:
    rows = spark.read.format("delta").load(f"{config.catalog.root}/{RUNS_DIR}").where(f"run_id = '{run_id}'")
    return {r["stream"]: r.asDict() for r in rows.collect()}


def test_each_stream_gets_its_row_a_failed_one_says_why_and_its_retry_replaces_it(spark, sandbox, make_config):
    config = make_config(sandbox)
    blocked = Path(config.stream("declines").table_path(config.catalog))
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where the declines table should be")

    results = {r.stream: r for r in run(config, spark, RunOptions(run_id="night-1"))}

    assert {s: r.status for s, r in results.items()} == {"end_users": "ok", "responses": "ok", "declines": "failed"}
    history = runs(spark, config, "night-1")
    for stream in ("end_users", "responses"):
        row, n = history[stream], len(sandbox.dataset.records(stream))
        assert (row["status"], row["sync_mode"], row["sync_reason"], row["error"]) == (
            "ok", "FULL", "first run: the table does not exist yet", None)
        assert (row["records_fetched"], row["rows_inserted"], row["rows_updated"], row["rows_deleted"],
                row["table_rows"]) == (n, n, 0, 0, n)
        assert row["api_requests"] == results[stream].api_requests > 0
        assert row["started_at"] <= row["finished_at"] and row["type_mismatches"] == {}
        assert row["table_path"] == config.stream(stream).table_path(config.catalog)
    failed = history["declines"]
    assert (failed["status"], failed["sync_mode"], failed["rows_inserted"]) == ("failed", "FULL", 0)
    assert "declines" in failed["error"] and failed["error"] == results["declines"].error
    for stream in ("end_users", "responses"):
        assert_delta_rs_reads_the_same_rows(spark, config.stream(stream).table_path(config.catalog))
    assert_delta_rs_reads_the_same_rows(spark, f"{config.catalog.root}/{RUNS_DIR}")

    blocked.unlink()
    run(config, spark, RunOptions(streams=("declines",), run_id="night-1"))
    history = runs(spark, config, "night-1")
    assert sorted(history) == ["declines", "end_users", "responses"]
    n = len(sandbox.dataset.records("declines"))
    assert (history["declines"]["status"], history["declines"]["rows_inserted"], history["declines"]["error"]) == (
        "ok", n, None)


def test_errors_are_recorded_without_secrets(spark, make_config):
    config = make_config()
    redaction.register("hunter2-very-secret")
    failed = StreamResult("responses", "INCREMENTAL", "bookmark", status="failed",
                          error="401 for https://user:hunter2-very-secret@api.example.com/v1/responses")
    RunHistory(spark, config.catalog.root, table_properties(config)).record("r", failed)
    assert runs(spark, config, "r")["responses"]["error"] == "401 for https://user:***@api.example.com/v1/responses"


def test_a_runs_table_from_an_older_version_gains_the_new_columns(spark, make_config):
    config = make_config()
    path = f"{config.catalog.root}/{RUNS_DIR}"
    older = StructType([f for f in RUNS_SCHEMA.fields if f.name not in ("type_mismatches", "table_rows")])
    DeltaTable.createIfNotExists(spark).location(path).addColumns(older).execute()
    spark.createDataFrame([("old-run", "end_users", "ok")], "run_id string, stream string, status string") \
        .write.format("delta").mode("append").save(path)

    RunHistory(spark, config.catalog.root, table_properties(config)).record(
        "new-run", StreamResult("end_users", "INCREMENTAL", "bookmark", table_rows=12, type_mismatches={"email": 1}))

    table = spark.read.format("delta").load(path)
    assert table.columns[-2:] == ["table_rows", "type_mismatches"]
    rows = {r["run_id"]: (r["status"], r["table_rows"], r["type_mismatches"]) for r in table.collect()}
    assert rows == {"old-run": ("ok", None, None), "new-run": ("ok", 12, {"email": 1})}
    comments = {f.name: f.metadata.get("comment") for f in table.schema.fields}
    assert comments["table_rows"] == "Rows in the table after the commit"


def test_a_run_with_a_new_id_appends_its_rows_so_streams_finishing_together_never_conflict(
        spark, sandbox, make_config):
    config = make_config(sandbox)
    run(config, spark)

    path = f"{config.catalog.root}/{RUNS_DIR}"
    rows = spark.read.format("delta").load(path).select("run_id", "stream", "status").collect()
    assert len({r["run_id"] for r in rows}) == 1
    assert sorted((r["stream"], r["status"]) for r in rows) == [
        ("declines", "ok"), ("end_users", "ok"), ("responses", "ok")]
    commits = DeltaTable.forPath(spark, path).history().orderBy("version").collect()
    assert [(c["operation"], c["operationParameters"].get("mode")) for c in commits[1:]] == [("WRITE", "Append")] * 3
