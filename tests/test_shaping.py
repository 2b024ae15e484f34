"""Record shaping in plain Python: API records → the table's typed values, the columns whose value did not fit,
and why a record cannot be keyed; the semantics Spark gives a JSON record read with string leaves, then cast."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from wootric_ingest import redaction
from wootric_ingest.lake.schemas import table_schema
from wootric_ingest.run.landing import latest_per_key
from wootric_ingest.shaping import Shaped, fetch_time, iso_utc, shape
from wootric_ingest.streams import STREAMS

from conftest import REPO

FETCHED = fetch_time(1700000000.25)
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


def row(record, stream="end_users", run_id="run-1") -> dict:
    shaped = shape(STREAMS[stream], record, FETCHED, run_id)
    return dict(zip(table_schema(STREAMS[stream]).fieldNames(), shaped.values))


def mismatches(record, stream="end_users") -> list[str]:
    return sorted(shape(STREAMS[stream], record, FETCHED, "r").mismatches)


def test_an_end_user_gets_the_seed_types_and_utc_timestamps():
    got = row(END_USER)
    assert got["id"] == "2"
    assert got["created_at"] == "2018-01-03T07:03:41Z"
    assert got["updated_at"] == "2018-08-17T06:07:03Z"
    assert got["last_surveyed"] == "2018-01-07T23:30:44Z"
    assert got["external_created_at"] == "2018-01-14T14:34:45Z"
    assert got["last_seen_at"] is None
    assert got["properties"] == {"name": "Ana", "role": "admin", "domain": "example.com", "language": "pt"}
    assert got["last_response"] == {
        "id": "505550023",
        "score": 9,
        "text": "Great service.",
        "survey": {"channel": "mobile:ios"},
    }
    assert got["settings"]["web_nps"] is False and got["settings"]["force_web_survey"] is None
    assert json.loads(got["_raw"]) == END_USER and got["_raw"] == json.dumps(
        END_USER, ensure_ascii=False, separators=(",", ":")
    )
    assert (got["_run_id"], got["_extracted_at"]) == ("run-1", datetime(2023, 11, 14, 22, 13, 20, 250000, timezone.utc))
    assert mismatches(END_USER) == []


def test_a_response_keeps_json_columns_as_compact_text_and_reads_offsetless_times_as_pacific():
    got = row(RESPONSE, "responses")
    assert got["updated_at"] == "2016-12-16T17:05:13Z"
    assert (got["tags"], got["notes"]) == ('["PERFORMANCE"]', '[{"id":3,"text":"call back"}]')
    assert got["end_user"] == {
        "email": None,
        "external_id": None,
        "external_created_at": None,
        "created_at": None,
        "properties": '{"persona":"Individual"}',
    }
    assert (got["text"], got["end_user_id"], got["completed"]) == ("Site is often slow. 🐢", "1", False)


def test_values_that_do_not_fit_are_null_counted_by_column_and_kept_in_raw():
    record = dict(
        END_USER,
        created_at="yesterday",
        settings={"email_nps": "maybe", "web_nps": "N"},
        last_response={"id": 7, "score": "nine", "text": "ok", "survey": "web"},
    )
    got = row(record)
    assert got["created_at"] is None
    assert (got["settings"]["email_nps"], got["settings"]["web_nps"]) == (None, False)
    assert got["last_response"] == {"id": "7", "score": None, "text": "ok", "survey": None}
    assert json.loads(got["_raw"])["created_at"] == "yesterday"
    assert mismatches(record) == [
        "created_at",
        "last_response.score",
        "last_response.survey",
        "settings.email_nps",
    ]


def test_an_object_that_arrives_as_something_else_is_counted_once_at_the_object_and_null_is_no_mismatch():
    assert row(dict(END_USER, settings="disabled"))["settings"] is None
    assert mismatches(dict(END_USER, settings="disabled", properties=[1, 2])) == ["properties", "settings"]
    assert mismatches(dict(END_USER, settings=None, last_response={})) == []
    assert row(dict(END_USER, last_response={}))["last_response"] == {
        "id": None,
        "score": None,
        "text": None,
        "survey": None,
    }


@pytest.mark.parametrize(
    "value, expected",
    [
        (9, 9),
        ("9", 9),
        (" 9 ", 9),
        ("\t+5\n", 5),
        ("-0", 0),
        ("007", 7),
        (2147483647, 2147483647),
        (-2147483648, -2147483648),
        (2147483648, None),
        ("2147483648", None),
        (9.0, None),
        ("9.0", None),
        ("1e2", None),
        ("ten", None),
        ("\u00a09", None),
        ("٣", None),
        (True, None),
        ([9], None),
    ],
)
def test_integers_are_read_as_try_cast_reads_them(value, expected):
    assert row(dict(RESPONSE, score=value), "responses")["score"] == expected
    assert mismatches(dict(RESPONSE, score=value), "responses") == ([] if expected is not None else ["score"])


@pytest.mark.parametrize(
    "value, expected",
    [
        (True, True),
        ("true", True),
        (" TRUE ", True),
        ("t", True),
        ("Yes", True),
        ("y", True),
        ("1", True),
        (1, True),
        (0, False),
        ("F", False),
        ("no", False),
        ("n", False),
        ("0", False),
        ("maybe", None),
        ("on", None),
        (1.0, None),
        (2, None),
        ("", None),
    ],
)
def test_booleans_are_read_as_spark_casts_strings(value, expected):
    assert row(dict(RESPONSE, completed=value), "responses")["completed"] is expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2018-01-02 23:03:41 -0800", "2018-01-03T07:03:41Z"),
        ("2018-01-02 23:03:41 +1800", "2018-01-02T05:03:41Z"),
        ("2018-01-07T15:30:44.000-08:00", "2018-01-07T23:30:44Z"),
        ("2018-01-07T15:30:44.5Z", "2018-01-07T15:30:44Z"),
        ("2018-01-07t15:30:44z", "2018-01-07T15:30:44Z"),
        ("2018-01-07T15:30:44+05:30", "2018-01-07T10:00:44Z"),
        ("2016-12-16 09:05:13", "2016-12-16T17:05:13Z"),  # no offset: Pacific, standard time
        ("2018-08-16 23:07:03", "2018-08-17T06:07:03Z"),  # summer time
        ("2018-03-11 02:30:00", "2018-03-11T10:30:00Z"),  # skipped by summer time: the offset before it
        ("2018-11-04 01:30:00", "2018-11-04T08:30:00Z"),  # repeated in autumn: summer time
        ("1800-06-01 12:00:00", "1800-06-01T19:52:58Z"),  # before time zones: Los Angeles' mean time
        ("1515940485", "2018-01-14T14:34:45Z"),
        ("-62167219201", "-0001-12-31T23:59:59Z"),
        ("253402300800", "+10000-01-01T00:00:00Z"),
        ("0000-01-01 00:00:00", "0000-01-01T07:52:58Z"),
        ("2018-01-07T15:30:44.1234Z", None),
        ("2018-01-02 23:03:41 +00:00", None),
        ("2018-01-02T23:03:41+0800", None),
        ("2018-01-02T23:03:41+18:01", None),
        ("2018-02-30 10:00:00", None),
        ("2018-01-02 24:00:00", None),
        (" 2018-01-02 23:03:41 -0800", None),
        ("2018-1-2 3:03:41", None),
        ("9999999999999", None),
        ("1515940485.5", None),
        ("yesterday", None),
    ],
)
def test_every_timestamp_form_wootric_renders_becomes_iso_utc_and_nothing_else_does(text, expected):
    assert iso_utc(text) == expected


def test_a_string_column_keeps_any_other_json_value_as_text_written_as_spark_writes_it():
    def text(value):
        return row(dict(RESPONSE, text=value), "responses")["text"]

    assert text(12) == "12" and text(True) == "true" and text(1.5) == "1.5"
    assert text(1e20) == "1.0E20" and text(1e-07) == "1.0E-7" and text(123456789.125) == "1.23456789125E8"
    assert text({"k": [1, None, "é"], "x": 2.0}) == '{"k":[1,null,"é"],"x":2.0}'
    assert text(["🚀", "\u001b"]) == '["\\uD83D\\uDE80","\\u001B"]'  # UTF-16 escapes in upper case
    assert text(float("nan")) == '"NaN"'


@pytest.mark.parametrize(
    "record, problem",
    [
        ({"id": 1}, None),
        ({"id": "R-7"}, None),
        ({"id": "12"}, None),
        ({"id": 10**38 - 1}, None),
        ({"id": "\u00a0"}, None),  # only ASCII whitespace is blank
        ({"text": "no id"}, "no id"),
        ({"id": None}, "no id"),
        ({"id": True}, "the id is a boolean"),
        ({"id": {"a": 1}}, "the id is an object"),
        ({"id": [1]}, "the id is an array"),
        ({"id": 1.5}, "the id is not a whole number of at most 38 digits"),
        ({"id": 1.0}, "the id is not a whole number of at most 38 digits"),
        ({"id": 10**38}, "the id is not a whole number of at most 38 digits"),
        ({"id": " \t"}, "the id is a blank string"),
        ("a string", "not a JSON object"),
        ([1, 2], "not a JSON object"),
        (None, "not a JSON object"),
        (42, "not a JSON object"),
    ],
)
def test_each_reason_a_record_cannot_be_keyed_is_named(record, problem):
    shaped = shape(STREAMS["responses"], record, FETCHED, "r")
    assert shaped.problem == problem
    assert json.loads(shaped.raw) == record


def test_a_secret_in_a_record_is_masked_in_every_value_and_in_raw():
    redaction.register("hunter2-shaping-secret")
    record = dict(RESPONSE, text="pw hunter2-shaping-secret", tags=["hunter2-shaping-secret"])
    got = row(record, "responses")
    assert got["text"] == f"pw {redaction.MASK}" and got["tags"] == json.dumps([redaction.MASK])
    assert "hunter2" not in json.dumps([v for v in got.values() if isinstance(v, str)])


def test_a_lone_surrogate_is_kept_escaped_in_raw_and_written_as_the_jvm_writes_it():
    record = json.loads('{"id": 5, "text": "half an emoji \\ud83d here", "tags": ["\\ud83d"]}')
    got = row(record, "responses")
    assert got["_raw"] == '{"id":5,"text":"half an emoji \\ud83d here","tags":["\\ud83d"]}'
    assert (got["text"], got["tags"]) == ("half an emoji ? here", '["\\uD83D"]')
    got["text"].encode("utf-8")


def test_values_come_in_the_tables_column_order_for_every_stream():
    for stream in STREAMS.values():
        shaped = shape(stream, RESPONSE, FETCHED, "r")
        assert isinstance(shaped, Shaped) and len(shaped.values) == len(table_schema(stream).fields)


def test_latest_per_key_keeps_the_newest_update_then_the_latest_fetch(spark):
    schema = table_schema(STREAMS["responses"])
    old = shape(STREAMS["responses"], dict(RESPONSE, updated_at="2016-12-16 09:05:13 -0800", text="old"), FETCHED, "r")
    new = shape(STREAMS["responses"], dict(RESPONSE, updated_at="2016-12-17 09:05:13 -0800", text="new"), FETCHED, "r")
    later = fetch_time(1700000100)
    same = [
        shape(STREAMS["responses"], dict(RESPONSE, id=2, text=t), at, "r") for t, at in (("a", later), ("b", FETCHED))
    ]
    frame = spark.createDataFrame([s.values for s in (new, old, *same)], schema)
    rows = {r["id"]: r["text"] for r in latest_per_key(STREAMS["responses"], frame).collect()}
    assert rows == {"1": "new", "2": "a"}


def test_shaping_needs_no_pyspark_so_a_data_source_and_the_driver_share_it():
    blocked = (
        "import sys; sys.modules['pyspark'] = None; sys.modules['pyarrow'] = None; "
        "from wootric_ingest.shaping import shape, fetch_time; from wootric_ingest.streams import STREAMS; "
        "print(shape(STREAMS['declines'], {'id': 7}, fetch_time(0), 'r').values[0])"
    )
    done = subprocess.run([sys.executable, "-c", blocked], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "7\n"), done.stderr
