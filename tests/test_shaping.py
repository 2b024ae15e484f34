"""Record shaping: API records as staged JSON → the seed's columns and types, in a real Spark session."""

import json

from wootric_ingest.lake.schemas import table_schema
from wootric_ingest.lake.shaping import STAGED_SCHEMA, latest_per_id, shape
from wootric_ingest.streams import STREAMS

END_USER = {
    "id": 2,
    "created_at": "2018-01-02 23:03:41 -0800",
    "updated_at": "2018-08-16 23:07:03 -0700",
    "email": "nps2@example.com",
    "last_surveyed": "2018-01-07T15:30:44.000-08:00",
    "external_created_at": 1515940485,
    "last_seen_at": None,
    "phone_number": None,
    "external_id": "e9a12f9aa245cfd5",
    "properties": {
        "name": "Ana",
        "role": "admin",
        "domain": "example.com",
        "language": "pt",
        "pricing_plan": "Lite",
        "revenue amount": "5000",
    },
    "last_response": {"id": 505550023, "score": 9, "text": "Great service.", "survey": {"channel": "mobile:ios"}},
    "settings": {
        "email_nps": True,
        "mobile_nps": True,
        "web_nps": False,
        "force_mobile_survey": None,
        "force_web_survey": None,
        "surveys_disabled_by_end_user": None,
    },
}
RESPONSE = {
    "id": 1,
    "end_user_id": 1,
    "survey_id": 1,
    "score": 0,
    "text": "Site is often slow. 🐢",
    "completed": False,
    "excluded_from_calculations": False,
    "ip_address": "127.0.0.1",
    "origin_url": "https://wootric.com",
    "created_at": "2016-12-16 09:05:00 -0800",
    "updated_at": "2016-12-16 09:05:13",
    "tags": ["PERFORMANCE"],
    "notes": [{"id": 3, "text": "call back"}],
    "end_user": {"properties": {"persona": "Individual"}},
}


def staged(spark, *records, fetched_at=1700000000.0):
    lines = [json.dumps({"fetched_at": fetched_at, "record": r}) for r in records]
    return spark.read.schema(STAGED_SCHEMA).json(spark.sparkContext.parallelize(lines, 1))


def test_end_user_lands_with_seed_types_and_utc_timestamps(spark):
    row = shape(staged(spark, END_USER), STREAMS["end_users"], "run-1").collect()[0]
    assert row["id"] == "2"
    assert row["created_at"] == "2018-01-03T07:03:41Z"
    assert row["updated_at"] == "2018-08-17T06:07:03Z"
    assert row["last_surveyed"] == "2018-01-07T23:30:44Z"
    assert row["external_created_at"] == "2018-01-14T14:34:45Z"
    assert row["last_seen_at"] is None
    assert row["properties"].asDict() == {"name": "Ana", "role": "admin", "domain": "example.com", "language": "pt"}
    assert row["last_response"]["id"] == "505550023" and row["last_response"]["score"] == 9
    assert row["last_response"]["survey"]["channel"] == "mobile:ios"
    assert row["settings"]["web_nps"] is False and row["settings"]["force_web_survey"] is None
    assert json.loads(row["_raw"])["properties"]["revenue amount"] == "5000"
    assert row["_run_id"] == "run-1"


def test_response_keeps_json_columns_and_reads_offsetless_times_as_pacific(spark):
    row = shape(staged(spark, RESPONSE), STREAMS["responses"], "r").collect()[0]
    assert row["updated_at"] == "2016-12-16T17:05:13Z"
    assert json.loads(row["tags"]) == ["PERFORMANCE"]
    assert json.loads(row["notes"]) == [{"id": 3, "text": "call back"}]
    assert json.loads(row["end_user"]["properties"]) == {"persona": "Individual"}
    assert row["end_user"]["email"] is None
    assert row["text"] == "Site is often slow. 🐢"


def test_null_nested_object_stays_null_and_bad_values_become_null(spark):
    record = dict(END_USER, last_response=None, created_at="yesterday", settings={"email_nps": "maybe"})
    row = shape(staged(spark, record), STREAMS["end_users"], "r").collect()[0]
    assert row["last_response"] is None
    assert row["created_at"] is None
    assert row["settings"]["email_nps"] is None
    assert json.loads(row["_raw"])["created_at"] == "yesterday"


def test_schema_is_exactly_the_stream_table_schema_but_the_deletion_mark(spark):
    for stream in STREAMS.values():
        shaped = shape(staged(spark, RESPONSE), stream, "r")
        table = [f for f in table_schema(stream).fields if f.name != "_deleted_at"]  # landing sets it
        assert [f.name for f in shaped.schema.fields] == [f.name for f in table]
        for got, want in zip(shaped.schema.fields, table):
            assert got.dataType.simpleString() == want.dataType.simpleString(), got.name


def test_latest_per_id_keeps_the_newest_update(spark):
    old = dict(RESPONSE, updated_at="2016-12-16 09:05:13 -0800", text="old")
    new = dict(RESPONSE, updated_at="2016-12-17 09:05:13 -0800", text="new")
    rows = latest_per_id(shape(staged(spark, new, old), STREAMS["responses"], "r")).collect()
    assert [r["text"] for r in rows] == ["new"]
