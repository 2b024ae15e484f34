"""The `wootric` Spark data source against the sandbox, in the shared local Spark session, checked row by row.

Batch reads are compared with the sandbox's ground truth (independently, as the end-to-end test does) and with
the job's shaping; streaming reads land in real Delta tables through checkpoints. Data sets stay small: every
read starts Python workers.
"""

from __future__ import annotations

import json
import math
import re
import time
from datetime import datetime, timezone

import pytest
import yaml
from pyspark.errors import AnalysisException, PySparkException, StreamingQueryException
from pyspark.sql import functions as F
from test_end_to_end import JSON_COLUMNS, SEED_FIELDS, expected_value

from sandbox import Sandbox, SandboxOptions
from wootric_ingest.shaping import shape
from wootric_ingest.source import OPTIONS_REDACTION, SPARK_REDACTION_DEFAULT, register
from wootric_ingest.source.datasource import WindowPartition, WootricDataSource, row_schema
from wootric_ingest.source.options import SECRET_OPTIONS
from wootric_ingest.streams import STREAMS

from conftest import config_dict

START = "2024-01-01T00:00:00Z"


@pytest.fixture(scope="module")
def wootric(spark):
    register(spark)
    return spark


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(SandboxOptions(end_users=120, responses=300, declines=60, seed=16)) as sb:
        yield sb


def options(sb: Sandbox, stream: str, **extra) -> dict[str, str]:
    c = sb.credentials
    return {
        "stream": stream,
        "base_url": sb.base_url,
        "username": c.username,
        "password": c.password,
        "account_token": c.account_token,
        "start_date": START,
        "requests_per_minute": "6000",
        **{k: str(v) for k, v in extra.items()},
    }


def batch(spark, opts: dict[str, str]):
    return spark.read.format("wootric").options(**opts).load()


def value(row: dict, column: str):
    for part in column.split("."):
        row = row.get(part) if isinstance(row, dict) else None
    return row


def rows_by_id(rows) -> dict[str, dict]:
    by_id = {r["id"]: r.asDict(recursive=True) for r in rows}
    assert len(by_id) == len(rows), "a record came twice"
    return by_id


@pytest.mark.parametrize("stream", ["end_users", "responses", "declines"])
def test_a_batch_read_is_the_ground_truth_row_by_row_shaped_as_the_job_shapes_it(wootric, sandbox, stream):
    df = batch(wootric, options(sandbox, stream, max_concurrency=3))
    assert df.schema == row_schema(STREAMS[stream])
    assert df.columns == [*(f.name for f in STREAMS[stream].fields), "_extracted_at", "_raw"]
    rows = rows_by_id(df.collect())
    records = sandbox.dataset.records(stream)
    assert set(rows) == {str(r["id"]) for r in records}
    for record in records:
        row = rows[str(record["id"])]
        for column in SEED_FIELDS[stream]:
            got = value(row, column)
            if column in JSON_COLUMNS and got is not None:
                got = json.loads(got)
            assert got == expected_value(column, record), (stream, record["id"], column)
        assert json.loads(row["_raw"]) == record
        # One implementation: the job's staging shapes the same record into the same values.
        staged = shape(STREAMS[stream], json.loads(row["_raw"]), row["_extracted_at"], "run")
        assert tuple(row[f.name] for f in STREAMS[stream].fields) == tuple(
            _as_row_value(v) for v in staged.values[: len(STREAMS[stream].fields)]
        )


def _as_row_value(value):
    """A shaped struct (a dict) as `Row.asDict(recursive=True)` gives it back."""
    return {k: _as_row_value(v) for k, v in value.items()} if isinstance(value, dict) else value


def test_partitions_share_a_tight_rate_limit_spend_about_one_request_per_page_and_meet_no_429(wootric):
    with Sandbox(SandboxOptions(end_users=40, responses=500, declines=0, seed=5, rate_limit=12, rate_window=2.0)) as sb:
        opts = options(sb, "responses", max_concurrency=4, requests_per_minute=12)
        partitions = WootricDataSource(opts).reader(row_schema(STREAMS["responses"])).partitions()
        sb.stats.reset()
        rows = rows_by_id(batch(wootric, opts).collect())
        served = sb.stats.snapshot()
    assert set(rows) == {str(r["id"]) for r in sb.dataset.records("responses")}
    assert len(partitions) == 4
    assert served["served_429"] == 0
    pages = math.ceil(500 / 50)
    # Per partition: its token and at most one request past its last full page; the driver's credentials check.
    assert pages <= served["by_endpoint"]["responses"] <= pages + len(partitions)
    assert served["by_endpoint"]["token"] == len(partitions) + 1


