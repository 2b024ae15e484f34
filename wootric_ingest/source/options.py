"""The `wootric` data source's options: strings in (as Spark hands them over), a typed `ReadOptions` out.

Checked on the driver when the DataFrame is defined (`load()`), every problem reported together, each naming
its option and what is allowed, as the job's config does. The API settings come either from the options
(`base_url`, the credentials, the pace) or from `config`, the job's YAML file, whose `source` section supplies
them and the start date; not from both, so it is never unclear which password a read used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from wootric_ingest import redaction
from wootric_ingest.config import DEFAULT_BASE_URL, ApiConfig, Auth, ConfigError, load_config, parse_start_date
from wootric_ingest.streams import STREAMS, Stream

CREDENTIAL_OPTIONS = ("username", "password", "client_id", "client_secret", "account_token")
SECRET_OPTIONS = ("password", "client_secret", "account_token")
API_OPTIONS = (
    "base_url",
    *CREDENTIAL_OPTIONS,
    "requests_per_minute",
    "max_concurrency",
    "timeout_seconds",
    "retry_give_up_seconds",
)
READ_OPTIONS = ("stream", "config", "start_date", "end_date", "lookback_days", "lag_seconds")
OPTIONS = READ_OPTIONS + API_OPTIONS
DEFAULT_LAG_SECONDS = 60


class OptionError(ValueError):
    """Options a read cannot go on with; the message names each option and what is allowed."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        listing = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"the wootric data source's options have {len(problems)} problem(s):\n{listing}")


@dataclass(frozen=True)
class ReadOptions:
    """What one read needs, picklable for the executors. `max_concurrency` bounds the partitions that read at
    once; `lookback_days` and `lag_seconds` matter to a streaming read only."""

    stream: Stream
    api: ApiConfig
    start: int
    end: int | None
    lookback_days: int
    lag_seconds: int


def parse_options(options: Mapping[str, str]) -> ReadOptions:
    """Validate the options of `spark.read.format("wootric")`, or raise `OptionError` listing every problem."""
    given = {str(k).lower(): v for k, v in options.items()}
    problems = [
        f"{key}: unknown option; allowed: {', '.join(sorted(OPTIONS))}"
        for key in sorted(given)
        if key not in OPTIONS and key != "path"
    ]
    if "path" in given:
        problems.append("path: the wootric data source reads no path; name the stream with option('stream', ...)")
    stream = STREAMS.get(given.get("stream", ""))
    if stream is None:
        problems.append(
            f"stream: {'is required' if 'stream' not in given else 'no such stream'}; one of: {', '.join(STREAMS)}"
        )
    api, start = _api_and_start(given, problems)
    end = _instant(given, "end_date", problems) if "end_date" in given else None
    if start is not None and end is not None and end < start:
        problems.append("end_date: is before start_date")
    lookback_days = _whole(given, "lookback_days", 0, 0, problems)
    lag_seconds = _whole(given, "lag_seconds", DEFAULT_LAG_SECONDS, 1, problems)
    if problems or stream is None or api is None or start is None:
        raise OptionError(problems)
    return ReadOptions(stream, api, start, end, lookback_days, lag_seconds)


def _api_and_start(given: dict[str, str], problems: list[str]) -> tuple[ApiConfig | None, int | None]:
    """The API settings and start (Unix seconds) from the options, or from the job's config file."""
    if "config" in given:
        clash = [k for k in API_OPTIONS if k in given]
        for key in clash:
            problems.append(f"{key}: comes from the config file's source section; give either config or {key}")
        try:
            config = load_config(given["config"])
        except ConfigError as e:
            problems.extend(f"config: {given['config']}: {p}" for p in e.problems)
            return None, None
        start = _instant(given, "start_date", problems) if "start_date" in given else _second(config.start_date)
        return (None if clash else config.api), start
    for secret in SECRET_OPTIONS:
        redaction.register(given.get(secret))
    auth = _auth(given, problems)
    base_url = given.get("base_url", DEFAULT_BASE_URL).rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        problems.append(f"base_url: {base_url!r} is not an http(s) URL, e.g. {DEFAULT_BASE_URL}")
    api = ApiConfig(
        base_url=base_url,
        auth=auth,
        max_concurrency=_whole(given, "max_concurrency", 4, 1, problems),
        requests_per_minute=_whole(given, "requests_per_minute", 100, 1, problems),
        timeout_seconds=float(_whole(given, "timeout_seconds", 60, 1, problems)),
        retry_give_up_seconds=_whole(given, "retry_give_up_seconds", 900, 1, problems),
    )
    if "start_date" not in given:
        problems.append("start_date: is required (or give config, whose source.start_date is used)")
        return api, None
    return api, _instant(given, "start_date", problems)


def _auth(given: dict[str, str], problems: list[str]) -> Auth:
    values = {k: given.get(k) or None for k in CREDENTIAL_OPTIONS}
    password = bool(values["username"] or values["password"])
    client = bool(values["client_id"] or values["client_secret"])
    if password and client:
        problems.append("username: give either username + password or client_id + client_secret, not both")
    elif not password and not client:
        problems.append("username: give username + password (or client_id + client_secret, or config)")
    else:
        pair = ("username", "password") if password else ("client_id", "client_secret")
        for key, other in (pair, pair[::-1]):
            if not values[key]:
                problems.append(f"{key}: is required with {other}")
    return Auth(**values)


def _instant(given: dict[str, str], key: str, problems: list[str]) -> int | None:
    try:
        return _second(parse_start_date(given[key]))
    except ValueError:
        problems.append(f"{key}: {given[key]!r} is not an ISO-8601 date, e.g. 2024-01-01T00:00:00Z")
        return None


def _whole(given: dict[str, str], key: str, default: int, minimum: int, problems: list[str]) -> int:
    text = given.get(key)
    if text is None:
        return default
    try:
        value = int(str(text).strip())
    except ValueError:
        value = minimum - 1
    if value < minimum:
        problems.append(f"{key}: must be a whole number >= {minimum}, got {text!r}")
        return default
    return value


def _second(instant: datetime) -> int:
    return math.floor(instant.astimezone(timezone.utc).timestamp())
