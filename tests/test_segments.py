"""The `segments` stream (`GET /v1/segments`, read whole, keyed by name) and what it does to `nps_by_segment`.

One sync sequence against the sandbox: segments land row by row as the API sends them, in one request a run;
`nps_by_segment` keeps to the account's segments with their data type and equals a recompute; an unchanged
account changes no gold table, while a segment added, removed or retyped is a full sync that changes exactly
those rows (the MERGE full sync, by name) and recomputes `nps_by_segment` wholly; a refresh with no segments
commit since takes the fingerprint recorded, not collecting them again. The personal data policy and `forget`
leave the stream alone.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from sandbox import Sandbox, SandboxOptions
from sandbox.data import DEFAULT_END
from wootric_ingest.cli import docs
from wootric_ingest.config import ConfigError, SyncType
from wootric_ingest.lake import gold
from wootric_ingest.run.erasure import People, forget
from wootric_ingest.run.job import run
from wootric_ingest.run.planning import RunOptions
from wootric_ingest.source import register

from conftest import lakehouse

TZ = "America/Los_Angeles"
NOW = datetime.fromtimestamp(DEFAULT_END, timezone.utc) + timedelta(days=1)
SEGMENTS = {"segments": {"layer": "raw", "folder": "wootric", "table": "segments"}}
SALT = "segments-test-salt-0123456789"


def served_segments(sb) -> dict[str, tuple[str, str]]:
    """The sandbox's segments as the table must hold them: name -> (data_type, created_at in ISO-8601 UTC)."""
    return {
        s["name"]: (
            s["data_type"],
            datetime.strptime(s["created_at"], "%Y-%m-%d %H:%M:%S %z")
            .astimezone(timezone.utc)
            .strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        for s in sb.dataset.segments()
    }


def rows(frame) -> list[dict]:
    return sorted((r.asDict() for r in frame.collect()), key=lambda r: [str(v) for v in r.values()])


def test_segments_land_whole_and_nps_by_segment_keeps_to_them_through_a_sync_sequence(spark, make_config):
    options = SandboxOptions(end_users=20, responses=120, declines=0, seed=23, start=DEFAULT_END - 90 * 86400)
    with Sandbox(options) as sb:
        config = make_config(
            sb,
            streams=SEGMENTS,
            catalog={"full_sync_write": "merge"},
            source={"pii": {"drop": ["name"], "hash": ["email"], "salt": SALT}},  # `name` is the segments' key
            nps={"layer": f"gold_{uuid.uuid4().hex[:6]}", "timezone": TZ},
        )
        assert config.stream("segments").sync_type is SyncType.FULL_TABLE  # the default for a stream read whole
        house = lakehouse(spark, config)
        segments_table = house.table(config.stream("segments"))
        by_segment = gold.gold_table(house, "nps_by_segment")

        def synced(step: int, *, recompute_gold: bool = True) -> dict:
            before = sb.stats.snapshot()["by_endpoint"].get("segments", 0)
            results = run(config, spark, RunOptions(streams=("responses", "segments")), now=NOW + timedelta(hours=step))
            assert [(r.stream_name, r.status) for r in results] == [
                ("responses", "ok"),
                ("segments", "ok"),
                ("nps", "ok"),
            ], [r.error for r in results]
            assert sb.stats.snapshot()["by_endpoint"]["segments"] == before + 1  # one request, whole
            table = {r["name"]: (r["data_type"], r["created_at"]) for r in segments_table.read().collect()}
            assert table == served_segments(sb)
            if recompute_gold:
                kept, recomputed = recompute(house)
                assert kept == recomputed, f"step {step}"
                declared = {name: kind for name, (kind, _) in table.items()}
                assert kept and {(r["segment"], r["data_type"]) for r in kept} <= set(declared.items())
            return {r.stream_name: r for r in results}

        first = synced(0)
        assert first["segments"].mode.value == "FULL" and first["segments"].rows_inserted == len(served_segments(sb))
        every_key = {r["segment"] for r in gold.by_segment(house.table(config.stream("responses")).read()).collect()}
        kept_names = {r["segment"] for r in by_segment.read().collect()}
        assert "role" in every_key and "health score" in every_key  # properties the account did not declare
        assert kept_names == every_key & set(served_segments(sb))
        assert by_segment.commits(limit=1)[0].metadata["reason"].startswith("recomputed from scratch: no refresh yet")

        version = by_segment.version()
        second = synced(
            1, recompute_gold=False
        )  # an unchanged account: a full sync that changes no row, no gold commit
        assert (second["segments"].rows_inserted, second["segments"].rows_updated) == (0, 0)
        assert second["segments"].rows_deleted == 0 and by_segment.version() == version

        sb.dataset.declare_segment("health score", "integer", at=DEFAULT_END - 3600)
        sb.dataset.remove_segment("city")
        sb.dataset.declare_segment("seat count", "string")  # retyped
        third = synced(2)
        changes = (third["segments"].rows_inserted, third["segments"].rows_updated, third["segments"].rows_deleted)
        assert changes == (1, 1, 1)  # the MERGE full sync, by name: only those rows
        assert segments_table.commits()[0].operation == "MERGE"
        refreshed = by_segment.commits(limit=1)[0].metadata
        assert refreshed["reason"] == "recomputed from scratch: the account's segments changed"
        kept = rows(by_segment.read())
        assert {r["segment"] for r in kept} == kept_names - {"city"} | {"health score"}
        assert {r["data_type"] for r in kept if r["segment"] == "seat count"} == {"string"}

        def collected(segments):
            raise AssertionError("the segments were collected, though their version did not move")

        version = by_segment.version()  # a refresh after no commit to segments takes the fingerprint recorded
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(gold, "fingerprint", collected)
            assert gold.refresh(house, "no-segments-commit").mode is None and by_segment.version() == version

        segments_version = segments_table.version()  # an erasure (of someone not there: cheap) passes segments by
        erasure = forget(house, People(emails=("nobody@example.com",)))
        assert [e.stream for e in erasure.tables] == ["responses"] and segments_table.version() == segments_version


def recompute(house) -> tuple[list[dict], list[dict]]:
    """`nps_by_segment` as kept, and computed from scratch from the tables as they are now."""
    session = house.spark.newSession()
    session.conf.set("spark.sql.session.timeZone", TZ)
    responses = house.table(house.config.stream("responses")).read(session)
    segments = gold.account_segments(house.table(house.config.stream("segments")).read(session))
    return rows(gold.gold_table(house, "nps_by_segment").read()), rows(gold.by_segment(responses, segments))


def test_an_incremental_segments_stream_is_refused_naming_the_key(make_config):
    with pytest.raises(ConfigError) as refused:
        make_config(streams={"segments": {"layer": "raw", "sync_type": "INCREMENTAL"}})
    assert refused.value.problems == [
        "streams.segments.sync_type: 'INCREMENTAL': segments is read whole (the API has no filter for it), "
        "so only FULL_TABLE syncs it"
    ]


def test_discover_and_docs_show_segments_keyed_by_name_and_full_table_only():
    entry = next(s for s in docs.catalog()["streams"] if s["stream"] == "segments")
    assert (entry["endpoint"], entry["key_properties"], entry["supported_sync_types"]) == (
        "GET /v1/segments",
        ["name"],
        ["FULL_TABLE"],
    )
    assert list(entry["schema"]["properties"])[:3] == ["name", "data_type", "created_at"]
    section = docs.markdown().split("### `segments`", 1)[1].split("###", 1)[0]
    assert "primary key `name`" in section and "`FULL_TABLE` only" in section


def test_a_batch_read_of_segments_is_one_partition_with_every_segment(spark):
    register(spark)
    with Sandbox(SandboxOptions(end_users=5, responses=5, declines=0, seed=3)) as sb:
        c = sb.credentials
        frame = (
            spark.read.format("wootric")
            .option("stream", "segments")
            .option("base_url", sb.base_url)
            .option("username", c.username)
            .option("password", c.password)
            .option("start_date", "2024-01-01T00:00:00Z")
            .option("requests_per_minute", "6000")
            .load()
        )
        assert frame.rdd.getNumPartitions() == 1
        got = {r["name"]: (r["data_type"], r["created_at"]) for r in frame.collect()}
        assert got == served_segments(sb)
        assert sb.stats.snapshot()["by_endpoint"]["segments"] == 1
