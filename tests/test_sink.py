"""Delta semantics on real local tables: MERGE newer-only, replay, one-commit full syncs, retention, vacuum,
metastore names, commit conflicts, and an independent reader (delta-rs) that sees the same rows.

Records are staged as the API would have sent them and landed through `run.landing.land`, the same code a
run uses after fetching, with the plan the table's own state gives.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlparse

import deltalake
import pytest
from delta.tables import DeltaTable
from deltalake import QueryBuilder
from pyspark.sql import functions as F
from pyspark.sql.types import StringType

from wootric_ingest.lake.lakehouse import Lakehouse
from wootric_ingest.lake.layout import Layout
from wootric_ingest.lake.state import read_state
from wootric_ingest.lake.tables import StreamTable, decode, newer, with_retries
from wootric_ingest.run.landing import Landed, land, latest_per_key, prepare
from wootric_ingest.run.planning import Plan, RunOptions, plan_stream
from wootric_ingest.run.result import OK, StreamResult
from wootric_ingest.shaping import fetch_time, shape
from wootric_ingest.streams import STREAMS

from conftest import runs_path, table_path

_runs = itertools.count(1)
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)


def user(uid: int, updated: str, **fields) -> dict:
    """An end user as the API renders it; `updated` is `YYYY-MM-DD HH:MM:SS` in UTC."""
    return {
        "id": uid,
        "created_at": "2024-01-02 00:00:00 +0000",
        "updated_at": f"{updated} +0000",
        "email": f"u{uid}@example.com",
        "properties": {"name": f"User {uid}"},
        **fields,
    }


def stream_table(spark, config, stream: str) -> StreamTable:
    return Lakehouse(config, spark).table(config.stream(stream))


def plan_for(spark, config, stream: str, now: datetime, **options) -> Plan:
    """The plan a run would make now, from the table's own state."""
    lakehouse = Lakehouse(config, spark)
    table = lakehouse.table(config.stream(stream))
    return plan_stream(config, config.stream(stream), read_state(table), RunOptions(**options), now)


def land_records(
    spark, config, stream: str, records: list[dict], *, now: datetime, run_id: str | None = None, **options
) -> Landed:
    """One run of one stream whose API returned `records`: plan from the table, stage, land."""
    run_id = run_id or f"run-{next(_runs)}"
    lakehouse = Lakehouse(config, spark)
    plan = plan_for(spark, config, stream, now, **options)
    staging = lakehouse.staging(run_id, stream)
    staging.write(records, fetched_at=now.timestamp())
    staging.flush()
    prepare(lakehouse, plan)
    landed = land(lakehouse, staging, plan, run_id)
    staging.cleanup()
    return landed


def table(spark, path: str) -> dict[str, dict]:
    return {r["id"]: r.asDict(recursive=True) for r in spark.read.format("delta").load(path).collect()}


def history(spark, path: str) -> list:
    return DeltaTable.forPath(spark, path).history().orderBy("version").collect()


def delta_rs_rows(path: str) -> list[dict]:
    arrow = QueryBuilder().register("t", deltalake.DeltaTable(path)).execute("SELECT * FROM t").read_all()
    columns = {name: arrow.column(name).to_pylist() for name in arrow.column_names}
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def _plain(value):
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list) and all(isinstance(v, tuple) and len(v) == 2 for v in value):
        return {k: _plain(v) for k, v in value}  # an Arrow map
    return value


def assert_delta_rs_reads_the_same_rows(spark, path: str) -> None:
    """The table is plain, portable Delta: an independent reader sees exactly Spark's rows."""

    def key(row):
        return json.dumps(row, sort_keys=True, default=str)

    ours = sorted((_plain(r.asDict(recursive=True)) for r in spark.read.format("delta").load(path).collect()), key=key)
    theirs = sorted((_plain(r) for r in delta_rs_rows(path)), key=key)
    assert theirs == ours