def test_records_deleted_or_moved_between_planning_and_reading_come_at_most_once_and_unchanged_ones_exactly_once():
    with Sandbox(SandboxOptions(end_users=200, responses=0, declines=0, seed=8)) as sb:
        source = WootricDataSource(options(sb, "end_users", max_concurrency=4))
        reader = source.reader(source.schema())
        windows = reader.partitions()
        assert len(windows) == 4
        first = list(reader.read(windows[0]))
        later = [r for r in sb.dataset.records("end_users") if str(r["id"]) not in {row[0] for row in first}]
        deleted = set(sb.dataset.delete("end_users", ids=[later[0]["id"], later[-1]["id"]]))
        moved = set(sb.dataset.update("end_users", ids=[later[1]["id"], later[-2]["id"]], at=int(time.time()) + 5))
        moved |= set(sb.dataset.update("end_users", ids=[int(first[0][0])], at=int(time.time()) + 5))
        rest = [row for window in windows[1:] for row in reader.read(window)]
    ids = [row[0] for row in first + rest]
    assert len(ids) == len(set(ids)), "a record came twice"
    unchanged = {str(r["id"]) for r in sb.dataset.records("end_users")} - {str(i) for i in moved}
    assert unchanged <= set(ids)
    assert not {str(i) for i in deleted} & set(ids)
    # The moved end user read before its update came in its old version; those not read yet left the range.
    assert first[0][0] in ids and not {str(later[1]["id"]), str(later[-2]["id"])} & set(ids)


def stream_into_delta(spark, opts: dict[str, str], table: str, checkpoint: str):
    query = (
        spark.readStream.format("wootric")
        .options(**opts)
        .load()
        .writeStream.format("delta")
        .option("checkpointLocation", checkpoint)
        .trigger(availableNow=True)
        .start(table)
    )
    query.awaitTermination(120)


def test_a_stream_failing_mid_batch_resumes_from_its_checkpoint_and_available_now_then_gets_exactly_the_new_records(
    wootric, tmp_path
):
    """Into a Delta sink (appends: a record read twice would be two rows)."""
    with Sandbox(SandboxOptions(end_users=40, responses=300, declines=0, seed=22)) as sb:
        opts = options(sb, "responses", lag_seconds=1, max_concurrency=3, retry_give_up_seconds=1)
        table, checkpoint = str(tmp_path / "responses"), tmp_path / "checkpoint"
        sb.faults.script("html_200", count=30, path="responses")  # the batch is planned, its tasks give up
        with pytest.raises(StreamingQueryException) as failed:
            stream_into_delta(wootric, opts, table, str(checkpoint))
        assert "giving up" in with_causes(failed.value), "the batch failed for another reason than the API"
        planned = (checkpoint / "offsets" / "0").read_text()
        sb.faults.clear()  # the API is well again (a fault left over would fail the resumed run too)
        stream_into_delta(wootric, opts, table, str(checkpoint))
        assert (checkpoint / "offsets" / "0").read_text() == planned, "the failed batch was planned anew"
        first = [r["id"] for r in wootric.read.format("delta").load(table).collect()]
        assert sorted(first) == sorted(str(r["id"]) for r in sb.dataset.records("responses"))

        new = sb.dataset.add("responses", n=7)
        time.sleep(1.2)  # past the lag: the second holding the new records is over
        stream_into_delta(wootric, opts, table, str(checkpoint))
        ids = [r["id"] for r in wootric.read.format("delta").load(table).collect()]
    assert sorted(ids) == sorted(first + [str(i) for i in new]), "not exactly the new records"


def with_causes(error: BaseException | None) -> str:
    """An error's text with its causes' (Spark reports a task's Python error as the cause of a write failure,
    or as the failure itself, depending on which task fails first)."""
    texts = []
    while error is not None:
        texts += [str(error), str(getattr(error, "_stackTrace", "") or "")]
        error = getattr(error, "_cause", None) or error.__cause__
    return "\n".join(texts)


