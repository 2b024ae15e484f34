"""Landing: a run's streams go through staging into their tables in one Spark session; staging is removed
once a stream committed and kept (with its manifest) when it did not; a record staged twice lands once."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from sandbox import Sandbox, SandboxOptions
from wootric_ingest.lake.lakehouse import Lakehouse
from wootric_ingest.lake.layout import Layout
from wootric_ingest.lake.staging import MANIFEST
from wootric_ingest.lake.state import read_state
from wootric_ingest.run.job import run
from wootric_ingest.run.landing import land, prepare
from wootric_ingest.run.planning import RunOptions, plan_stream

from conftest import table_path

NOW = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def sandbox():
    with Sandbox(SandboxOptions(end_users=40, responses=160, declines=25, seed=5)) as sb:
        yield sb


def table_raw(spark, config, stream: str) -> dict[str, dict]:
    rows = spark.read.format("delta").load(table_path(config, stream)).collect()
    assert len(rows) == len({r["id"] for r in rows}), "a record landed twice"
    return {r["id"]: json.loads(r["_raw"]) for r in rows}


def staged_runs(config) -> list[str]:
    folder = Path(Layout(config.catalog).staging_root)
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_every_stream_lands_from_staging_and_its_staging_is_removed(spark, sandbox, make_config):
    config = make_config(sandbox)
    results = run(config, spark, now=NOW)
    assert [(r.stream_name, r.status) for r in results] == [
        ("end_users", "ok"),
        ("responses", "ok"),
        ("declines", "ok"),
    ]
    for stream in ("end_users", "responses", "declines"):
        assert table_raw(spark, config, stream) == {str(r["id"]): r for r in sandbox.dataset.records(stream)}
    assert staged_runs(config) == []


def test_a_stream_that_fails_to_land_keeps_its_staging_and_manifest(spark, sandbox, make_config):
    config = make_config(sandbox)
    blocked = Path(table_path(config, "responses"))
    blocked.parent.mkdir(parents=True)
    blocked.write_text("not a Delta table")

    results = {r.stream_name: r for r in run(config, spark, now=NOW)}

    assert results["responses"].status == "failed"
    assert results["end_users"].status == results["declines"].status == "ok"
    [run_id] = staged_runs(config)
    staging = Lakehouse(config, spark).staging(run_id, "responses")
    assert sorted(Path(staging.run_folder).iterdir()) == [Path(staging.folder)]  # the landed streams' are gone
    staged = [json.loads(row["_raw"]) for part in staging.parts() for row in pq.read_table(part).to_pylist()]
    assert sorted(r["id"] for r in staged) == sorted(sandbox.dataset.ids("responses"))
    window = (int(config.start_date.timestamp()), int(NOW.timestamp()))
    assert json.loads(Path(staging.folder, MANIFEST).read_text())["completed"] == [list(window)]
    assert staging.census().rows == len(staged)


def test_a_record_staged_twice_lands_once_in_its_newest_version(spark, sandbox, make_config):
    config = make_config(sandbox)
    lakehouse = Lakehouse(config, spark)
    plan = plan_stream(
        config, config.stream("responses"), read_state(lakehouse.table(config.stream("responses"))), RunOptions(), NOW
    )
    first, second, third = sandbox.dataset.records("responses")[:3]
    edited = dict(first, updated_at="2026-06-30 09:00:00 -0700", tags=["EDITED"])
    staging = lakehouse.staging("run-1", "responses", batch_records=2)
    staging.write([edited, second], fetched_at=NOW.timestamp() - 60)
    staging.write([first, third], fetched_at=NOW.timestamp())  # an older version, fetched later
    staging.flush()

    prepare(lakehouse, plan)
    result = land(lakehouse, staging, plan, "run-1")

    assert table_raw(spark, config, "responses") == {str(r["id"]): r for r in (edited, second, third)}
    assert result.table_rows == 3 and result.rows_inserted == 3


def test_type_mismatches_are_counted_by_a_full_and_an_incremental_landing_alike(spark, sandbox, make_config):
    config = make_config(sandbox)
    lakehouse = Lakehouse(config, spark)
    stream_config = config.stream("responses")
    good, bad = sandbox.dataset.records("responses")[:2]

    def landed(run_id: str):
        plan = plan_stream(config, stream_config, read_state(lakehouse.table(stream_config)), RunOptions(), NOW)
        staging = lakehouse.staging(run_id, "responses")
        staging.write([good, dict(bad, score="ten", completed="maybe")])
        staging.flush()
        prepare(lakehouse, plan)
        return plan, land(lakehouse, staging, plan, run_id)

    full, landed_full = landed("run-1")
    incremental, landed_incremental = landed("run-2")

    assert (full.mode, incremental.mode) == ("FULL", "INCREMENTAL")
    assert landed_full.type_mismatches == landed_incremental.type_mismatches == {"score": 1, "completed": 1}
