"""The sandbox's `/v1/segments` and `/v1/nps_summary`, as Wootric's docs describe them, and the client's
`nps_summary` reading the latter through the same limiter, retries and token as the lists (no Spark)."""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

import requests

from sandbox import Sandbox, SandboxOptions
from sandbox.data import ACCOUNT_ZONE
from wootric_ingest import nps
from wootric_ingest.api import WootricClient
from wootric_ingest.config import parse_config

from conftest import config_dict

RUBY_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [-+]\d{4}$")
SUMMARY_KEYS = {"nps", "responses", "detractors", "passives", "promoters", "response_rate", "email_response_rate"}


def bearer(sb: Sandbox) -> dict[str, str]:
    form = {"grant_type": "password", "username": sb.credentials.username, "password": sb.credentials.password}
    token = requests.post(sb.token_url, data=form, timeout=5).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def expected_summary(sb: Sandbox, first: date, last: date) -> dict[str, int]:
    """The month counted from the rendered records, with the definition's own functions."""
    zone = ZoneInfo(ACCOUNT_ZONE)
    scores = [
        r["score"]
        for r in sb.dataset.records("responses")
        if first <= datetime.strptime(r["created_at"], "%Y-%m-%d %H:%M:%S %z").astimezone(zone).date() <= last
        and not r["excluded_from_calculations"]
    ]
    classes = [nps.category(s) for s in scores]
    promoters, detractors = classes.count("promoter"), classes.count("detractor")
    return {
        "nps": nps.nps(promoters, detractors, len(scores)) or 0,
        "responses": len(scores),
        "promoters": promoters,
        "passives": classes.count("passive"),
        "detractors": detractors,
    }


def test_segments_and_nps_summary_answer_as_the_docs_say():
    with Sandbox(SandboxOptions(end_users=30, responses=600, declines=60, seed=61)) as sb:
        api = sb.api_url
        assert requests.get(f"{api}/segments", timeout=5).status_code == 401
        segments = requests.get(f"{api}/segments", headers=bearer(sb), timeout=5).json()
        assert isinstance(segments, list) and {s["name"] for s in segments} >= {"pricing_plan", "seat count"}
        assert all(
            s["data_type"] in ("string", "date", "integer") and RUBY_TIME.match(s["created_at"]) for s in segments
        )

        for month in ("2025-01", "2025-02", "2025-03", "2025-11"):
            year, number = map(int, month.split("-"))
            first = date(year, number, 1)
            last = date(year, number, calendar.monthrange(year, number)[1])
            params = {"date[start]": first.isoformat(), "date[end]": last.isoformat()}
            summary = requests.get(f"{api}/nps_summary", params=params, headers=bearer(sb), timeout=5).json()
            assert set(summary) == SUMMARY_KEYS and all(isinstance(v, int) for v in summary.values())
            assert {k: summary[k] for k in expected_summary(sb, first, last)} == expected_summary(sb, first, last)
            assert summary["responses"] > 0

        default = requests.get(f"{api}/nps_summary", headers=bearer(sb), timeout=5)
        assert default.status_code == 200 and set(default.json()) == SUMMARY_KEYS
        bad = requests.get(f"{api}/nps_summary", params={"date[start]": "May 1"}, headers=bearer(sb), timeout=5)
        assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "date[start]"

        config = parse_config(
            config_dict(
                source={
                    **config_dict()["source"],
                    "api": {
                        "base_url": sb.base_url,
                        "auth": {"username": sb.credentials.username, "password": sb.credentials.password},
                    },
                }
            ),
            environ={},
        )
        sb.stats.reset()
        with WootricClient(config.api) as client:
            client.authenticate()
            assert (
                client.nps_summary(date(2025, 1, 1), date(2025, 1, 31))
                == requests.get(
                    f"{api}/nps_summary",
                    params={"date[start]": "2025-01-01", "date[end]": "2025-01-31"},
                    headers=bearer(sb),
                    timeout=5,
                ).json()
            )
        assert sb.stats.snapshot()["by_endpoint"]["nps_summary"] == 2