def test_incremental_merge_inserts_new_rows_updates_newer_ones_and_leaves_the_rest_alone(spark, make_config):
    config = make_config()
    first = land_records(
        spark,
        config,
        "end_users",
        [
            user(1, "2024-02-01 10:00:00"),
            user(2, "2024-02-01 10:00:00"),
            user(3, "2024-02-10 08:00:00"),
        ],
        now=T0,
        run_id="first",
    )
    assert (first.mode, first.rows_inserted, first.bookmark) == ("FULL", 3, "2024-02-10T08:00:00Z")

    second = land_records(
        spark,
        config,
        "end_users",
        [
            user(1, "2024-01-15 00:00:00", email="stale@example.com"),  # an older version than the table's
            user(2, "2024-02-20 09:00:00", email="new@example.com"),  # newer: rewritten
            user(3, "2024-02-10 08:00:00"),  # unchanged: left alone
            user(4, "2024-02-21 07:00:00"),  # new: inserted
            user(4, "2024-02-20 07:00:00", email="older-copy@example.com"),  # the same id twice: the newest wins
        ],
        now=T0 + timedelta(days=1),
        run_id="second",
    )

    assert second.mode == "INCREMENTAL" and second.reason.startswith("bookmark 2024-02-10T08:00:00Z from run first")
    assert (second.rows_inserted, second.rows_updated, second.rows_deleted) == (1, 1, 0)
    rows = table(spark, table_path(config, "end_users"))
    assert {i: (r["email"], r["updated_at"], r["_run_id"]) for i, r in rows.items()} == {
        "1": ("u1@example.com", "2024-02-01T10:00:00Z", "first"),
        "2": ("new@example.com", "2024-02-20T09:00:00Z", "second"),
        "3": ("u3@example.com", "2024-02-10T08:00:00Z", "first"),
        "4": ("u4@example.com", "2024-02-21T07:00:00Z", "second"),
    }
    assert second.bookmark == "2024-02-21T07:00:00Z"


def test_an_incremental_merge_reads_only_the_files_whose_ids_it_can_match(spark, make_config):
    config = make_config()
    path = table_path(config, "end_users")
    for b in range(4):  # four runs, four files, four id ranges
        land_records(
            spark,
            config,
            "end_users",
            [user(i, f"2024-02-0{b + 1} 10:00:00") for i in range(1000 + 100 * b, 1010 + 100 * b)],
            now=T0 + timedelta(days=b),
            run_id=f"load-{b}",
        )
    older = {
        r[0] for r in spark.read.format("delta").load(path).where("id < '1300'").select(F.input_file_name()).collect()
    }

    # The files of older ids are out of the MERGE's reach: it must succeed without them.
    aside = {f: f"{f}.aside" for f in (urlparse(u).path for u in older)}
    for f, moved in aside.items():
        os.rename(f, moved)
    try:
        recent = land_records(
            spark,
            config,
            "end_users",
            [
                user(1305, "2024-02-06 10:00:00", email="edited@example.com"),  # newer: rewritten
                user(1309, "2024-02-04 10:00:00"),  # unchanged
                user(1310, "2024-02-06 11:00:00"),  # new
            ],
            now=T0 + timedelta(days=5),
            run_id="recent",
        )
    finally:
        for f, moved in aside.items():
            os.rename(moved, f)
    assert (recent.rows_inserted, recent.rows_updated) == (1, 1)

    # Ids of different widths order as text ("999" > "1000"): the range still holds every id it must match.
    widths = land_records(
        spark,
        config,
        "end_users",
        [
            user(999, "2024-02-07 10:00:00"),
            user(1000, "2024-02-07 10:00:00", email="wider@example.com"),
        ],
        now=T0 + timedelta(days=6),
        run_id="widths",
    )
    assert (widths.rows_inserted, widths.rows_updated) == (1, 1)
    rows = table(spark, path)
    assert len(rows) == 42
    assert {i: (rows[i]["email"], rows[i]["_run_id"]) for i in ("999", "1000", "1305", "1309", "1310")} == {
        "999": ("u999@example.com", "widths"),
        "1000": ("wider@example.com", "widths"),
        "1305": ("edited@example.com", "recent"),
        "1309": ("u1309@example.com", "load-3"),
        "1310": ("u1310@example.com", "recent"),
    }


