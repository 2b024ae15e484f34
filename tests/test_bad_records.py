"""Bad records from the API: every one becomes a row (what does not fit a column is null, counted, and kept in
`_raw`) or, when it cannot be keyed, a row of the `_rejected` table with the reason; none is lost, none stops
the run, none lands twice."""

from __future__ import annotations

import json
import re
import tempfile
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from delta.tables import DeltaTable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox import Sandbox, SandboxOptions
from sandbox.data import UNREADABLE_TIME
from wootric_ingest.api import RetryPolicy, WootricClient
from wootric_ingest.api.timestamps import unix_seconds
from wootric_ingest.cli import main
from wootric_ingest.config import ApiConfig, Auth, load_config
from wootric_ingest.lake.rejects import REJECTED_SCHEMA, STAGED_REJECTS_SCHEMA, RejectedRecords
from wootric_ingest.lake.schemas import table_schema
from wootric_ingest.lake.staging import StagingArea
from wootric_ingest.lake.storage import LocalStorage
from wootric_ingest.lake.tables import Table
from wootric_ingest.streams import STREAMS

from conftest import config_dict, runs_path, table_path

SINCE = datetime(2024, 1, 1, tzinfo=timezone.utc)
UNTIL = datetime.now(timezone.utc) + timedelta(days=1)
MEGABYTE_COMMENT = "Slow. " * 180_000
WRITER_COLUMNS = ("_extracted_at", "_run_id")
ODD_TEXT = "Great 👍🏽 service\u0000 and a NUL, RTL \u202e, zero-width \u200b"


def spoil(record: dict, rank: int) -> dict | None:
    """A hostile version of some records, by their rank in the order the API serves them (newest first): the
    last record of every full page has no id (the client's boundary second), every 7th is spoilt one of
    seven more ways, and the first, the middle and the second to last of every page, and one record without an
    id, carry a `created_at` (the cursor) that no clock reads, though the sandbox still filters and sorts them
    by their real time."""
    bad = dict(record)
    if rank % 50 in (0, 25, 48) or rank == 149:
        bad["created_at"] = UNREADABLE_TIME
    if rank % 50 == 49:
        kind = 0
    elif rank % 7 == 0:
        kind = 1 + rank // 7 % 7
    else:
        return bad if bad != record else None
    if kind == 0:
        del bad["id"]
    elif kind == 1:
        bad["id"] = {"nested": record["id"]}
    elif kind == 2:
        bad["id"] = f"R-{record['id']}"  # a string id: still a key
    elif kind == 3:
        bad["score"] = "ten"
    elif kind == 4:
        bad["text"] = MEGABYTE_COMMENT
    elif kind == 5:
        bad["text"] = ODD_TEXT
    elif kind == 6:
        bad["updated_at"] = "the day after tomorrow"
    else:
        bad["id"] = None
    return bad


@pytest.fixture
def hostile_sandbox():
    """A sandbox whose responses are spoilt as `spoil` says; `truth` is what it serves."""
    with Sandbox(SandboxOptions(end_users=80, responses=420, declines=0, seed=23)) as sb:
        served = sb.dataset.query("responses", sort_key="created_at", descending=True, page=1, per_page=10**6)
        rank = {r["id"]: i for i, r in enumerate(served)}
        render = sb.dataset._render

        def hostile_render(stream, rows):
            rendered = render(stream, rows)
            if stream != "responses":
                return rendered
            return [spoil(r, rank[r["id"]]) or r for r in rendered]

        sb.dataset._render = hostile_render
        sb.truth = sb.dataset.records("responses")
        yield sb


def identity(record: dict) -> str:
    return json.dumps(record, sort_keys=True)