def test_lookback_re_emits_the_days_before_a_micro_batch_so_later_edits_come_again():
    with Sandbox(SandboxOptions(end_users=30, responses=80, declines=0, seed=23)) as sb:
        now = int(time.time())
        edited = sb.dataset.add("responses", n=3, at=now - 86400)
        start, end = {"cursor": now - 600}, {"cursor": now}

        def micro_batch(**extra) -> dict[str, dict]:
            source = WootricDataSource(options(sb, "responses", **extra))
            reader = source.streamReader(source.schema())
            return {row[0]: json.loads(row[-1]) for w in reader.partitions(start, end) for row in reader.read(w)}

        assert micro_batch() == {}
        sb.dataset.update("responses", ids=edited[:1], at=now)
        again = micro_batch(lookback_days=2)
        truth = {str(r["id"]): r for r in sb.dataset.records("responses")}
    assert set(again) == {str(i) for i in edited}
    assert again[str(edited[0])] == truth[str(edited[0])] and "tags" in again[str(edited[0])]


def test_credentials_given_as_options_never_show_in_plans_logs_or_errors(wootric, sandbox, capfd):
    c = sandbox.credentials
    for key in SECRET_OPTIONS:
        patterns = [
            wootric.conf.get("spark.redaction.regex", SPARK_REDACTION_DEFAULT),
            wootric.conf.get(OPTIONS_REDACTION),
        ]
        assert any(re.search(p, key) for p in patterns), key
    opts = options(sandbox, "declines")
    client_opts = {k: v for k, v in opts.items() if k not in ("username", "password")}
    client_opts.update(client_id=c.client_id, client_secret=c.client_secret)
    secrets = [c.password, c.client_secret, c.account_token]
    shown = []
    for source in (batch(wootric, opts), wootric.readStream.format("wootric").options(**client_opts).load()):
        for mode in ("simple", "extended", "formatted", "cost", "codegen"):
            source.explain(mode)
        shown.append(str(source))
    batch(wootric, client_opts).where(F.col("id").isNotNull()).collect()
    failures = []
    for bad in ({**opts, "bogus": "1"}, {**opts, "password": c.password + "-wrong"}, {**client_opts, "stream": "x"}):
        with pytest.raises(PySparkException) as failure:
            batch(wootric, bad).collect()
        failures.append(str(failure.value))
    out, err = capfd.readouterr()
    text = "\n".join([out, err, *shown, *failures])
    assert "BatchScan wootric" in text and "Wootric rejected the credentials" in text
    for secret in [*secrets, c.password + "-wrong"]:
        assert secret not in text


def test_a_missing_or_unknown_option_fails_at_load_naming_the_option(wootric, sandbox):
    for opts, named in (
        ({k: v for k, v in options(sandbox, "responses").items() if k != "stream"}, "stream: is required"),
        ({**options(sandbox, "responses"), "start_dat": "2024-01-01"}, "start_dat: unknown option"),
        ({k: v for k, v in options(sandbox, "responses").items() if k != "start_date"}, "start_date: is required"),
        ({**options(sandbox, "responses"), "stream": "nps_summary"}, "stream: no such stream"),
        ({k: v for k, v in options(sandbox, "responses").items() if k != "password"}, "password: is required"),
        ({**options(sandbox, "responses"), "max_concurrency": "0"}, "max_concurrency: must be a whole number >= 1"),
    ):
        with pytest.raises(AnalysisException, match=re.escape(named)):
            wootric.read.format("wootric").options(**opts).load()


def test_bad_credentials_fail_before_any_partition_runs(wootric, sandbox):
    sandbox.stats.reset()
    with pytest.raises(AnalysisException, match="Wootric rejected the credentials"):
        batch(wootric, {**options(sandbox, "responses"), "password": "not-the-password"}).collect()
    with pytest.raises(PySparkException, match="Wootric rejected the credentials"):
        wootric.readStream.format("wootric").options(
            **{**options(sandbox, "responses"), "password": "not-the-password"}
        ).load().writeStream.format("console").start().awaitTermination(60)
    assert "responses" not in sandbox.stats.snapshot()["by_endpoint"]


def test_an_unreachable_api_fails_the_read_with_the_jobs_bounded_retry_error(wootric, sandbox):
    opts = {**options(sandbox, "responses"), "base_url": "http://127.0.0.1:1", "retry_give_up_seconds": "1"}
    started = time.monotonic()
    with pytest.raises(AnalysisException, match=r"POST /oauth/token kept failing for \d+ s .*giving up"):
        batch(wootric, opts).collect()
    assert time.monotonic() - started < 30