def test_a_full_sync_writes_its_files_by_id_range(spark, make_config, monkeypatch):
    monkeypatch.setattr("wootric_ingest.run.landing.FULL_SYNC_FILE_ROWS", 10)
    config = make_config()
    path = table_path(config, "end_users")
    shuffled = [user(i, "2024-02-01 10:00:00") for i in range(1000, 1040)]
    shuffled = shuffled[::3] + shuffled[1::3] + shuffled[2::3]  # the API's order is not id order
    land_records(spark, config, "end_users", shuffled, now=T0, run_id="full")

    ranges = sorted(
        (r["lo"], r["hi"])
        for r in spark.read.format("delta")
        .load(path)
        .groupBy(F.input_file_name())
        .agg(F.min("id").alias("lo"), F.max("id").alias("hi"))
        .collect()
    )
    assert len(ranges) == 4
    assert all(hi < next_lo for (_, hi), (next_lo, _) in zip(ranges, ranges[1:]))


def test_same_second_ties_are_kept_and_an_edit_within_the_second_lands(spark, make_config):
    config = make_config()
    path = table_path(config, "end_users")
    land_records(
        spark,
        config,
        "end_users",
        [user(1, "2024-02-01 10:00:00"), user(2, "2024-02-01 10:00:00")],
        now=T0,
        run_id="first",
    )
    # The next window starts at the bookmark's second (inclusive): records sharing it arrive again, beside a
    # record created in that same second after the first run, and an edit that kept the same updated_at.
    assert plan_for(spark, config, "end_users", T0 + timedelta(hours=1)).since == datetime(
        2024, 2, 1, 10, tzinfo=timezone.utc
    )
    result = land_records(
        spark,
        config,
        "end_users",
        [
            user(1, "2024-02-01 10:00:00"),
            user(2, "2024-02-01 10:00:00", email="edited@example.com"),
            user(3, "2024-02-01 10:00:00"),
        ],
        now=T0 + timedelta(hours=1),
        run_id="second",
    )
    assert (result.rows_inserted, result.rows_updated) == (1, 1)
    rows = table(spark, path)
    assert {i: (r["email"], r["_run_id"]) for i, r in rows.items()} == {
        "1": ("u1@example.com", "first"),
        "2": ("edited@example.com", "second"),
        "3": ("u3@example.com", "second"),
    }


def test_replaying_a_run_commits_nothing_and_reports_the_first_commit(spark, make_config):
    config = make_config()
    path = table_path(config, "end_users")
    land_records(spark, config, "end_users", [user(1, "2024-02-01 10:00:00")], now=T0, run_id="first")
    records = [user(1, "2024-02-05 10:00:00", email="changed@example.com"), user(2, "2024-02-05 10:00:00")]
    landed = land_records(spark, config, "end_users", records, now=T0 + timedelta(days=1), run_id="nightly")
    version, rows = DeltaTable.forPath(spark, path).history(1).first()["version"], table(spark, path)

    # The run crashed after its commit and is retried under the same run id, reading the source again.
    replay = land_records(
        spark,
        config,
        "end_users",
        records + [user(3, "2024-02-06 10:00:00")],
        now=T0 + timedelta(days=1, minutes=5),
        run_id="nightly",
    )

    assert DeltaTable.forPath(spark, path).history(1).first()["version"] == version
    assert table(spark, path) == rows
    # The idempotency key and commit metadata went to a session of the write's own, never to the shared one
    # that concurrent streams' threads use.
    assert spark.conf.get("spark.databricks.delta.write.txnAppId", None) is None
    assert spark.conf.get("spark.databricks.delta.commitInfo.userMetadata", None) is None
    assert (replay.table_version, replay.rows_inserted, replay.rows_updated) == (version, 1, 1)
    assert (landed.table_version, landed.rows_inserted, landed.rows_updated) == (version, 1, 1)