def iso(timestamp: str) -> str:
    """A Wootric timestamp as the tables write it (ISO-8601 UTC), computed apart from the job's shaping."""
    return datetime.fromtimestamp(unix_seconds(timestamp), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_client_hands_over_every_hostile_record_exactly_once(hostile_sandbox):
    sb = hostile_sandbox
    api = ApiConfig(
        base_url=sb.base_url,
        auth=Auth(username=sb.credentials.username, password=sb.credentials.password),
        max_concurrency=1,
    )
    with WootricClient(api, retry=RetryPolicy(first_delay=0.01, give_up_after=10)) as client:
        client.authenticate()
        got = [r for batch in client.pages(STREAMS["responses"], SINCE, UNTIL) for r in batch.records]
    assert sorted(map(identity, got)) == sorted(map(identity, sb.truth))
    assert sum(1 for r in got if "id" not in r) == 420 // 50
    assert sum(1 for r in got if r["created_at"] == UNREADABLE_TIME) == 26


# ------------------------------------------------------------------------------- shaping: a row or a rejection


def usable_id(record, key: str = "id") -> str | None:
    """The key a record lands under (its field `key`: `name` for segments), decided here in plain Python: a whole
    number or a non-blank string."""
    if not isinstance(record, dict):
        return None
    rid = record.get(key)
    if isinstance(rid, bool) or rid is None:
        return None
    if isinstance(rid, int):
        return str(rid) if abs(rid) < 10**38 else None  # beyond DECIMAL(38): not a number Spark keeps whole
    if isinstance(rid, str):
        return rid if re.search(r"[^ \t\n\x0b\f\r]", rid) else None
    return None


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**45), max_value=10**45)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["ten", "", " ", "\u0000", "👍🏽", "2018-01-02 23:03:41 -0800", "yesterday"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(
    [
        "id",
        "name",
        "data_type",
        "score",
        "text",
        "created_at",
        "updated_at",
        "tags",
        "notes",
        "end_user",
        "properties",
        "settings",
        "last_response",
        "completed",
        "external_created_at",
    ]
)
records = st.dictionaries(field_names, json_values, max_size=8) | json_values


def staged(root: str, stream: str, batch: list) -> StagingArea:
    staging = StagingArea(LocalStorage(), f"{root}/run-1/{stream}", STREAMS[stream], "run-1")
    staging.write(batch, fetched_at=1700000000.0)
    staging.flush()
    return staging


def read_staged(spark, staging: StagingArea):
    """What landing reads: the parts with the table's schema, the rejected files with theirs."""
    rows = spark.read.schema(table_schema(staging.stream)).parquet(*staging.parts()) if staging.parts() else None
    rejected = staging.rejected_parts()
    return (
        rows.collect() if rows is not None else [],
        spark.read.schema(STAGED_REJECTS_SCHEMA).parquet(*rejected).collect() if rejected else [],
    )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(records, min_size=1, max_size=6), stream=st.sampled_from(sorted(STREAMS)))
def test_arbitrary_json_becomes_a_row_or_a_rejection_never_an_exception(spark, batch, stream):
    with tempfile.TemporaryDirectory() as root:
        staging = staged(root, stream, batch)
        rows, rejected = read_staged(spark, staging)

    key = STREAMS[stream].key
    expected = [usable_id(r, key) for r in batch]
    assert len(rows) + len(rejected) == len(batch) == staging.records
    assert sorted(r[key] for r in rows) == sorted(k for k in expected if k is not None)
    assert len(rejected) == expected.count(None) and all(r["reason"] for r in rejected)
    assert staging.census().rows == len(rows) and staging.census().rejected == len(rejected)
    for row in rows:
        assert json.loads(row["_raw"]) is not None
    assert sorted(json.dumps(json.loads(r["record"]), sort_keys=True) for r in rejected) == sorted(
        json.dumps(b, sort_keys=True) for b, key in zip(batch, expected) if key is None
    )


def test_a_lone_surrogate_from_the_api_is_staged_escaped_instead_of_failing_the_run(spark, tmp_path):
    record = json.loads('{"id": 5, "text": "half an emoji \\ud83d here"}')  # what requests makes of that JSON
    (row,), _ = read_staged(spark, staged(str(tmp_path), "responses", [record]))
    assert row["id"] == "5" and row["text"] == "half an emoji ? here"
    assert row["_raw"] == '{"id":5,"text":"half an emoji \\ud83d here"}'


