"""The sandbox Wootric API, pinned over real HTTP: auth, paging, filters, order, rate limit, faults, data."""

from __future__ import annotations

import calendar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests

from sandbox import Credentials, Dataset, Sandbox, SandboxOptions
from sandbox.data import UNREADABLE_TIME

SMALL = dict(end_users=120, responses=300, declines=40, seed=11)
PACIFIC = ZoneInfo("America/Los_Angeles")
RUBY = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [-+]\d{4}")
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[-+]\d\d:\d\d")
NAIVE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
PAGE_31 = {
    "type": "error_list",
    "errors": [{"status": "bad_request", "message": "page does not have a valid value", "field": "page"}],
}
INVALID_TOKEN = {"error": "invalid_token", "error_description": "Your access token is wrong"}
RATE_HEADERS = ("X-Rate-Limit-Limit", "X-Rate-Limit-Remaining", "X-Rate-Limit-Reset")


def utc(*fields: int) -> int:
    return calendar.timegm((*fields, 0, 0, 0)[:6])


def epoch(text: str) -> int:
    """Any of the API's three timestamp forms, as Unix seconds."""
    if RUBY.fullmatch(text):
        return int(datetime.strptime(text, "%Y-%m-%d %H:%M:%S %z").timestamp())
    if ISO.fullmatch(text):
        return int(datetime.fromisoformat(text).timestamp())
    assert NAIVE.fullmatch(text), text
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=PACIFIC).timestamp())


def grant(sb: Sandbox, **form) -> requests.Response:
    form = form or {"grant_type": "password", "username": sb.credentials.username, "password": sb.credentials.password}
    return requests.post(sb.token_url, data=form, timeout=5)


def token(sb: Sandbox) -> str:
    response = grant(sb)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def get(sb: Sandbox, stream: str, tok: str | None, timeout: float = 5, **params) -> requests.Response:
    headers = {"Authorization": f"Bearer {tok}"} if tok else {}
    return requests.get(f"{sb.api_url}/{stream}", params=params, headers=headers, timeout=timeout)


def fetch_all(sb: Sandbox, tok: str, stream: str, **params) -> list[dict]:
    """Every page of one query, the way a client stops: at an empty or short page."""
    records = []
    for page in range(1, 31):
        response = get(sb, stream, tok, page=page, per_page=50, **params)
        assert response.status_code == 200, response.text
        records += response.json()
        if len(response.json()) < 50:
            return records
    raise AssertionError("query needs more than 30 pages")


@pytest.fixture(scope="module")
def sb():
    with Sandbox(SandboxOptions(**SMALL, burst_second=20)) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def tok(sb):
    return token(sb)


@pytest.fixture
def faulty():
    with Sandbox(SandboxOptions(**SMALL, timeout_sleep=3)) as sandbox:
        yield sandbox, token(sandbox)


# ------------------------------------------------------------------------------------------ auth


def test_password_grant_answers_the_documented_body(sb):
    response = grant(sb)
    body = response.json()
    assert response.status_code == 200
    assert list(body) == ["access_token", "token_type", "expires_in", "refresh_token", "scope", "created_at"]
    assert re.fullmatch(r"[0-9a-f]{64}", body["access_token"])
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("Bearer", 7200, "read export")
    assert abs(body["created_at"] - time.time()) < 5


def test_password_grant_checks_the_account_token_given_on_the_url(sb):
    form = {"grant_type": "password", "username": sb.credentials.username, "password": sb.credentials.password}
    right = requests.post(sb.token_url, params={"account_token": sb.credentials.account_token}, data=form)
    wrong = requests.post(sb.token_url, params={"account_token": "NPS-00000000"}, data=form)
    assert right.status_code == 200
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_grant")


def test_client_credentials_grant_carries_no_refresh_token(sb):
    response = grant(
        sb,
        grant_type="client_credentials",
        client_id=sb.credentials.client_id,
        client_secret=sb.credentials.client_secret,
    )
    assert response.status_code == 200
    assert "refresh_token" not in response.json()
    assert get(sb, "declines", response.json()["access_token"]).status_code == 200