def test_a_full_sync_replaces_the_table_in_one_commit_and_keeps_its_properties(spark, make_config):
    config = make_config(source={"delta_log_retention_days": 9})
    path = table_path(config, "declines")

    def decline(did, updated="2024-02-01 10:00:00 +0000", **fields):
        return {
            "id": did,
            "end_user_id": 1,
            "survey_id": 7,
            "created_at": "2024-02-01 09:00:00 +0000",
            "updated_at": updated,
            "end_user": {"properties": {"plan": "Lite"}},
            **fields,
        }

    land_records(spark, config, "declines", [decline(1), decline(2), decline(3)], now=T0, run_id="first")
    before = history(spark, path)[-1]["version"]

    result = land_records(
        spark,
        config,
        "declines",
        [
            decline(1),
            decline(2, "2024-02-03 10:00:00 +0000", origin_url="https://example.com/x"),
            decline(4),
        ],
        now=T0 + timedelta(days=1),
        run_id="second",
    )

    commits = [c for c in history(spark, path) if c["version"] > before and not c["operation"].startswith("VACUUM")]
    assert [(c["operation"], decode(c["userMetadata"])["sync"]) for c in commits] == [("WRITE", "FULL")]
    assert commits[0]["operationParameters"]["mode"] == "Overwrite"
    assert (result.mode, result.reason) == ("FULL", "sync type is FULL_TABLE")
    assert (result.rows_inserted, result.rows_updated, result.rows_deleted) == (1, 1, 1)
    rows = table(spark, path)
    assert sorted(rows) == ["1", "2", "4"] and rows["2"]["origin_url"] == "https://example.com/x"
    detail = DeltaTable.forPath(spark, path).detail().first()
    assert detail["properties"]["delta.logRetentionDuration"] == "interval 9 days"
    comments = {f.name: f.metadata.get("comment") for f in spark.read.format("delta").load(path).schema.fields}
    assert comments["origin_url"] == "URL where the decline originated"
    assert_delta_rs_reads_the_same_rows(spark, path)


def test_an_empty_source_empties_a_full_table_stream(spark, make_config):
    config = make_config()
    path = table_path(config, "declines")
    land_records(spark, config, "declines", [{"id": 1, "created_at": "2024-02-01 09:00:00 +0000"}], now=T0)
    result = land_records(spark, config, "declines", [], now=T0 + timedelta(days=1), run_id="empty")
    assert table(spark, path) == {}
    assert (result.rows_deleted, result.table_rows, result.bookmark) == (1, 0, None)
    assert stream_table(spark, config, "declines").commits()[0].metadata["run_id"] == "empty"


def test_retention_is_set_at_creation_and_reconciled_with_one_alter_only_when_it_differs(spark, make_config):
    config = make_config(source={"delta_log_retention_days": 30})
    path = table_path(config, "end_users")
    land_records(spark, config, "end_users", [user(1, "2024-02-01 10:00:00")], now=T0)

    def retention() -> dict[str, str]:
        shown = {r["key"]: r["value"] for r in spark.sql(f"SHOW TBLPROPERTIES delta.`{path}`").collect()}
        return {k: v for k, v in shown.items() if k.endswith("RetentionDuration")}

    assert retention() == {
        "delta.logRetentionDuration": "interval 30 days",
        "delta.deletedFileRetentionDuration": "interval 30 days",
        "delta.setTransactionRetentionDuration": "interval 30 days",
    }
    shorter = make_config(source={"delta_log_retention_days": 7})
    for hours in (1, 2):
        land_records(spark, shorter, "end_users", [user(1, "2024-02-01 10:00:00")], now=T0 + timedelta(hours=hours))
    assert retention() == {
        "delta.logRetentionDuration": "interval 7 days",
        "delta.deletedFileRetentionDuration": "interval 7 days",
        "delta.setTransactionRetentionDuration": "interval 7 days",
    }
    assert [c["operation"] for c in history(spark, path)].count("SET TBLPROPERTIES") == 1


