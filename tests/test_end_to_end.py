"""The whole job against the sandbox API, in a real local Spark session, checked row by row.

The expected rows are computed here, independently of the job's Spark shaping, from the sandbox's
ground truth: if the job drops, duplicates or mis-converts anything, a row differs.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from sandbox import Sandbox, SandboxOptions
from wootric_ingest.run.job import run

from conftest import table_path

#: The product page's field tables, typed out by hand: the tables must have exactly these columns.
SEED_FIELDS = {
    "end_users": {
        "id": "string",
        "email": "string",
        "external_id": "string",
        "phone_number": "string",
        "created_at": "string",
        "updated_at": "string",
        "last_surveyed": "string",
        "external_created_at": "string",
        "last_seen_at": "string",
        "properties.name": "string",
        "properties.role": "string",
        "properties.domain": "string",
        "properties.language": "string",
        "last_response.id": "string",
        "last_response.score": "int",
        "last_response.text": "string",
        "last_response.survey.channel": "string",
        "settings.email_nps": "boolean",
        "settings.mobile_nps": "boolean",
        "settings.web_nps": "boolean",
        "settings.force_mobile_survey": "boolean",
        "settings.force_web_survey": "boolean",
        "settings.surveys_disabled_by_end_user": "boolean",
    },
    "responses": {
        "id": "string",
        "end_user_id": "string",
        "survey_id": "string",
        "score": "int",
        "text": "string",
        "completed": "boolean",
        "excluded_from_calculations": "boolean",
        "ip_address": "string",
        "origin_url": "string",
        "created_at": "string",
        "updated_at": "string",
        "tags": "string",
        "notes": "string",
        "end_user.email": "string",
        "end_user.external_id": "string",
        "end_user.external_created_at": "string",
        "end_user.created_at": "string",
        "end_user.properties": "string",
    },
    "declines": {
        "id": "string",
        "end_user_id": "string",
        "survey_id": "string",
        "ip_address": "string",
        "origin_url": "string",
        "created_at": "string",
        "updated_at": "string",
        "end_user.properties": "string",
    },
}
TIMESTAMPS = {
    "created_at",
    "updated_at",
    "last_surveyed",
    "last_seen_at",
    "external_created_at",
    "end_user.created_at",
    "end_user.external_created_at",
}
JSON_COLUMNS = {"tags", "notes", "end_user.properties"}
METADATA = ["_extracted_at", "_run_id", "_raw", "_deleted_at"]


def iso_utc(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, int):
        return datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    for fmt in ("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            parsed = datetime.strptime(value, fmt)
            break
        except ValueError:
            continue
    else:
        parsed = datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=ZoneInfo("America/Los_Angeles"))
    return parsed.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def expected_value(column: str, record: dict):
    value = record
    for part in column.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if column in TIMESTAMPS:
        return iso_utc(value)
    if column in JSON_COLUMNS:
        return None if value is None else value
    if isinstance(value, int) and not isinstance(value, bool) and SEED_FIELDS_TYPES.get(column) == "string":
        return str(value)
    return value


SEED_FIELDS_TYPES = {k: v for fields in SEED_FIELDS.values() for k, v in fields.items()}


def flatten(schema, prefix="") -> dict[str, str]:
    out = {}
    for field in schema.fields:
        name = prefix + field.name
        if field.dataType.typeName() == "struct":
            out.update(flatten(field.dataType, name + "."))
        else:
            out[name] = field.dataType.simpleString()
    return out


def table_rows(spark, path: str) -> dict[str, dict]:
    rows = spark.read.format("delta").load(path).collect()
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "a record landed twice"
    return {r["id"]: r.asDict(recursive=True) for r in rows}


def assert_table_matches(spark, config, stream: str, records: list[dict]):
    path = table_path(config, stream)
    table = spark.read.format("delta").load(path)
    assert flatten(table.schema) == {
        **SEED_FIELDS[stream],
        "_extracted_at": "timestamp",
        "_run_id": "string",
        "_raw": "string",
        "_deleted_at": "timestamp",
    }
    assert table.columns == list(table.columns[: -len(METADATA)]) + METADATA
    rows = table_rows(spark, path)
    assert set(rows) == {str(r["id"]) for r in records}
    for record in records:
        row = rows[str(record["id"])]
        for column in SEED_FIELDS[stream]:
            got = row
            for part in column.split("."):
                got = got.get(part) if isinstance(got, dict) else None
            if column in JSON_COLUMNS and got is not None:
                got = json.loads(got)
            assert got == expected_value(column, record), (stream, record["id"], column)
        assert json.loads(row["_raw"]) == record


@pytest.fixture
def sandbox():
    with Sandbox(SandboxOptions(end_users=300, responses=800, declines=120, seed=11)) as sb:
        yield sb


def test_first_run_lands_every_record_once_with_the_seed_schema(spark, sandbox, make_config):
    config = make_config(sandbox)
    results = run(config, spark)
    assert {r.stream_name: r.status for r in results} == {"end_users": "ok", "responses": "ok", "declines": "ok"}
    for stream in ("end_users", "responses", "declines"):
        assert_table_matches(spark, config, stream, sandbox.dataset.records(stream))


def test_reruns_upsert_incremental_streams_and_rewrite_full_table_ones(spark, sandbox, make_config):
    config = make_config(sandbox)
    run(config, spark)
    sandbox.dataset.add("responses", n=25)
    sandbox.dataset.update("end_users", n=15)
    sandbox.dataset.add("declines", n=5)
    sandbox.dataset.delete("declines", n=7)

    results = {r.stream_name: r for r in run(config, spark)}

    assert results["end_users"].mode == "INCREMENTAL"
    assert results["responses"].mode == "INCREMENTAL"
    assert results["declines"].mode == "FULL"
    assert results["end_users"].records_fetched < 300, "an incremental run re-read everything"
    for stream in ("end_users", "responses", "declines"):
        assert_table_matches(spark, config, stream, sandbox.dataset.records(stream))
