"""The Wootric client against the sandbox over HTTP: nothing lost, nothing twice, at the rate-limit ceiling."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from datetime import datetime, timedelta, timezone

import pytest

from sandbox import Sandbox, SandboxOptions
from sandbox.data import UNREADABLE_TIME
from wootric_ingest.api import ApiError, CredentialsRejected, CrowdedSecond, GaveUp, RetryPolicy, WootricClient
from wootric_ingest.api.timestamps import unix_seconds
from wootric_ingest.api.windows import merged
from wootric_ingest.config import ApiConfig, Auth
from wootric_ingest.streams import STREAMS

SINCE = datetime(2024, 1, 1, tzinfo=timezone.utc)
FAST_RETRY = RetryPolicy(first_delay=0.01, max_delay=0.1, give_up_after=30)
RESPONSES, END_USERS, DECLINES = STREAMS["responses"], STREAMS["end_users"], STREAMS["declines"]


UNTIL = datetime.now(timezone.utc) + timedelta(days=1)  # past every record, even those churn moves to "now"
WHOLE_RANGE = [(math.floor(SINCE.timestamp()), math.floor(UNTIL.timestamp()))]


def client_for(
    sb: Sandbox,
    *,
    base_url: str | None = None,
    concurrency: int = 4,
    timeout: float = 5.0,
    retry: RetryPolicy = FAST_RETRY,
    **auth,
) -> WootricClient:
    c = sb.credentials
    auth = auth or {"username": c.username, "password": c.password}
    api = ApiConfig(
        base_url=base_url or sb.base_url,
        auth=Auth(**auth),
        max_concurrency=concurrency,
        requests_per_minute=100,
        timeout_seconds=timeout,
    )
    return WootricClient(api, retry=retry)


def extract(client: WootricClient, stream=RESPONSES, done=(), since=SINCE):
    """(every record id yielded, in order of arrival; the completed ranges reported)."""
    ids, completed = [], []
    client.authenticate()
    for batch in client.pages(stream, since, UNTIL, done):
        ids += [r["id"] for r in batch.records]
        if batch.completed:
            completed.append(batch.completed)
    return ids, completed


def test_twenty_thousand_responses_with_a_dense_hour_and_second_land_exactly_once_without_a_429():
    options = SandboxOptions(
        end_users=2000,
        responses=20_000,
        declines=0,
        burst_hour=3000,
        burst_second=300,
        rate_limit=100,
        rate_window=1.0,
        latency=0.01,
    )
    with Sandbox(options) as sb:
        client = client_for(sb, concurrency=8)
        ids, completed = extract(client)
        served = sb.stats.snapshot()
        truth = sb.dataset.ids("responses")

    assert len(truth) == 23_300
    assert len(ids) == len(set(ids)), "a record was yielded twice"
    assert set(ids) == truth
    assert served["served_429"] == 0 and client.stats.throttled_429 == 0
    stats = client.stats.snapshot()
    assert served["requests"] == stats["requests"]
    list_requests = served["by_endpoint"]["responses"]
    assert list_requests <= 1.05 * math.ceil(len(truth) / 50) + stats["windows"], stats
    assert stats["windows"] <= 40, "windows should be split only to fill idle workers"
    assert merged(completed) == WHOLE_RANGE


def test_completed_ranges_cover_the_whole_range_and_done_ranges_are_not_fetched_again():
    options = SandboxOptions(
        end_users=500, responses=4000, declines=0, rate_limit=100, rate_window=1.0, timestamp_forms="mixed"
    )
    with Sandbox(options) as sb:
        first = client_for(sb)
        first.authenticate()
        done, seen = [], set()
        for batch in first.pages(RESPONSES, SINCE, UNTIL):
            seen.update(r["id"] for r in batch.records)
            if batch.completed:
                done.append(batch.completed)
            if len(seen) > 1500:
                break
        done = merged(done)
        assert done and sum(hi - lo + 1 for lo, hi in done) > 0

        second = client_for(sb)
        second.authenticate()
        fetched, completed = [], []
        for batch in second.pages(RESPONSES, SINCE, UNTIL, done):
            fetched += batch.records
            if batch.completed:
                completed.append(batch.completed)
        truth = {r["id"]: r for r in sb.dataset.records("responses")}

    in_done = [r["id"] for r in fetched if any(lo <= unix_seconds(r["created_at"]) <= hi for lo, hi in done)]
    assert in_done == [], "records inside a done range were fetched again"
    assert seen | {r["id"] for r in fetched} == set(truth)
    assert merged(done + completed) == WHOLE_RANGE
    assert second.stats.records < len(truth) - 1000


def test_a_quiet_range_costs_one_request():
    with Sandbox(SandboxOptions(end_users=50, responses=0, declines=30, rate_limit=100, rate_window=1.0)) as sb:
        client = client_for(sb)
        ids, completed = extract(client, DECLINES)
        served = sb.stats.snapshot()
        assert set(ids) == sb.dataset.ids("declines") and len(ids) == 30
    assert served["by_endpoint"] == {"declines": 1, "token": 1}
    assert client.stats.windows == 1


def test_end_users_walked_by_updated_under_churn_lose_nothing_that_existed_throughout():
    options = SandboxOptions(
        end_users=4000,
        responses=0,
        declines=0,
        churn=5,
        churn_deletes=True,
        churn_delete_every=2,
        rate_limit=100,
        rate_window=1.0,
    )
    with Sandbox(options) as sb:
        before = sb.dataset.ids("end_users")
        client = client_for(sb, concurrency=4)
        ids, _ = extract(client, END_USERS)
        after = sb.dataset.ids("end_users")
        churned = sb.stats.snapshot()

    assert churned["churn_updates"] > 300 and churned["churn_deletes"] > 20
    throughout = before & after
    missing = throughout - set(ids)
    assert not missing, f"{len(missing)} end users that existed throughout were never fetched"


def test_a_crowded_second_of_end_users_is_read_from_both_ends():
    options = SandboxOptions(
        end_users=3000, responses=0, declines=0, burst_second=1600, rate_limit=100, rate_window=1.0
    )
    with Sandbox(options) as sb:
        at = sb.dataset.burst_second_at
        in_second = {r["id"] for r in sb.dataset.records("end_users") if unix_seconds(r["updated_at"]) == at}
        client = client_for(sb)
        ids, _ = extract(client, END_USERS)
        truth = sb.dataset.ids("end_users")
    assert len(in_second) > 1500
    assert len(ids) == len(set(ids)) and set(ids) == truth


def test_more_than_1500_responses_in_one_second_is_reported_not_truncated():
    options = SandboxOptions(
        end_users=2000, responses=1000, declines=0, burst_second=1600, rate_limit=100, rate_window=1.0
    )
    with Sandbox(options) as sb:
        client = client_for(sb)
        with pytest.raises(CrowdedSecond) as raised:
            extract(client)
        at = sb.dataset.burst_second_at
    error = raised.value
    assert error.stream_name == "responses" and error.second == at and error.reached == 1500
    assert "responses" in str(error) and str(at) in str(error)


def test_a_429_storm_5xx_bursts_broken_bodies_and_an_expiring_token_lose_nothing():
    options = SandboxOptions(
        end_users=500, responses=3000, declines=0, rate_limit=100, rate_window=1.0, timeout_sleep=5.0
    )
    with Sandbox(options) as sb:
        faults = sb.faults
        for kind, count in (
            ("status_429", 3),
            ("status_503", 3),
            ("status_500", 2),
            ("timeout", 1),
            ("reset", 2),
            ("expire_token", 1),
            ("status_429_no_headers", 1),
            ("truncated_json", 1),
            ("html_200", 1),
            ("stop_mid_body", 1),
            ("error_envelope_200", 1),
            ("expire_token", 1),
        ):
            faults.script(kind, count)
        faults.script("token_timeout", 1)
        client = client_for(sb, timeout=0.5)
        faults.consume_rate(95)
        ids, _ = extract(client)
        truth = sb.dataset.ids("responses")
        injected = faults.injected()
        served = sb.stats.snapshot()
    assert set(ids) == truth and len(ids) == len(truth)
    assert injected["expire_token"] == 2 and injected["status_429"] == 3 and injected["timeout"] == 1
    stats = client.stats.snapshot()
    assert stats["throttled_429"] >= 4 and stats["retries"] >= 12 and stats["token_refreshes"] >= 2
    assert served["served_429"] == stats["throttled_429"]


def test_tokens_are_renewed_before_they_expire():
    options = SandboxOptions(end_users=500, responses=3000, declines=0, rate_limit=20, rate_window=1.0, token_ttl=2)
    with Sandbox(options) as sb:
        client = client_for(sb)
        ids, _ = extract(client)
        served = sb.stats.snapshot()
        assert set(ids) == sb.dataset.ids("responses")
    assert served["served_401"] == 0, "a token was used after it expired"
    assert served["token_grants_by_type"].get("refresh_token", 0) >= 2
    assert served["token_grants_by_type"]["password"] == 1


def test_a_429_without_headers_waits_one_learnt_window_and_goes_on():
    options = SandboxOptions(end_users=100, responses=200, declines=60, rate_limit=100, rate_window=1.0)
    with Sandbox(options) as sb:
        client = client_for(sb)
        extract(client, DECLINES)
        sb.faults.script("status_429_no_headers", 2)
        started = time.monotonic()
        ids, _ = extract(client)
        assert set(ids) == sb.dataset.ids("responses")
    assert client.stats.throttled_429 == 2
    assert time.monotonic() - started < 10, "waited the assumed minute instead of the window the headers showed"


def test_persistent_5xx_gives_up_naming_the_endpoint():
    with Sandbox(SandboxOptions(end_users=50, responses=100, declines=0)) as sb:
        sb.faults.script("status_503", 1000)
        client = client_for(sb, retry=RetryPolicy(first_delay=0.01, max_delay=0.05, give_up_after=0.5))
        with pytest.raises(GaveUp, match=r"GET /v1/responses kept failing .*HTTP 503"):
            extract(client)


def test_the_configured_give_up_time_bounds_how_long_a_failing_request_is_retried():
    with Sandbox(SandboxOptions(end_users=50, responses=100, declines=0)) as sb:
        sb.faults.script("status_503", 1000)
        c = sb.credentials
        api = ApiConfig(
            base_url=sb.base_url, auth=Auth(username=c.username, password=c.password), retry_give_up_seconds=1
        )
        started = time.monotonic()
        with pytest.raises(GaveUp, match=r"GET /v1/responses kept failing"):
            extract(WootricClient(api))
    assert 1 <= time.monotonic() - started < 10


def test_a_4xx_fails_at_once_with_the_apis_message():
    bad_stream = dataclasses.replace(RESPONSES, sort_key="score")
    with Sandbox(SandboxOptions(end_users=50, responses=100, declines=0)) as sb:
        client = client_for(sb)
        with pytest.raises(ApiError, match="sort_key does not have a valid value") as raised:
            extract(client, bad_stream)
    assert raised.value.status == 400 and client.stats.retries == 0


@pytest.mark.parametrize("status", [401, 400])
@pytest.mark.parametrize("grant", ["password", "client_credentials"])
def test_bad_credentials_are_rejected_at_once_without_the_secret(status, grant, caplog):
    with Sandbox(SandboxOptions(end_users=10, responses=10, declines=0, bad_credentials_status=status)) as sb:
        secret = "not-the-right-secret-x9"
        auth = (
            {"username": "demo@example.com", "password": secret}
            if grant == "password"
            else {"client_id": sb.credentials.client_id, "client_secret": secret}
        )
        client = client_for(sb, **auth)
        caplog.set_level(logging.DEBUG)
        with pytest.raises(CredentialsRejected) as raised:
            client.authenticate()
        requests = sb.stats.snapshot()["requests"]
    principal = auth.get("username") or auth["client_id"]
    assert str(raised.value) == f"Wootric rejected the credentials for {principal}"
    assert secret not in str(raised.value) and secret not in caplog.text
    assert requests == 1


def test_client_credentials_and_an_account_token_sign_in():
    with Sandbox(SandboxOptions(end_users=50, responses=120, declines=0)) as sb:
        c = sb.credentials
        ids, _ = extract(client_for(sb, client_id=c.client_id, client_secret=c.client_secret))
        assert set(ids) == sb.dataset.ids("responses")
        ids, _ = extract(client_for(sb, username=c.username, password=c.password, account_token=c.account_token))
        assert set(ids) == sb.dataset.ids("responses")
        with pytest.raises(CredentialsRejected):
            client_for(sb, username=c.username, password=c.password, account_token="NPS-00000000").authenticate()


def test_an_eu_account_is_served_under_api_v1():
    with Sandbox(SandboxOptions(end_users=300, responses=500, declines=0, region="eu")) as sb:
        client = client_for(sb, base_url=sb.base_url + "/api")
        ids, _ = extract(client)
        assert set(ids) == sb.dataset.ids("responses")
        with pytest.raises(ApiError, match="404"):
            extract(client_for(sb))


def test_slow_pages_are_fetched_in_parallel_at_the_ceiling():
    options = SandboxOptions(end_users=500, responses=10_000, declines=0, rate_limit=100, rate_window=2.0, latency=0.25)
    with Sandbox(options) as sb:
        client = client_for(sb, concurrency=24)
        started = time.monotonic()
        ids, _ = extract(client)
        wall = time.monotonic() - started
        served = sb.stats.snapshot()
        assert set(ids) == sb.dataset.ids("responses") and len(ids) == len(set(ids))
    floor = served["requests"] / (100 / 2.0)
    assert served["served_429"] == 0 and served["max_in_flight"] >= 8
    assert wall < 1.3 * floor + 2, (wall, floor)


@pytest.mark.parametrize("stream", [END_USERS, RESPONSES, DECLINES], ids=lambda s: s.name)
def test_records_whose_cursor_cannot_be_read_are_fetched_exactly_once_wherever_they_lie(stream):
    """End users are walked oldest first, responses and declines newest first; a crowded second is paged through
    by page numbers. The sandbox filters and sorts a garbled record by its real time, as the API's server would."""
    with Sandbox(SandboxOptions(end_users=300, responses=300, declines=300, seed=3)) as sb:

        def in_walk_order() -> list[dict]:
            """The stream's records in the order the walk meets them."""
            return sb.dataset.query(
                stream.name, sort_key=stream.cursor_field, descending=stream is not END_USERS, page=1, per_page=10**6
            )

        crowded_at = unix_seconds(in_walk_order()[150][stream.cursor_field])
        sb.dataset.add(stream.name, n=160, at=crowded_at)
        met = in_walk_order()
        at = {r["id"]: unix_seconds(r[stream.cursor_field]) for r in met}
        crowd = [r["id"] for r in met if at[r["id"]] == crowded_at]
        # First on a page, in the middle, last on a full page, first of the next page, the last of all, and
        # inside the crowded second: its first, a few further on, its last.
        odd = {met[i]["id"] for i in (0, 25, 49, 50, len(met) - 1)} | {crowd[i] for i in (0, 49, 50, 99, -1)}
        assert sb.dataset.garble(stream.name, ids=odd)
        alone = met[25]["id"]
        assert [rid for rid, second in at.items() if second == at[alone]] == [alone]

        client = client_for(sb, concurrency=4)
        ids, completed = extract(client, stream)
        everything_but_its_second = [(WHOLE_RANGE[0][0], at[alone] - 1), (at[alone] + 1, WHOLE_RANGE[0][1])]
        only, only_completed = extract(client_for(sb), stream, done=everything_but_its_second)
        served = sb.dataset.records(stream.name)

    assert sum(1 for r in served if r[stream.cursor_field] == UNREADABLE_TIME) == len(odd) == 10
    assert len(ids) == len(set(ids)) and set(ids) == {r["id"] for r in served}
    assert merged(completed) == WHOLE_RANGE
    assert (only, only_completed) == ([alone], [(at[alone], at[alone])]), "a window holding just the odd record"
