"""The client's small rules: where each region's API lives, and what a Wootric timestamp means."""

from __future__ import annotations

import pytest

from wootric_ingest.api import endpoints
from wootric_ingest.api.timestamps import unix_seconds


@pytest.mark.parametrize(
    "base_url, api_root, token_url",
    [
        ("https://api.wootric.com", "https://api.wootric.com/v1", "https://api.wootric.com/oauth/token"),
        ("https://app.wootric.eu", "https://app.wootric.eu/api/v1", "https://app.wootric.eu/oauth/token"),
        ("https://app.wootric.au/", "https://app.wootric.au/api/v1", "https://app.wootric.au/oauth/token"),
        ("http://127.0.0.1:8765/api", "http://127.0.0.1:8765/api/v1", "http://127.0.0.1:8765/oauth/token"),
        ("http://127.0.0.1:8765", "http://127.0.0.1:8765/v1", "http://127.0.0.1:8765/oauth/token"),
        ("https://app.wootric.eu/api/v1/", "https://app.wootric.eu/api/v1", "https://app.wootric.eu/oauth/token"),
    ],
)
def test_endpoints_per_region(base_url, api_root, token_url):
    found = endpoints(base_url)
    assert (found.api_root, found.token_url) == (api_root, token_url)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2018-01-02 23:03:41 -0800", 1514963021),  # 2018-01-03T07:03:41Z
        ("2018-08-02 23:03:41 -0700", 1533276221),  # daylight saving: the offset is honoured
        ("2018-01-02 23:03:41", 1514963021),  # no offset: America/Los_Angeles (PST)
        ("2018-08-02 23:03:41", 1533276221),  # no offset in summer: PDT
        ("2015-02-12T06:29:27.000-08:00", 1423751367),
        ("2015-02-12T14:29:27Z", 1423751367),
        ("2015-02-12 14:29:27 +0000", 1423751367),
        (1515940485, 1515940485),
    ],
)
def test_timestamps_in_every_form_become_unix_seconds(text, expected):
    assert unix_seconds(text) == expected


@pytest.mark.parametrize("bad", [None, "", "yesterday", "2018-01-02", True])
def test_anything_else_is_not_a_timestamp(bad):
    with pytest.raises(ValueError):
        unix_seconds(bad)