def test_the_rejected_table_keeps_each_bad_record_once_however_often_it_is_fetched(spark, tmp_path):
    table = RejectedRecords(Table(spark, REJECTED_SCHEMA, {}, path=f"{tmp_path}/rejected"))

    def rejected(run: str, *batch):
        staging = staged(str(tmp_path / run), "responses", list(batch))
        return spark.read.schema(STAGED_REJECTS_SCHEMA).parquet(*staging.rejected_parts())

    assert (
        table.record("responses", "run-1", rejected("run-1", {"text": "no id"}, {"id": True}, {"text": "no id"})) == 2
    )
    assert table.record("responses", "run-2", rejected("run-2", {"text": "no id"}, {"id": [3]}, {"id": 1})) == 2

    rows = {r["record"]: r for r in table.table.read().collect()}
    assert set(rows) == {'{"text":"no id"}', '{"id":true}', '{"id":[3]}'}
    assert (rows['{"text":"no id"}']["first_run_id"], rows['{"text":"no id"}']["last_run_id"]) == ("run-1", "run-2")
    assert (rows['{"id":true}']["first_run_id"], rows['{"id":true}']["last_run_id"]) == ("run-1", "run-1")
    assert rows['{"id":[3]}']["reason"] == "the id is an array"
    assert {r["stream"] for r in rows.values()} == {"responses"}


# --------------------------------------------------------------------------------------------- the whole job


def test_the_job_lands_every_keyable_record_and_rejects_the_rest_with_reasons(spark, hostile_sandbox, make_config):
    from wootric_ingest.run.job import run
    from wootric_ingest.run.planning import RunOptions

    sb = hostile_sandbox
    config = make_config(sb)
    (result,) = run(config, spark, RunOptions(streams=("responses",)))

    assert result.status == "ok", result.error
    keyed = {usable_id(r): r for r in sb.truth if usable_id(r) is not None}
    unkeyed = [r for r in sb.truth if usable_id(r) is None]
    rows = {r["id"]: r for r in spark.read.format("delta").load(table_path(config, "responses")).collect()}
    assert set(rows) == set(keyed)
    for key, record in keyed.items():
        row = rows[key]
        assert json.loads(row["_raw"]) == record
        if record["score"] == "ten":
            assert row["score"] is None
        if record["updated_at"] == "the day after tomorrow":
            assert row["updated_at"] is None
        assert (row["created_at"] is None) == (record["created_at"] == UNREADABLE_TIME)
        assert row["text"] == record["text"]  # the megabyte comment, emoji, NUL and bidi characters, intact
    assert any(r["text"] == MEGABYTE_COMMENT for r in rows.values())
    assert any(r["text"] == ODD_TEXT for r in rows.values())
    assert any(r["id"].startswith("R-") for r in rows.values())
    assert result.type_mismatches["score"] == sum(1 for r in keyed.values() if r["score"] == "ten")
    assert result.type_mismatches["updated_at"] == sum(
        1 for r in keyed.values() if r["updated_at"] == "the day after tomorrow"
    )
    unreadable = [r for r in keyed.values() if r["created_at"] == UNREADABLE_TIME]
    assert unreadable and result.type_mismatches["created_at"] == len(unreadable)
    assert result.bookmark == max(iso(r["created_at"]) for r in keyed.values() if r not in unreadable)

    rejected = spark.read.format("delta").load(f"{config.catalog.root}/_wootric_ingest/rejected").collect()
    assert sorted(identity(json.loads(r["record"])) for r in rejected) == sorted(map(identity, unkeyed))
    assert {r["reason"] for r in rejected} == {"no id", "the id is an object"}
    assert {r["stream"] for r in rejected} == {"responses"}
    assert result.records_rejected == len(unkeyed)
    (history,) = spark.read.format("delta").load(f"{config.catalog.root}/_wootric_ingest/runs").collect()
    assert history["records_rejected"] == len(unkeyed) and history["status"] == "ok"