def age(spark, path: str, days: float) -> None:
    """Move a table's whole past `days` back in time: commit times, file removal and modification times.
    Stands in for waiting; Delta's own checksum files hold the old times, so they go (they are optional)."""
    shift = int(days * 86400 * 1000)
    log_dir = Path(path) / "_delta_log"
    for commit in sorted(log_dir.glob("*.json")):
        actions = [json.loads(line) for line in commit.read_text().splitlines()]
        for action in actions:
            for kind, field in (
                ("commitInfo", "timestamp"),
                ("add", "modificationTime"),
                ("remove", "deletionTimestamp"),
                ("txn", "lastUpdated"),
            ):
                if action.get(kind, {}).get(field) is not None:
                    action[kind][field] -= shift
        mtime = commit.stat().st_mtime - shift / 1000
        commit.write_text("".join(json.dumps(a) + "\n" for a in actions))
        os.utime(commit, (mtime, mtime))
    for checksum in log_dir.glob("*.crc"):
        checksum.unlink()
    for checksum in log_dir.glob(".*.crc"):
        checksum.unlink()
    for data in Path(path).glob("*.parquet"):
        mtime = data.stat().st_mtime - shift / 1000
        os.utime(data, (mtime, mtime))
    spark._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()


def files_added_by(path: str, version: int) -> set[str]:
    commit = Path(path) / "_delta_log" / f"{version:020d}.json"
    return {a["add"]["path"] for a in map(json.loads, commit.read_text().splitlines()) if "add" in a}


def test_vacuum_after_full_syncs_keeps_exactly_the_configured_days_of_history(spark, make_config):
    config = make_config(source={"delta_log_retention_days": 3})
    path = table_path(config, "declines")

    def full_sync(n: int, now: datetime) -> int:
        land_records(spark, config, "declines", [{"id": n, "created_at": "2024-02-01 09:00:00 +0000"}], now=now)
        return DeltaTable.forPath(spark, path).history(1).first()["version"]

    v1 = full_sync(1, T0)
    v2 = full_sync(2, T0)  # v1's files stop being current now
    age(spark, path, 2)  # ... that was 2 days ago
    v3 = full_sync(3, T0)  # vacuum: v1's files are within the 3 days, kept
    assert (Path(path) / next(iter(files_added_by(path, v1)))).exists()
    age(spark, path, 1.5)  # v1's files left 3.5 days ago, v2's 1.5 days ago
    v4 = full_sync(4, T0)  # vacuum: v1's files go, v2's stay

    def present(version):
        return all((Path(path) / f).exists() for f in files_added_by(path, version))

    assert [present(v) for v in (v1, v2, v3, v4)] == [False, True, True, True]
    assert spark.read.format("delta").option("versionAsOf", v2).load(path).collect()[0]["id"] == "2"
    with pytest.raises(Exception, match="(?i)file.*(not exist|not found)|FileNotFound|FAILED_READ_FILE"):
        spark.read.format("delta").option("versionAsOf", v1).load(path).collect()
    assert_delta_rs_reads_the_same_rows(spark, path)


def test_tables_are_registered_in_the_metastore_under_catalog_layer_and_table(spark, make_config):
    layer = f"raw_{uuid.uuid4().hex[:8]}"
    config = make_config(
        catalog={"metastore": True, "name": "spark_catalog"},
        streams={"end_users": {"layer": layer, "folder": "wootric", "table": "end_users"}},
    )
    land_records(spark, config, "end_users", [user(1, "2024-02-01 10:00:00")], now=T0)
    land_records(spark, config, "end_users", [user(2, "2024-02-02 10:00:00")], now=T0 + timedelta(days=1))
    assert sorted(r["id"] for r in spark.table(f"spark_catalog.{layer}.wootric_end_users").collect()) == ["1", "2"]
    assert spark.table(f"{layer}.wootric_end_users").count() == 2  # spark_catalog is the local default
    location = spark.sql(f"DESCRIBE DETAIL {layer}.wootric_end_users").first()["location"]
    assert location.endswith(f"/{layer}/wootric/wootric_end_users")


def test_metastore_names_skip_the_folder_and_quote_every_part(make_config):
    def name(**catalog):
        config = make_config(catalog=catalog)
        return Layout(config.catalog).metastore_name(config.stream("responses"))

    assert name(metastore=True, name="main") == "`main`.`raw`.`wootric_responses`"
    assert name(metastore=True) == "`raw`.`wootric_responses`"
    assert name() is None


