"""Hostile answers from the API, over HTTP from the sandbox: a truncated body, a proxy's HTML page with status
200, a 200 carrying an error envelope, a page that repeats the previous one, a token endpoint that times out,
a 429 without rate-limit headers, a server that stops mid-body. Once, each costs a retry and nothing else:
every record still arrives exactly once. For good, each ends after a bounded time in an error that names the
endpoint, and a job run then writes nothing for that stream, keeps its staging and says why."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from sandbox import Sandbox, SandboxOptions
from wootric_ingest.api import GaveUp, RetryPolicy, WootricClient, WootricError
from wootric_ingest.config import ApiConfig, Auth
from wootric_ingest.streams import STREAMS

from conftest import table_path

SINCE = datetime(2024, 1, 1, tzinfo=timezone.utc)
UNTIL = datetime.now(timezone.utc) + timedelta(days=1)
RESPONSES = STREAMS["responses"]
QUICK = RetryPolicy(first_delay=0.01, max_delay=0.05, give_up_after=2.0)

LIST_FAULTS = (
    "truncated_json",
    "html_200",
    "error_envelope_200",
    "stop_mid_body",
    "status_429_no_headers",
    "status_500",
    "status_503",
    "reset",
    "timeout",
)


def client_for(sb: Sandbox, retry: RetryPolicy = QUICK) -> WootricClient:
    api = ApiConfig(
        base_url=sb.base_url,
        auth=Auth(username=sb.credentials.username, password=sb.credentials.password),
        max_concurrency=2,
        timeout_seconds=0.5,
    )
    return WootricClient(api, retry=retry)


def fetch(client: WootricClient, stream=RESPONSES) -> list[dict]:
    client.authenticate()
    return [r for batch in client.pages(stream, SINCE, UNTIL) for r in batch.records]


def warm_up(client: WootricClient) -> None:
    """A first extraction, so the client knows the rate-limit window before anything goes wrong (without one,
    a 429 without headers waits the minute the API documents)."""
    fetch(client, STREAMS["end_users"])


def exactly(records: list[dict]) -> Counter:
    return Counter(json.dumps(r, sort_keys=True) for r in records)


def hostile_sandbox(**options) -> Sandbox:
    """Rate-limit headers on every answer with a one-second window, so a 429 costs a second, not a minute."""
    return Sandbox(
        SandboxOptions(
            **{
                "end_users": 60,
                "responses": 400,
                "declines": 0,
                "seed": 41,
                "rate_limit": 10_000,
                "rate_window": 1.0,
                "timeout_sleep": 1.0,
                **options,
            }
        )
    )


@pytest.mark.parametrize("fault", LIST_FAULTS)
def test_one_hostile_answer_costs_a_retry_and_loses_nothing(fault):
    with hostile_sandbox() as sb, client_for(sb, RetryPolicy(first_delay=0.01, max_delay=0.05, give_up_after=30)) as c:
        warm_up(c)
        sb.faults.script(fault, 2)
        got = fetch(c)
        assert sb.faults.injected().get(fault) == 2
        assert exactly(got) == exactly(sb.dataset.records("responses"))
        assert c.stats.snapshot()["retries"] + c.stats.snapshot()["throttled_429"] >= 2


@pytest.mark.parametrize("fault", LIST_FAULTS)
def test_a_hostile_answer_that_persists_ends_in_a_bounded_time_naming_the_endpoint(fault):
    with hostile_sandbox() as sb, client_for(sb) as c:
        warm_up(c)
        sb.faults.script(fault, 10_000, path="responses")
        began = time.monotonic()
        with pytest.raises(GaveUp, match=r"^GET /v1/responses kept failing for \d+ s over \d+ attempts") as gave_up:
            fetch(c)
        assert time.monotonic() - began < 10
        assert "?" not in str(gave_up.value), "the query string (filters) leaked into the message"


def test_a_token_endpoint_that_times_out_is_retried_then_named():
    with hostile_sandbox() as sb:
        with client_for(sb, RetryPolicy(first_delay=0.01, max_delay=0.05, give_up_after=30)) as c:
            sb.faults.script("token_timeout", 1)
            assert exactly(fetch(c)) == exactly(sb.dataset.records("responses"))
        with client_for(sb) as c:
            sb.faults.script("token_timeout", 10_000)
            with pytest.raises(GaveUp, match=r"^POST /oauth/token kept failing"):
                c.authenticate()


def test_a_page_that_repeats_the_previous_one_does_not_hide_the_page_it_replaced():
    """Only pages within one crowded second are asked for by number (page 2, 3, ...)."""
    with (
        hostile_sandbox(responses=300, burst_second=240) as sb,
        client_for(sb, RetryPolicy(first_delay=0.01, max_delay=0.05, give_up_after=30)) as c,
    ):
        sb.faults.script("repeat_previous_page", 2)
        got = fetch(c)
        assert sb.faults.injected().get("repeat_previous_page") == 2
        assert exactly(got) == exactly(sb.dataset.records("responses"))


def test_a_page_that_keeps_repeating_stops_the_walk_naming_it():
    with hostile_sandbox(responses=300, burst_second=240) as sb, client_for(sb) as c:
        sb.faults.script("repeat_previous_page", 10_000)
        with pytest.raises(
            WootricError,
            match="responses: GET responses answered page 2 with the page before it "
            "4 times in a row; stopping rather than skipping",
        ):
            fetch(c)


def test_a_first_run_whose_fetch_fails_leaves_an_empty_table_and_the_next_run_is_still_a_first_run(spark, make_config):
    """The table is prepared while the pages arrive, so it exists after a failed first fetch, with no row and no
    commit of ours; the next run plans a full sync (an overwrite, files by id range), not an incremental one."""
    from wootric_ingest.lake.state import SyncMode, read_state
    from wootric_ingest.run.job import run
    from wootric_ingest.run.planning import RunOptions

    from conftest import lakehouse

    only = RunOptions(streams=("responses",))
    with hostile_sandbox(end_users=5, responses=40, declines=5) as sb:
        config = make_config(sb, source={"api": {"retry_give_up_seconds": 2}})
        table = lakehouse(spark, config).table(config.stream("responses"))
        sb.faults.script("html_200", 10_000, path="responses")
        [failed] = run(config, spark, only)
        assert failed.status == "failed" and table.exists() and table.count() == 0
        assert read_state(table).unwritten

        sb.faults.clear()
        [again] = run(config, spark, only)
        assert (again.status, again.mode, again.reason) == (
            "ok",
            SyncMode.FULL,
            "first run: the table is empty and no run has committed to it yet",
        )
        assert again.table_rows == again.rows_inserted == 40
        assert [c.metadata["sync"] for c in table.commits()] == ["FULL"]
        assert not read_state(table).unwritten


def test_a_stream_whose_answers_stay_hostile_fails_alone_writes_nothing_and_the_next_run_completes_it(
    spark, make_config
):
    from wootric_ingest.run.job import run

    with hostile_sandbox(end_users=50, responses=150, declines=20) as sb:
        config = make_config(sb, source={"api": {"retry_give_up_seconds": 2}})
        assert [r.status for r in run(config, spark)] == ["ok", "ok", "ok"]
        responses = table_path(config, "responses")
        before = sorted(r["_raw"] for r in spark.read.format("delta").load(responses).collect())
        version = spark.sql(f"DESCRIBE HISTORY delta.`{responses}`").first()["version"]
        sb.dataset.add("responses", n=30)
        sb.dataset.update("end_users", n=5)
        sb.faults.script("html_200", 10_000, path="responses")

        failed = {r.stream_name: r for r in run(config, spark)}

        assert failed["responses"].status == "failed"
        assert failed["responses"].error.startswith("GaveUp: GET /v1/responses kept failing for ")
        assert "HTTP 200 without a JSON list" in failed["responses"].error
        assert (failed["end_users"].status, failed["declines"].status) == ("ok", "ok")
        assert spark.sql(f"DESCRIBE HISTORY delta.`{responses}`").first()["version"] == version
        assert sorted(r["_raw"] for r in spark.read.format("delta").load(responses).collect()) == before
        history = (
            spark.read.format("delta")
            .load(f"{config.catalog.root}/_wootric_ingest/runs")
            .where("stream = 'responses' AND status = 'failed'")
            .collect()
        )
        assert len(history) == 1 and "GET /v1/responses" in history[0]["error"]

        sb.faults.clear()
        assert [r.status for r in run(config, spark)] == ["ok", "ok", "ok"]
        rows = {r["id"]: json.loads(r["_raw"]) for r in spark.read.format("delta").load(responses).collect()}
        assert rows == {str(r["id"]): r for r in sb.dataset.records("responses")}
