"""What a sandbox is: its data set, its account and how hard it makes life for a client."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .data import DEFAULT_END, DEFAULT_START, TIMESTAMP_FORMS

REGIONS = ("us", "eu", "au")


@dataclass(frozen=True)
class SandboxOptions:
    """Every knob of one sandbox; the defaults are a well-behaved account with a 2-year history."""

    end_users: int = 2000
    responses: int = 5000
    declines: int = 500
    seed: int = 7
    start: int = DEFAULT_START  # data range, epoch seconds: created_at in [start, end)
    end: int = DEFAULT_END
    rate_limit: int | None = None  # requests per window per account; None = unlimited
    rate_window: float = 60.0  # seconds; small values keep tests and benchmarks fast
    token_ttl: int = 7200
    latency: float = 0.0  # seconds slept per list request
    latency_jitter: float = 0.0  # plus uniform [0, jitter)
    error_rate: float = 0.0  # fraction of list requests answering a random 5xx
    burst_hour: int = 0  # extra responses + end-user updates packed into one hour
    burst_second: int = 0  # extra responses + end-user updates in ONE second
    churn: int = 0  # records of the paged stream updated after each page served
    churn_deletes: bool = False  # also delete one record every `churn_delete_every` pages
    churn_delete_every: int = 5
    region: str = "us"  # us: /v1/...; eu, au: /api/v1/...
    bad_credentials_status: int = 401  # 401 (older servers) or 400 (newer)
    timestamp_forms: str = "ruby"  # "mixed" also renders the doc's no-offset and ISO forms
    honour_sort_order_everywhere: bool = False  # responses/declines honour sort_order=asc
    timeout_sleep: float = 30.0  # how long a `timeout` fault holds a request
    port: int = 0  # 0 = a free port

    def __post_init__(self):
        problems = []
        if self.region not in REGIONS:
            problems.append(f"region must be one of {REGIONS}")
        if self.bad_credentials_status not in (400, 401):
            problems.append("bad_credentials_status must be 400 or 401")
        if self.timestamp_forms not in TIMESTAMP_FORMS:
            problems.append(f"timestamp_forms must be one of {TIMESTAMP_FORMS}")
        if self.rate_limit is not None and self.rate_limit < 1:
            problems.append("rate_limit must be >= 1 or None")
        if self.rate_window <= 0 or self.token_ttl <= 0 or self.timeout_sleep <= 0:
            problems.append("rate_window, token_ttl and timeout_sleep must be > 0")
        if not 0.0 <= self.error_rate <= 1.0:
            problems.append("error_rate must be within [0, 1]")
        if min(self.latency, self.latency_jitter, self.churn) < 0 or self.churn_delete_every < 1:
            problems.append("latency, latency_jitter and churn must be >= 0, churn_delete_every >= 1")
        if not 0 <= self.port <= 65535:
            problems.append("port must be within [0, 65535]")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def api_prefix(self) -> str:
        return "/v1" if self.region == "us" else "/api/v1"


@dataclass(frozen=True)
class Credentials:
    """The sandbox account's secrets: fixed user/password, client id/secret derived from the seed."""

    username: str
    password: str
    client_id: str
    client_secret: str
    account_token: str

    @classmethod
    def for_account(cls, seed: int, region: str) -> Credentials:
        def derive(label: str, size: int) -> str:
            return hashlib.sha256(f"wootric-sandbox/{seed}/{label}".encode()).hexdigest()[:size]

        prefix = "NPS-" if region == "us" else f"NPS-{region.upper()}-"
        return cls(
            username="demo@example.com",
            password="sandbox-password",
            client_id=derive("client_id", 64),
            client_secret=derive("client_secret", 64),
            account_token=prefix + derive("account_token", 8),
        )