def test_records_whose_cursor_cannot_be_read_land_once_never_set_the_bookmark_and_stay(spark, tmp_path, capsys):
    """End users (walked oldest first) and declines (newest first) with such records first on a page, in the
    middle, last on a full page and newest of all: the run exits 0 and lands them once, the cursor column null,
    `_raw` intact, counted; a rerun (incremental for end users, a full sync for declines) changes nothing and
    keeps them. Responses go through the same with the hostile records above."""
    streams = ("end_users", "declines")
    with Sandbox(SandboxOptions(end_users=60, responses=0, declines=60, seed=31)) as sb:
        odd = {}
        for name in streams:
            stream = STREAMS[name]
            met = sb.dataset.query(
                name, sort_key=stream.cursor_field, descending=name == "declines", page=1, per_page=10**6
            )
            newest = met[-1] if name == "end_users" else met[0]
            garbled = sb.dataset.garble(name, ids={met[i]["id"] for i in (0, 25, 49)} | {newest["id"]})
            odd[name] = {str(rid) for rid in garbled}
        truth = {name: {str(r["id"]): r for r in sb.dataset.records(name)} for name in streams}
        data = config_dict(catalog={"root": str(tmp_path / "lakehouse"), "table_prefix": "wootric_"})
        data["streams"] = {name: data["streams"][name] for name in streams}
        data["source"]["api"].update(
            base_url=sb.base_url, auth={"username": sb.credentials.username, "password": sb.credentials.password}
        )
        path = tmp_path / "source.yaml"
        path.write_text(yaml.safe_dump(data))
        config = load_config(path, environ={})

        def tables() -> dict[str, tuple[int, dict]]:
            """Each table's version and rows by id (no id twice), without the columns saying which run wrote them."""
            out = {}
            for name in streams:
                rows = spark.read.format("delta").load(table_path(config, name)).collect()
                assert len(rows) == len({r["id"] for r in rows}), f"{name}: a record landed twice"
                version = DeltaTable.forPath(spark, table_path(config, name)).history(1).first()["version"]
                written = [{k: v for k, v in r.asDict(recursive=True).items() if k not in WRITER_COLUMNS} for r in rows]
                out[name] = (version, {r["id"]: r for r in written})
            return out

        assert main(["run", "--config", str(path), "--log-level", "ERROR"]) == 0
        first = tables()
        assert main(["run", "--config", str(path), "--log-level", "ERROR"]) == 0
        second = tables()
    capsys.readouterr()

    history = sorted(spark.read.format("delta").load(runs_path(config)).collect(), key=lambda r: r["started_at"])
    for name in streams:
        cursor, garbled = STREAMS[name].cursor_field, odd[name]
        assert {truth[name][rid][cursor] for rid in garbled} == {UNREADABLE_TIME}
        _, rows = first[name]
        assert set(rows) == set(truth[name])
        for rid, row in rows.items():
            assert json.loads(row["_raw"]) == truth[name][rid]
            assert (row[cursor] is None) == (rid in garbled), (name, rid)
        one, two = [r for r in history if r["stream"] == name]
        assert (one["status"], two["status"]) == ("ok", "ok")
        assert one["type_mismatches"][cursor] == len(garbled)
        readable = [iso(r[cursor]) for rid, r in truth[name].items() if rid not in garbled]
        assert one["bookmark"] == max(readable), "the bookmark comes from readable cursors only"
        assert two["bookmark"] == one["bookmark"], "and never moves back"
        assert second[name][1] == rows, "a rerun changes nothing"
    assert [second[name][0] - first[name][0] for name in streams] == [0, 1], "only the full sync commits again"
    declines = [r for r in history if r["stream"] == "declines"][1]
    assert declines["sync_mode"] == "FULL" and declines["type_mismatches"]["created_at"] == len(odd["declines"])