def test_the_job_config_supplies_the_api_settings_and_start_date(wootric, sandbox, tmp_path):
    data = config_dict()
    data["source"]["api"] = {
        "base_url": sandbox.base_url,
        "auth": {"username": sandbox.credentials.username, "password": sandbox.credentials.password},
        "requests_per_minute": 6000,
    }
    data["source"]["start_date"] = "2025-06-01T00:00:00Z"
    path = tmp_path / "wootric.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    df = wootric.read.format("wootric").option("stream", "declines").option("config", str(path)).load()
    ids = {r["id"] for r in df.collect()}
    with pytest.raises(AnalysisException, match="password: comes from the config file"):
        wootric.read.format("wootric").options(stream="declines", config=str(path), password="x").load()
    since = datetime(2025, 6, 1, tzinfo=timezone.utc).timestamp()
    assert ids == {str(r["id"]) for r in sandbox.dataset.records("declines") if _created(r) >= since}


def _created(record: dict) -> float:
    from wootric_ingest.api.timestamps import unix_seconds

    return unix_seconds(record["created_at"])


def test_streaming_partitions_replay_the_same_windows_and_look_back_from_the_start(sandbox):
    reader = WootricDataSource(options(sandbox, "responses", lookback_days=2, max_concurrency=3)).streamReader(
        row_schema(STREAMS["responses"])
    )
    start, end = {"cursor": 1_750_000_000}, {"cursor": 1_750_000_000 + 7200}

    def spans(parts: list[WindowPartition]) -> list[tuple[int, int, float]]:
        return [(p.lo, p.hi, p.share) for p in parts]

    planned = spans(reader.partitions(start, end))
    assert planned == spans(reader.partitions(start, end))
    assert planned[0][0] == start["cursor"] + 1 - 2 * 86400 and planned[-1][1] == end["cursor"]
    assert all(a[1] + 1 == b[0] for a, b in zip(planned, planned[1:])) and len(planned) == 3
    assert reader.partitions(end, end) == []
    assert reader.initialOffset() == {"cursor": int(datetime(2024, 1, 1, tzinfo=timezone.utc).timestamp()) - 1}
    assert reader.latestOffset()["cursor"] <= time.time() - 60


def test_every_option_is_in_the_readme_table():
    from wootric_ingest.source.options import OPTIONS

    from conftest import REPO

    section = (REPO / "README.md").read_text(encoding="utf-8").split("## Spark data source", 1)[1].split("\n## ", 1)[0]
    documented = {
        name for row in re.findall(r"^\| (.+?) \|", section, flags=re.M) for name in re.findall(r"`(\w+)`", row)
    }
    assert set(OPTIONS) <= documented


def test_the_readme_merge_absorbs_records_a_look_back_emits_again(wootric, tmp_path):
    """The README's `upsert` on a micro-batch whose look-back re-emits recent records (one of them edited since the
    table was written) beside new ones."""
    from conftest import REPO

    section = (REPO / "README.md").read_text(encoding="utf-8").split("## Spark data source", 1)[1]
    code = next(block for block in re.findall(r"```python\n(.*?)```", section, flags=re.S) if "def upsert" in block)
    table = str(tmp_path / "silver")
    namespace: dict = {}
    at_path = code.split("\n\n\n(", 1)[0].replace(
        'forName(batch.sparkSession, "main.silver.wootric_responses")', "forPath(batch.sparkSession, TABLE)"
    )
    namespace["TABLE"] = table
    exec(at_path, namespace)
    with Sandbox(SandboxOptions(end_users=30, responses=80, declines=0, seed=24)) as sb:
        now = int(time.time())
        recent = sb.dataset.add("responses", n=3, at=now - 86400)
        batch(wootric, options(sb, "responses")).write.format("delta").save(table)
        sb.dataset.update("responses", ids=recent[:1], at=now)
        sb.dataset.add("responses", n=2, at=now)
        since = datetime.fromtimestamp(now - 2 * 86400, timezone.utc).isoformat()
        namespace["upsert"](batch(wootric, {**options(sb, "responses"), "start_date": since}), 1)
        truth = {str(r["id"]): r for r in sb.dataset.records("responses")}
    rows = rows_by_id(wootric.read.format("delta").load(table).collect())
    assert set(rows) == set(truth)
    for rid, record in truth.items():
        assert json.loads(rows[rid]["_raw"]) == record, rid