def test_refresh_token_works_once(sb):
    first = grant(sb).json()
    refreshed = grant(sb, grant_type="refresh_token", refresh_token=first["refresh_token"])
    replayed = grant(sb, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert refreshed.status_code == 200
    assert refreshed.json()["refresh_token"] != first["refresh_token"]
    assert get(sb, "declines", refreshed.json()["access_token"]).status_code == 200
    assert (replayed.status_code, replayed.json()["error"]) == (401, "invalid_grant")


@pytest.mark.parametrize("status", [401, 400])
def test_bad_credentials_answer_the_configured_status(status):
    with Sandbox(SandboxOptions(**SMALL, bad_credentials_status=status)) as sandbox:
        bad_password = grant(sandbox, grant_type="password", username=sandbox.credentials.username, password="wrong")
        bad_client = grant(sandbox, grant_type="client_credentials", client_id="nope", client_secret="nope")
    assert bad_password.status_code == status
    assert bad_password.json()["error"] == "invalid_grant"
    assert bad_password.json()["error_description"].startswith(
        "The provided authorization grant is invalid, expired, revoked"
    )
    assert (bad_client.status_code, bad_client.json()["error"]) == (status, "invalid_client")


def test_credentials_in_the_query_string_are_refused(sb):
    creds = sb.credentials
    response = requests.post(
        sb.token_url, params={"grant_type": "password", "username": creds.username, "password": creds.password}
    )
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")


def test_malformed_token_requests_are_400(sb):
    assert grant(sb, grant_type="authorization_code").json()["error"] == "unsupported_grant_type"
    missing = grant(sb, grant_type="password", username=sb.credentials.username)
    assert (missing.status_code, missing.json()["error"]) == (400, "invalid_request")
    as_json = requests.post(
        sb.token_url,
        json={"grant_type": "password", "username": sb.credentials.username, "password": sb.credentials.password},
    )
    assert as_json.status_code == 400


def test_list_endpoints_need_a_known_token(sb, tok):
    for response in (get(sb, "responses", None), get(sb, "responses", "f" * 64)):
        assert (response.status_code, response.json()) == (401, INVALID_TOKEN)
    by_query = requests.get(f"{sb.api_url}/responses", params={"access_token": tok})
    assert by_query.status_code == 200


def test_an_expired_token_gets_401():
    with Sandbox(SandboxOptions(**SMALL, token_ttl=1)) as sandbox:
        tok = token(sandbox)
        assert get(sandbox, "end_users", tok).status_code == 200
        time.sleep(1.1)
        response = get(sandbox, "end_users", tok)
    assert (response.status_code, response.json()) == (401, INVALID_TOKEN)


# ------------------------------------------------------------------------------------------ paging


def test_lists_are_bare_arrays_of_25_by_default_and_per_page_is_clamped_to_50(sb, tok):
    assert len(get(sb, "responses", tok).json()) == 25
    assert len(get(sb, "responses", tok, per_page=100).json()) == 50
    assert get(sb, "responses", tok, per_page=0).json()["errors"][0]["field"] == "per_page"


@pytest.mark.parametrize("page", ["31", "0", "-1", "abc", "1.5", ""])
def test_pages_outside_1_to_30_answer_the_exact_400(sb, tok, page):
    response = get(sb, "responses", tok, page=page)
    assert (response.status_code, response.json()) == (400, PAGE_31)


def test_page_30_is_served_and_the_end_is_an_empty_page(sb, tok):
    assert get(sb, "responses", tok, page=30, per_page=50).json() == []


def test_walking_every_page_yields_every_record_once(sb, tok):
    for stream in ("end_users", "responses", "declines"):
        ids = [record["id"] for record in fetch_all(sb, tok, stream)]
        assert len(ids) == len(set(ids))
        assert set(ids) == sb.dataset.ids(stream)


# ----------------------------------------------------------------------------------------- filters


@pytest.mark.parametrize(
    "op, keep", [("eq", int.__eq__), ("lt", int.__lt__), ("lte", int.__le__), ("gt", int.__gt__), ("gte", int.__ge__)]
)
def test_created_filter_operators_on_a_second_shared_by_20_records(sb, tok, op, keep):
    pivot = sb.dataset.burst_second_at
    expected = {r["id"] for r in sb.dataset.records("responses") if keep(epoch(r["created_at"]), pivot)}
    got = {r["id"] for r in fetch_all(sb, tok, "responses", **{f"created[{op}]": pivot})}
    assert got == expected
    if op == "eq":
        assert len(got) == 20


def test_filters_are_anded_and_end_users_filter_on_updated(sb, tok):
    users = sb.dataset.records("end_users")
    created = sorted(epoch(u["created_at"]) for u in users)
    updated = sorted(epoch(u["updated_at"]) for u in users)
    lo, hi, since = created[20], created[90], updated[50]
    expected = {u["id"] for u in users if lo <= epoch(u["created_at"]) < hi and epoch(u["updated_at"]) > since}
    got = fetch_all(sb, tok, "end_users", **{"created[gte]": lo, "created[lt]": hi, "updated[gt]": since})
    assert {u["id"] for u in got} == expected and 0 < len(expected) < 70
    only_updated = fetch_all(sb, tok, "end_users", **{"updated[lte]": since})
    assert {u["id"] for u in only_updated} == {u["id"] for u in users if epoch(u["updated_at"]) <= since}


@pytest.mark.parametrize("stream", ["responses", "declines"])
def test_responses_and_declines_silently_ignore_updated(sb, tok, stream):
    plain = get(sb, stream, tok, per_page=50).json()
    assert get(sb, stream, tok, per_page=50, **{"updated[gte]": 4_000_000_000}).json() == plain
    assert get(sb, stream, tok, per_page=50, **{"updated[gte]": "not-a-number"}).json() == plain


@pytest.mark.parametrize(
    "name, value",
    [("created[gte]", "2025-01-01"), ("created[gte]", "1.5"), ("created[after]", "1"), ("updated[lt]", "")],
)
def test_bad_filters_are_400_error_lists(sb, tok, name, value):
    response = get(sb, "end_users", tok, **{name: value})
    assert response.status_code == 400
    assert response.json() == {
        "type": "error_list",
        "errors": [{"status": "bad_request", "message": f"{name} does not have a valid value", "field": name}],
    }


def test_email_filter_on_end_users(sb, tok):
    user = next(u for u in sb.dataset.records("end_users") if u["email"])
    assert [u["id"] for u in get(sb, "end_users", tok, email=user["email"]).json()] == [user["id"]]


# ------------------------------------------------------------------------------------------- order


def test_end_users_default_to_email_ascending_with_nulls_last(sb, tok):
    emails = [u["email"] for u in fetch_all(sb, tok, "end_users")]
    known = [e for e in emails if e is not None]
    assert known == sorted(known) and emails == known + [None] * (len(emails) - len(known))
    descending = fetch_all(sb, tok, "end_users", sort_order="desc")
    assert [u["id"] for u in descending] == [u["id"] for u in fetch_all(sb, tok, "end_users")][::-1]


@pytest.mark.parametrize("key", ["created_at", "updated_at"])
def test_end_users_sort_by_time_both_ways(sb, tok, key):
    ascending = fetch_all(sb, tok, "end_users", sort_key=key)
    times = [epoch(u[key]) for u in ascending]
    assert times == sorted(times)
    descending = fetch_all(sb, tok, "end_users", sort_key=key, sort_order="desc")
    assert [u["id"] for u in descending] == [u["id"] for u in ascending][::-1]


@pytest.mark.parametrize("stream", ["responses", "declines"])
def test_responses_and_declines_are_newest_first_whatever_sort_order_says(sb, tok, stream):
    newest_first = fetch_all(sb, tok, stream)
    times = [epoch(r["created_at"]) for r in newest_first]
    assert times == sorted(times, reverse=True)
    assert fetch_all(sb, tok, stream, sort_key="created_at", sort_order="asc") == newest_first
    assert get(sb, stream, tok, sort_key="updated_at").status_code == 400


def test_ties_in_one_second_follow_a_hidden_order_that_desc_exactly_reverses():
    options = SandboxOptions(**{**SMALL, "end_users": 400}, burst_second=120, honour_sort_order_everywhere=True)
    with Sandbox(options) as sandbox:
        tok, second = token(sandbox), sandbox.dataset.burst_second_at
        asc = [r["id"] for r in fetch_all(sandbox, tok, "responses", sort_order="asc", **{"created[eq]": second})]
        desc = [r["id"] for r in fetch_all(sandbox, tok, "responses", **{"created[eq]": second})]
        users = {
            order: [
                u["id"]
                for u in fetch_all(
                    sandbox, tok, "end_users", sort_key="updated_at", sort_order=order, **{"updated[eq]": second}
                )
            ]
            for order in ("asc", "desc")
        }
    assert len(asc) == 120 and desc == asc[::-1]
    assert asc not in (sorted(asc), sorted(asc, reverse=True))  # not id order, either way
    assert len(users["asc"]) == 120 and users["desc"] == users["asc"][::-1]
    assert users["asc"] not in (sorted(users["asc"]), sorted(users["asc"], reverse=True))


# -------------------------------------------------------------------------------------- timestamps


def test_timestamps_are_ruby_time_in_pacific_time_with_daylight_saving():
    with Sandbox(SandboxOptions(**SMALL)) as sandbox:
        tok = token(sandbox)
        january = sandbox.dataset.add("responses", n=1, at=utc(2025, 1, 15, 12))
        august = sandbox.dataset.add("responses", n=1, at=utc(2025, 8, 15, 12))
        got = {
            r["id"]: r
            for stamp in (utc(2025, 1, 15, 12), utc(2025, 8, 15, 12))
            for r in get(sandbox, "responses", tok, **{"created[eq]": stamp}).json()
        }
    assert got[january[0]]["created_at"] == "2025-01-15 04:00:00 -0800"
    assert got[august[0]]["created_at"] == "2025-08-15 05:00:00 -0700"


def test_every_timestamp_is_ruby_form_by_default(sb):
    stamps = [
        u[k]
        for u in sb.dataset.records("end_users")
        for k in ("created_at", "updated_at", "last_surveyed", "last_seen_at")
    ]
    stamps += [r[k] for r in sb.dataset.records("responses") for k in ("created_at", "updated_at")]
    stamps += [n["created_at"] for r in sb.dataset.records("responses") for n in r["notes"]]
    assert all(RUBY.fullmatch(s) for s in stamps if s is not None)
    assert {s[-5:] for s in stamps if s} == {"-0800", "-0700"}


def test_mixed_timestamp_forms_render_the_same_instants():
    ruby = Dataset(**SMALL).records("responses")
    mixed = Dataset(**SMALL, timestamp_forms="mixed").records("responses")
    forms = Counter(
        "ruby" if RUBY.fullmatch(r["created_at"]) else "iso" if ISO.fullmatch(r["created_at"]) else "naive"
        for r in mixed
    )
    assert set(forms) == {"ruby", "iso", "naive"} and forms["ruby"] > len(mixed) / 2
    assert [epoch(r["created_at"]) for r in mixed] == [epoch(r["created_at"]) for r in ruby]


# -------------------------------------------------------------------------------------- rate limit


def test_rate_limit_headers_then_429_then_a_fresh_window():
    with Sandbox(SandboxOptions(**SMALL, rate_limit=4, rate_window=1.5)) as sandbox:
        token_response = grant(sandbox)  # counts, announces nothing
        tok = token_response.json()["access_token"]
        served = [get(sandbox, "responses", tok) for _ in range(4)]
        unauthorized = get(sandbox, "responses", None)
        reset = int(served[-1].headers["X-Rate-Limit-Reset"])
        time.sleep(max(0.0, reset - time.time()) + 0.01)
        fresh = get(sandbox, "responses", tok)
        stats = sandbox.stats.snapshot()
    assert not any(h in token_response.headers for h in RATE_HEADERS)
    assert [r.status_code for r in served] == [200, 200, 200, 429]
    assert [r.headers["X-Rate-Limit-Remaining"] for r in served] == ["2", "1", "0", "0"]
    assert all(r.headers["X-Rate-Limit-Limit"] == "4" for r in served)
    limited = served[-1]
    assert limited.content == b"" and "Retry-After" not in limited.headers
    assert unauthorized.status_code == 429  # 429s count too: still over the limit
    assert (fresh.status_code, fresh.headers["X-Rate-Limit-Remaining"]) == (200, "3")
    assert int(fresh.headers["X-Rate-Limit-Reset"]) > reset - 1
    assert stats["served_429"] == 2


def test_401s_carry_rate_limit_headers_and_other_clients_eat_the_window():
    with Sandbox(SandboxOptions(**SMALL, rate_limit=10, rate_window=60)) as sandbox:
        tok = token(sandbox)
        unauthorized = get(sandbox, "declines", None)
        sandbox.faults.consume_rate(7)
        last = get(sandbox, "declines", tok)
        over = get(sandbox, "declines", tok)
    assert (unauthorized.status_code, unauthorized.headers["X-Rate-Limit-Remaining"]) == (401, "8")
    assert int(unauthorized.headers["X-Rate-Limit-Reset"]) >= time.time() + 55
    assert (last.status_code, last.headers["X-Rate-Limit-Remaining"]) == (200, "0")
    assert over.status_code == 429


# ------------------------------------------------------------------------------------------ faults


@pytest.mark.parametrize(
    "kind, status", [("status_500", 500), ("status_503", 503), ("status_429", 429), ("status_429_no_headers", 429)]
)
def test_scripted_status_faults(faulty, kind, status):
    sandbox, tok = faulty
    sandbox.faults.script(kind, count=2)
    answers = [get(sandbox, "responses", tok) for _ in range(3)]
    assert [r.status_code for r in answers] == [status, status, 200]
    if kind == "status_429":
        assert int(answers[0].headers["X-Rate-Limit-Remaining"]) == 0
        assert 0 <= int(answers[0].headers["X-Rate-Limit-Reset"]) - time.time() <= 61
    if kind == "status_429_no_headers":
        assert not any(h in answers[0].headers for h in RATE_HEADERS) and answers[0].content == b""
    assert sandbox.faults.injected() == {kind: 2}


def test_proxy_pages_carry_no_rate_limit_headers():
    with Sandbox(SandboxOptions(**SMALL, rate_limit=50, rate_window=60)) as sandbox:
        tok = token(sandbox)
        for kind in ("status_500", "status_503", "html_200"):
            sandbox.faults.script(kind)
        app_error, proxy_error, proxy_page = (get(sandbox, "responses", tok) for _ in range(3))
    assert app_error.status_code == 500 and "X-Rate-Limit-Remaining" in app_error.headers
    assert proxy_error.status_code == 503 and proxy_page.status_code == 200
    assert not any(h in r.headers for r in (proxy_error, proxy_page) for h in RATE_HEADERS)


def test_scripted_faults_can_aim_at_one_stream(faulty):
    sandbox, tok = faulty
    sandbox.faults.script("status_500", path="declines")
    assert get(sandbox, "responses", tok).status_code == 200
    assert get(sandbox, "declines", tok).status_code == 500
    assert sandbox.faults.pending() == []


def test_timeout_holds_the_request_past_the_client_timeout(faulty):
    sandbox, tok = faulty
    sandbox.faults.script("timeout")
    with pytest.raises(requests.exceptions.ReadTimeout):
        get(sandbox, "responses", tok, timeout=0.3)
    assert get(sandbox, "responses", tok).status_code == 200


def test_token_timeout_hits_only_the_token_endpoint(faulty):
    sandbox, tok = faulty
    sandbox.faults.script("token_timeout")
    assert get(sandbox, "responses", tok).status_code == 200
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(
            sandbox.token_url,
            data={
                "grant_type": "password",
                "username": sandbox.credentials.username,
                "password": sandbox.credentials.password,
            },
            timeout=0.3,
        )
    assert grant(sandbox).status_code == 200


def test_reset_closes_the_socket_without_an_answer(faulty):
    sandbox, tok = faulty
    sandbox.faults.script("reset")
    with pytest.raises(requests.exceptions.ConnectionError):
        get(sandbox, "responses", tok)
    assert get(sandbox, "responses", tok).status_code == 200


def test_truncated_json_is_a_200_with_half_a_body(faulty):
    sandbox, tok = faulty
    whole = get(sandbox, "responses", tok).content
    sandbox.faults.script("truncated_json")
    cut = get(sandbox, "responses", tok)
    assert cut.status_code == 200 and cut.content == whole[: len(whole) // 2]
    with pytest.raises(ValueError):
        cut.json()


def test_stop_mid_body_breaks_the_promised_content_length(faulty):
    sandbox, tok = faulty
    sandbox.faults.script("stop_mid_body")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        get(sandbox, "responses", tok)
    assert get(sandbox, "responses", tok).status_code == 200


def test_html_and_error_envelope_200s(faulty):
    sandbox, tok = faulty
    sandbox.faults.script("html_200")
    sandbox.faults.script("error_envelope_200")
    html, envelope = get(sandbox, "end_users", tok), get(sandbox, "end_users", tok)
    assert html.status_code == 200 and html.headers["Content-Type"].startswith("text/html")
    assert envelope.status_code == 200 and envelope.json() == {"errors": [{"message": "Internal error"}]}


def test_repeat_previous_page_serves_page_one_again_as_page_two(faulty):
    sandbox, tok = faulty
    sandbox.faults.script("repeat_previous_page")
    first = get(sandbox, "responses", tok, page=1).json()  # page 1 has no previous: not a match
    repeated = get(sandbox, "responses", tok, page=2).json()
    second = get(sandbox, "responses", tok, page=2).json()
    assert repeated == first and second != first


def test_expire_token_makes_the_next_request_find_its_token_expired(faulty):
    sandbox, tok = faulty
    sandbox.faults.script("expire_token")
    expired = get(sandbox, "responses", tok)
    assert (expired.status_code, expired.json()) == (401, INVALID_TOKEN)
    assert get(sandbox, "responses", tok).status_code == 401
    assert get(sandbox, "responses", token(sandbox)).status_code == 200


def test_unknown_fault_kinds_are_refused(faulty):
    with pytest.raises(ValueError):
        faulty[0].faults.script("status_418")


def test_error_rate_is_seeded_and_spares_nothing_at_one():
    def statuses(rate: float) -> list[int]:
        with Sandbox(SandboxOptions(**SMALL, error_rate=rate)) as sandbox:
            tok = token(sandbox)
            return [get(sandbox, "declines", tok).status_code for _ in range(12)]

    assert set(statuses(1.0)) <= {500, 502, 503, 504}
    half = statuses(0.5)
    assert half == statuses(0.5) and {200} < set(half)


def test_latency_is_per_request_and_concurrent_requests_overlap():
    with Sandbox(SandboxOptions(**SMALL, latency=0.3)) as sandbox:
        tok = token(sandbox)
        started = time.monotonic()
        with ThreadPoolExecutor(6) as pool:
            codes = list(pool.map(lambda _: get(sandbox, "declines", tok).status_code, range(6)))
        elapsed = time.monotonic() - started
        peak = sandbox.stats.snapshot()["max_in_flight"]
    assert codes == [200] * 6 and 0.3 <= elapsed < 1.2 and peak >= 2  # one after another: >= 1.8 s


# -------------------------------------------------------------------------------------------- data


def test_same_options_give_byte_identical_records():
    def dump(**options) -> str:
        dataset = Dataset(**options)
        return json.dumps([dataset.records(s) for s in ("end_users", "responses", "declines")])

    assert dump(**SMALL, burst_hour=30) == dump(**SMALL, burst_hour=30)
    assert dump(**SMALL) != dump(**{**SMALL, "seed": 12})


def test_records_have_the_documented_shapes_and_hold_together(sb):
    users = {u["id"]: u for u in sb.dataset.records("end_users")}
    responses = sb.dataset.records("responses")
    declines = sb.dataset.records("declines")
    assert list(next(iter(users.values()))) == [
        "id",
        "created_at",
        "updated_at",
        "email",
        "last_surveyed",
        "external_created_at",
        "last_seen_at",
        "phone_number",
        "external_id",
        "properties",
        "last_response",
        "settings",
    ]
    assert list(responses[0]) == [
        "id",
        "end_user_id",
        "survey_id",
        "score",
        "text",
        "completed",
        "excluded_from_calculations",
        "ip_address",
        "origin_url",
        "created_at",
        "updated_at",
        "tags",
        "notes",
        "end_user",
    ]
    assert list(declines[0]) == [
        "id",
        "end_user_id",
        "survey_id",
        "ip_address",
        "origin_url",
        "created_at",
        "updated_at",
        "end_user",
    ]
    assert all(list(r["end_user"]) == ["properties"] for r in responses + declines)
    assert all(r["end_user_id"] in users for r in responses + declines)
    assert all(epoch(r["updated_at"]) >= epoch(r["created_at"]) for r in responses + declines)
    assert any(epoch(r["updated_at"]) > epoch(r["created_at"]) for r in responses)
    assert all(0 <= r["score"] <= 10 for r in responses)
    assert {None, ""} <= {r["text"] for r in responses} and any(r["notes"] for r in responses)
    assert any(r["text"] and not r["text"].isascii() for r in responses)
    newest: dict[int, dict] = {}
    for r in responses:
        if r["end_user_id"] not in newest or epoch(r["created_at"]) >= epoch(newest[r["end_user_id"]]["created_at"]):
            newest[r["end_user_id"]] = r
    for uid, user in users.items():
        last = user["last_response"]
        assert (last is None) == (uid not in newest)
        if last:
            assert epoch(next(r for r in responses if r["id"] == last["id"])["created_at"]) == epoch(
                newest[uid]["created_at"]
            )
            assert list(last) == ["id", "score", "text", "survey"] and set(last["survey"]) == {"channel"}
    assert any(u["email"] is None for u in users.values())
    assert any(" " in key for u in users.values() for key in u["properties"])
    assert all(isinstance(u["external_created_at"], (int, type(None))) for u in users.values())


def test_mutations_add_update_and_delete():
    dataset = Dataset(**SMALL)
    at = utc(2026, 7, 1)
    new_users = dataset.add("end_users", n=3, at=at)
    new_responses = dataset.add("responses", n=2, at=at + 5)
    users = {u["id"]: u for u in dataset.records("end_users")}
    responses = {r["id"]: r for r in dataset.records("responses")}
    assert all(epoch(users[i]["created_at"]) == epoch(users[i]["updated_at"]) == at for i in new_users)
    for rid in new_responses:
        user = users[responses[rid]["end_user_id"]]
        assert epoch(user["updated_at"]) == epoch(user["last_surveyed"]) == at + 5
        assert user["last_response"]["id"] in new_responses
    edited = dataset.update("responses", ids=[new_responses[0]], at=at + 60)
    assert epoch(next(r for r in dataset.records("responses") if r["id"] == edited[0])["updated_at"]) == at + 60
    doomed = responses[new_responses[1]]["end_user_id"]
    assert dataset.delete("end_users", ids=[doomed]) == [doomed]
    assert doomed not in dataset.ids("end_users")
    assert all(r["end_user_id"] != doomed for r in dataset.records("responses") + dataset.records("declines"))
    assert len(dataset.delete("declines", n=3)) == 3
    with pytest.raises(KeyError):
        dataset.update("end_users", ids=[1])


@pytest.mark.parametrize(
    "stream, cursor, by", [("responses", "created_at", "created"), ("end_users", "updated_at", "updated")]
)
def test_a_garbled_cursor_is_rendered_as_text_yet_filtered_and_sorted_by_its_real_time(stream, cursor, by):
    with Sandbox(SandboxOptions(**SMALL)) as sandbox:
        tok = token(sandbox)
        before = fetch_all(sandbox, tok, stream, sort_key=cursor, sort_order="asc")
        middle = before[len(before) // 2]
        at = epoch(middle[cursor])
        admin = f"{sandbox.base_url}/_sandbox/mutate"
        garbled = requests.post(admin, json={"stream": stream, "action": "garble", "ids": [middle["id"]]}).json()
        after = fetch_all(sandbox, tok, stream, sort_key=cursor, sort_order="asc")
        around = fetch_all(sandbox, tok, stream, **{f"{by}[gte]": at, f"{by}[lte]": at})
        truth = {r["id"]: r for r in sandbox.dataset.records(stream)}
    assert garbled == {"ids": [middle["id"]]}
    assert [r["id"] for r in after] == [r["id"] for r in before], "the order must stay the real time's"
    odd = next(r for r in after if r["id"] == middle["id"])
    assert odd[cursor] == UNREADABLE_TIME and {k: v for k, v in odd.items() if k != cursor} == {
        k: v for k, v in middle.items() if k != cursor
    }
    assert middle["id"] in {r["id"] for r in around}, "the filter must still place it at its real second"
    assert truth[middle["id"]] == odd


def test_burst_second_packs_300_responses_and_300_user_updates_into_one_second():
    with Sandbox(SandboxOptions(**{**SMALL, "end_users": 600}, burst_second=300)) as sandbox:
        second = sandbox.dataset.burst_second_at
        created = Counter(epoch(r["created_at"]) for r in sandbox.dataset.records("responses"))
        updated = Counter(epoch(u["updated_at"]) for u in sandbox.dataset.records("end_users"))
        served = fetch_all(sandbox, token(sandbox), "responses", **{"created[eq]": second})
    assert created[second] == 300 and updated[second] == 300
    assert created.most_common(1)[0][0] == second
    assert len(served) == 300 and len({r["id"] for r in served}) == 300


def test_burst_hour_packs_responses_and_user_updates_into_one_hour():
    dataset = Dataset(**SMALL, burst_hour=200)
    hour = dataset.burst_hour_start
    assert hour % 3600 == 0
    in_hour = [r for r in dataset.records("responses") if hour <= epoch(r["created_at"]) < hour + 3600]
    users = [u for u in dataset.records("end_users") if hour <= epoch(u["updated_at"]) < hour + 3600]
    assert len(in_hour) >= 200
    assert len(users) >= min(200, sum(1 for u in dataset.records("end_users") if epoch(u["created_at"]) < hour))


def test_churn_changes_records_between_pages():
    options = SandboxOptions(**SMALL, churn=3, churn_deletes=True, churn_delete_every=2)
    with Sandbox(options) as sandbox:
        tok = token(sandbox)
        before = {u["id"]: u["updated_at"] for u in sandbox.dataset.records("end_users")}
        for page in (1, 2):
            assert get(sandbox, "end_users", tok, page=page).status_code == 200
        after = {u["id"]: u["updated_at"] for u in sandbox.dataset.records("end_users")}
        stats = sandbox.stats.snapshot()
    assert len(after) == len(before) - 1
    changed = [i for i in after if after[i] != before[i]]
    assert 3 <= len(changed) <= 6 and all(abs(epoch(after[i]) - time.time()) < 10 for i in changed)
    assert (stats["churn_updates"], stats["churn_deletes"]) == (6, 1)


# ------------------------------------------------------------------------------ regions and admin


@pytest.mark.parametrize("region", ["eu", "au"])
def test_eu_and_au_serve_under_api_v1(region):
    with Sandbox(SandboxOptions(**SMALL, region=region)) as sandbox:
        creds = sandbox.credentials
        response = requests.post(
            sandbox.token_url,
            params={"account_token": creds.account_token},
            data={"grant_type": "password", "username": creds.username, "password": creds.password},
        )
        tok = response.json()["access_token"]
        api = get(sandbox, "responses", tok)
        us_path = requests.get(f"{sandbox.base_url}/v1/responses", headers={"Authorization": f"Bearer {tok}"})
    assert sandbox.api_url.endswith("/api/v1") and creds.account_token.startswith(f"NPS-{region.upper()}-")
    assert api.status_code == 200 and us_path.status_code == 404


def test_us_has_no_api_v1_and_unknown_paths_are_404(sb, tok):
    headers = {"Authorization": f"Bearer {tok}"}
    assert requests.get(f"{sb.base_url}/api/v1/responses", headers=headers).status_code == 404
    assert requests.get(f"{sb.api_url}/end_users/1/responses", headers=headers).status_code == 404


def test_admin_endpoints_need_no_token_and_skip_the_rate_limit():
    with Sandbox(SandboxOptions(**SMALL, rate_limit=3, rate_window=60)) as sandbox:
        admin = f"{sandbox.base_url}/_sandbox"
        tok = token(sandbox)
        assert requests.get(f"{admin}/records/declines").json() == sandbox.dataset.records("declines")
        added = requests.post(f"{admin}/mutate", json={"stream": "declines", "action": "add", "n": 2}).json()["ids"]
        assert set(added) <= sandbox.dataset.ids("declines")
        updated = requests.post(f"{admin}/mutate", json={"stream": "end_users", "action": "update", "n": 4})
        assert len(updated.json()["ids"]) == 4
        assert requests.post(f"{admin}/mutate", json={"stream": "nope", "action": "add"}).status_code == 400
        assert requests.post(f"{admin}/faults", json={"kind": "status_500"}).json()["pending"] == [
            {"kind": "status_500", "count": 1, "path": None}
        ]
        assert requests.post(f"{admin}/faults", json={"kind": "bogus"}).status_code == 400
        faulted = get(sandbox, "declines", tok)
        stats = requests.get(f"{admin}/stats").json()
        creds = requests.get(f"{admin}/credentials").json()
        assert requests.post(f"{admin}/stats/reset").json() == {"ok": True}
        after_reset = requests.get(f"{admin}/stats").json()
        requests.post(f"{admin}/faults", json=[{"consume_rate": 1}])
        over = get(sandbox, "declines", tok)
        assert requests.get(f"{admin}/records/nope").status_code == 404
    assert faulted.status_code == 500 and faulted.headers["X-Rate-Limit-Remaining"] == "1"
    assert stats["requests"] == 2 and stats["by_endpoint"] == {"declines": 1, "token": 1}
    assert stats["faults_injected"] == {"status_500": 1} and stats["injected_5xx"] == 1
    assert Credentials(**{k: creds[k] for k in Credentials.__dataclass_fields__}) == sandbox.credentials
    assert after_reset["requests"] == 0 and after_reset["by_status"] == {}
    assert over.status_code == 429


# ------------------------------------------------------------------------------- server and CLI


def test_listens_on_loopback_only_and_survives_garbage(sb, tok):
    assert sb.base_url.startswith("http://127.0.0.1:")
    for garbage, answer in (
        (b"BREW /pot HTTP/1.1\r\n\r\n", b"HTTP/1.1 501"),
        (b"GET /v1/declines HTTP/1.1\r\nContent-Length: lots\r\n\r\n", b"HTTP/1.1 401"),
        (b"\x16\x03\x01 not even text\r\n\r\n", b""),
    ):
        with socket.create_connection(("127.0.0.1", sb.port), timeout=5) as raw:
            raw.sendall(garbage)
            assert raw.recv(100).startswith(answer)
    socket.create_connection(("127.0.0.1", sb.port)).close()
    assert get(sb, "declines", tok).status_code == 200


def test_cli_prints_its_url_writes_the_ready_file_and_stops_on_sigterm(tmp_path):
    ready = tmp_path / "sandbox.url"
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox",
            "--port",
            "0",
            "--end-users",
            "30",
            "--responses",
            "60",
            "--declines",
            "5",
            "--rate-limit",
            "50",
            "--region",
            "eu",
            "--ready-file",
            str(ready),
        ],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        url = re.fullmatch(r"sandbox listening on (http://127\.0\.0\.1:\d+)\n", line)[1]
        assert ready.read_text().strip() == url
        creds = requests.get(f"{url}/_sandbox/credentials").json()
        assert creds["api_url"] == f"{url}/api/v1" and len(requests.get(f"{url}/_sandbox/records/declines").json()) == 5
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert not ready.exists()
    finally:
        proc.kill()
        proc.stdout.close()
