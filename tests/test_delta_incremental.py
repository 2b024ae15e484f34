"""Whole runs against the sandbox API: incremental runs follow inserts, updates and same-second ties exactly,
a replayed run commits nothing, and a scheduled full sync removes deleted records in one commit.

"Exactly" is checked on `_raw`: every table holds each source record once, as the API renders it now.
"""

from __future__ import annotations

import calendar
import json
from datetime import datetime, timedelta, timezone

import deltalake
import pytest

from sandbox import Sandbox, SandboxOptions
from sandbox.data import DEFAULT_END
from wootric_ingest.lake.tables import decode
from wootric_ingest.run.job import run
from wootric_ingest.run.planning import RunOptions
from wootric_ingest.schedule import Cron

from conftest import lakehouse, read_table, table_path
from test_sink import assert_delta_rs_reads_the_same_rows

STREAMS = ("end_users", "responses", "declines")


@pytest.fixture
def sandbox():
    with Sandbox(SandboxOptions(end_users=40, responses=100, declines=20, seed=5)) as sb:
        yield sb


def epoch(iso: str) -> int:
    return calendar.timegm(datetime.fromisoformat(iso.replace("Z", "+00:00")).utctimetuple())


def source(sandbox, stream: str) -> dict[str, dict]:
    return {str(r["id"]): r for r in sandbox.dataset.records(stream)}


def landed(spark, config, stream: str) -> dict[str, dict]:
    rows = read_table(spark, config, stream).collect()
    assert len(rows) == len({r["id"] for r in rows}), "a record landed twice"
    return {r["id"]: json.loads(r["_raw"]) for r in rows}


def version(spark, config, stream: str) -> int:
    return lakehouse(spark, config).table(config.stream(stream)).version()


def changed(before: dict[str, dict], after: dict[str, dict]) -> tuple[int, int, int]:
    """(inserted, updated, deleted) between two states of the source."""
    return (
        len(after.keys() - before.keys()),
        sum(1 for i in after.keys() & before.keys() if after[i] != before[i]),
        len(before.keys() - after.keys()),
    )


def test_incremental_runs_follow_the_source_exactly_and_a_replay_commits_nothing(
    spark, sandbox, make_config, table_mode
):
    config = make_config(sandbox, tables=table_mode)
    late = sandbox.dataset.add("responses", n=3, at=DEFAULT_END - 5 * 86400)  # recent enough for the look-back
    first = {r.stream_name: r for r in run(config, spark)}
    assert {s: (r.mode, r.status) for s, r in first.items()} == {s: ("FULL", "ok") for s in STREAMS}
    for stream in STREAMS:
        assert landed(spark, config, stream) == source(sandbox, stream)
    before = {stream: source(sandbox, stream) for stream in STREAMS}

    # End users created in the very second of the bookmark after the first run read it, edits, new records,
    # edits to responses inside the look-back, and a deleted decline.
    sandbox.dataset.add("end_users", n=2, at=epoch(first["end_users"].bookmark))
    sandbox.dataset.update("end_users", n=3)
    sandbox.dataset.update("responses", ids=late[:2])
    sandbox.dataset.add("responses", n=4)
    sandbox.dataset.add("declines", n=2)
    sandbox.dataset.delete("declines", n=1)

    second = {r.stream_name: r for r in run(config, spark, RunOptions(run_id="nightly-2"))}
    assert {s: r.mode for s, r in second.items()} == {
        "end_users": "INCREMENTAL",
        "responses": "INCREMENTAL",
        "declines": "FULL",
    }
    assert second["end_users"].records_fetched < len(before["end_users"]), "an incremental run re-read everything"
    for stream in STREAMS:
        now = source(sandbox, stream)
        assert landed(spark, config, stream) == now
        assert (second[stream].rows_inserted, second[stream].rows_updated, second[stream].rows_deleted) == changed(
            before[stream], now
        ), stream
        if table_mode == "path":  # plain Delta that any reader opens: no reader features; delta-rs agrees
            path = table_path(config, stream)
            assert deltalake.DeltaTable(path).protocol().min_reader_version == 1
            assert_delta_rs_reads_the_same_rows(spark, path)

    # The run is retried after a crash that followed its commits: nothing is committed again.
    versions = {stream: version(spark, config, stream) for stream in STREAMS}
    replay = {r.stream_name: r for r in run(config, spark, RunOptions(run_id="nightly-2"))}
    assert {stream: version(spark, config, stream) for stream in STREAMS} == versions
    assert {s: (r.table_version, r.rows_inserted, r.rows_updated, r.rows_deleted) for s, r in replay.items()} == {
        s: (r.table_version, r.rows_inserted, r.rows_updated, r.rows_deleted) for s, r in second.items()
    }
    runs = lakehouse(spark, config).runs.table.read()
    assert runs.where("run_id = 'nightly-2'").count() == len(STREAMS)


def test_a_scheduled_full_sync_removes_deleted_records_in_one_commit(spark, sandbox, make_config, table_mode):
    schedule = {"cron": "0 3 * * *", "timezone": "America/New_York"}
    config = make_config(sandbox, tables=table_mode, source={"additional_full_sync": schedule})
    fired = Cron.parse(schedule["cron"], schedule["timezone"]).last_fire(datetime.now(timezone.utc))
    only = RunOptions(streams=("end_users",))

    run(config, spark, only, now=fired + timedelta(minutes=5))
    gone = sandbox.dataset.delete("end_users", n=3)
    quiet = run(config, spark, only, now=fired + timedelta(hours=2))[0]
    assert quiet.mode == "INCREMENTAL"
    assert {str(i) for i in gone} <= landed(spark, config, "end_users").keys(), "an incremental sync deleted"

    table = lakehouse(spark, config).table(config.stream("end_users"))
    before = version(spark, config, "end_users")
    due = run(config, spark, only, now=fired + timedelta(days=1, minutes=1))[0]

    assert due.mode == "FULL" and due.reason.startswith("additional full sync due: '0 3 * * *' (America/New_York)")
    assert landed(spark, config, "end_users") == source(sandbox, "end_users")
    assert due.rows_deleted == len(gone)
    commits = [
        c
        for c in table.delta().history().collect()
        if c["version"] > before and not c["operation"].startswith("VACUUM")
    ]
    assert [(c["operation"], decode(c["userMetadata"])["sync"]) for c in commits] == [("WRITE", "FULL")]
    after = run(config, spark, only, now=fired + timedelta(days=1, hours=2))[0]
    assert after.mode == "INCREMENTAL"