def test_a_commit_that_conflicts_with_a_concurrent_writer_is_retried(spark, make_config, tmp_path, caplog):
    config = make_config()
    path = table_path(config, "end_users")
    land_records(
        spark,
        config,
        "end_users",
        [user(1, "2024-02-01 10:00:00"), user(2, "2024-02-01 10:00:00")],
        now=T0,
        run_id="first",
    )

    # Another writer (delta-rs, say a privacy job) deletes user 2 while a MERGE is between its read and its
    # commit: the MERGE's source calls `interfere`, once, from the Spark worker.
    marker, site = tmp_path / "interfered", os.path.dirname(os.path.dirname(deltalake.__file__))

    def interfere(email):
        import os
        import sys

        if not os.path.exists(marker):
            open(marker, "w").close()
            sys.path.insert(0, site)
            from deltalake import DeltaTable as Other

            Other(path).delete("id = '2'")
        return email

    shaped = shape(STREAMS["end_users"], user(3, "2024-02-02 10:00:00"), fetch_time(T0.timestamp()), "second")
    staged = spark.createDataFrame([shaped.values], stream_table(spark, config, "end_users").schema)
    rows = latest_per_key(STREAMS["end_users"], staged).withColumn(
        "email", F.udf(interfere, StringType()).asNondeterministic()("email")
    )

    def merge() -> None:
        (
            DeltaTable.forPath(spark, path)
            .alias("t")
            .merge(rows.alias("s"), "t.id = s.id")
            .whenMatchedUpdateAll(condition=newer(STREAMS["end_users"]))
            .whenNotMatchedInsertAll()
            .execute()
        )

    with caplog.at_level(logging.WARNING, logger="wootric_ingest.lake.tables"):
        with_retries(merge, "merging")

    assert marker.exists() and "conflicted with a concurrent commit (ConcurrentAppendException)" in caplog.text
    assert sorted(table(spark, path)) == ["1", "3"]
    assert [c["operation"] for c in history(spark, path)][-2:] == ["DELETE", "MERGE"]


def test_a_field_that_changes_type_lands_as_null_and_is_counted_in_the_run_history(spark, make_config):
    config = make_config()
    drifted = user(
        2,
        "2024-02-01 10:00:00",
        last_response={"id": 7, "score": "nine", "text": "ok"},
        settings="disabled",
        nps_segment="promoter",
    )  # a new field, too
    result = land_records(spark, config, "end_users", [user(1, "2024-02-01 10:00:00"), drifted], now=T0, run_id="drift")

    assert result.type_mismatches == {"last_response.score": 1, "settings": 1}
    row = table(spark, table_path(config, "end_users"))["2"]
    assert (row["last_response"]["score"], row["last_response"]["text"], row["settings"]) == (None, "ok", None)
    assert json.loads(row["_raw"])["nps_segment"] == "promoter"

    now = datetime.now(timezone.utc)
    landed = StreamResult("end_users", OK, table_path(config, "end_users"), now, now, landed=result)
    Lakehouse(config, spark).runs.record(landed.run_row("drift"), replace=False)
    runs = spark.read.format("delta").load(runs_path(config)).collect()
    assert [(r["run_id"], r["stream"], r["type_mismatches"]) for r in runs] == [
        ("drift", "end_users", {"last_response.score": 1, "settings": 1})
    ]


def test_files_keep_statistics_on_the_key_and_times_only(spark, make_config):
    config = make_config()
    land_records(spark, config, "end_users", [user(1, "2024-02-01 10:00:00"), user(2, "2024-02-02 10:00:00")], now=T0)

    log_dir = Path(table_path(config, "end_users")) / "_delta_log"
    added = [
        json.loads(json.loads(line)["add"]["stats"])
        for commit in sorted(log_dir.glob("*.json"))
        for line in commit.read_text().splitlines()
        if '"add"' in line
    ]
    assert added and all(stats["numRecords"] for stats in added)
    assert {column for stats in added for column in stats["nullCount"]} == {"id", "updated_at", "_deleted_at"}
    assert {column for stats in added for column in stats["minValues"]} == {"id", "updated_at"}
