"""Bad records from the API: every one becomes a row (what does not fit a column is null, counted, and kept in
`_raw`) or, when it cannot be keyed, a row of the `_rejected` table with the reason; none is lost, none stops
the run, none lands twice."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from wootric_ingest.config import ApiConfig, Auth
from wootric_ingest.sandbox import Sandbox, SandboxOptions
from wootric_ingest.streams import STREAMS
from wootric_ingest.wootric import RetryPolicy, WootricClient

SINCE = datetime(2024, 1, 1, tzinfo=timezone.utc)
UNTIL = datetime.now(timezone.utc) + timedelta(days=1)
MEGABYTE_COMMENT = "Slow. " * 180_000
ODD_TEXT = "Great 👍🏽 service\u0000 and a NUL, RTL \u202e, zero-width \u200b"


def spoil(record: dict, rank: int) -> dict | None:
    """A hostile version of some records, by their rank in the order the API serves them (newest first): the
    last record of every full page has no id (the client's boundary second), every 7th is spoilt one of
    seven more ways."""
    if rank % 50 == 49:
        kind = 0
    elif rank % 7 == 0:
        kind = 1 + rank // 7 % 7
    else:
        return None
    bad = dict(record)
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


def test_the_client_hands_over_every_hostile_record_exactly_once(hostile_sandbox):
    sb = hostile_sandbox
    api = ApiConfig(base_url=sb.base_url, auth=Auth(username=sb.credentials.username,
                                                    password=sb.credentials.password), max_concurrency=1)
    with WootricClient(api, retry=RetryPolicy(first_delay=0.01, give_up_after=10)) as client:
        client.authenticate()
        got = [r for batch in client.pages(STREAMS["responses"], SINCE, UNTIL) for r in batch.records]
    assert sorted(map(identity, got)) == sorted(map(identity, sb.truth))
    assert sum(1 for r in got if "id" not in r) == 420 // 50
