"""One HTTP exchange with Wootric, made safe: paced by the shared rate limiter, retried while transient.

Transient means the answer says nothing about our request: a 5xx, a timeout, a reset or cut-off
connection, a 429, or a 200 that is not the JSON the API sends (a proxy's maintenance page, a body cut
short). Those are retried with capped exponential backoff and jitter (a 429 waits for the limiter
instead) until `RetryPolicy.give_up_after` has passed since the first attempt; then `GaveUp` names the
endpoint. Every other answer goes back to the caller, which knows what a 401 or a 400 means there.
URLs in messages are paths only: query strings never reach a log line or an exception.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from wootric_ingest.api.errors import Cancelled, GaveUp
from wootric_ingest.api.ratelimit import RateLimiter
from wootric_ingest.api.stats import Stats

log = logging.getLogger(__name__)

_TRANSIENT_EXCEPTIONS = (
    requests.Timeout,
    requests.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying a request that fails for reasons outside our control."""

    first_delay: float = 1.0
    max_delay: float = 30.0
    give_up_after: float = 900.0

    def delay(self, attempt: int) -> float:
        """Capped exponential backoff with jitter, so parallel workers do not retry in lockstep."""
        ceiling = min(self.max_delay, self.first_delay * 2**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass(frozen=True)
class Answer:
    """A final answer: its status, parsed JSON body (None when not JSON) and headers."""

    status: int
    body: Any
    headers: Mapping[str, str]


class Transport:
    """Sends requests for any number of threads, each on its own keep-alive session."""

    def __init__(self, *, timeout: float, limiter: RateLimiter, stats: Stats, retry: RetryPolicy):
        self._timeout = timeout
        self._limiter = limiter
        self._stats = stats
        self._retry = retry
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        self._latency = 0.0

    @property
    def latency(self) -> float:
        """Recent seconds per successful request (a moving average), what concurrency must hide."""
        return self._latency

    def send(
        self,
        method: str,
        url: str,
        *,
        endpoint: str,
        expect: type,
        params: Mapping | None = None,
        data: Mapping | None = None,
        headers: Callable[[], Mapping[str, str]] | None = None,
        cancel: threading.Event,
    ) -> Answer:
        """The first non-transient answer; a 2xx must carry JSON of type `expect` to count as one.

        `headers` is called once the rate limiter lets the request go, so a token taken for it is as
        fresh as it can be even after a long wait for the window to reset.
        """
        started = time.monotonic()
        attempt = 0
        while True:
            permit = self._limiter.acquire(cancel)
            self._stats.add(requests=1, wait_seconds=permit.waited)
            sent = time.monotonic()
            try:
                response = self._session().request(
                    method, url, params=params, data=data, headers=headers() if headers else None, timeout=self._timeout
                )
            except _TRANSIENT_EXCEPTIONS as failure:
                self._limiter.release(permit, None)
                problem = type(failure).__name__
            except BaseException:
                self._limiter.release(permit, None)
                raise
            else:
                status = response.status_code
                self._limiter.release(permit, response.headers, throttled=status == 429)
                if status == 429:
                    self._stats.add(throttled_429=1)
                    log.warning("%s: HTTP 429; waiting for the rate-limit window to reset", endpoint)
                    self._check_deadline(endpoint, started, attempt, "HTTP 429")
                    attempt += 1
                    continue
                body = _json(response)
                if status < 500 and (not response.ok or isinstance(body, expect)):
                    if response.ok:
                        self._observe_latency(time.monotonic() - sent)
                    return Answer(status, body, response.headers)
                problem = f"HTTP {status}" if status >= 500 else f"HTTP {status} without a JSON {expect.__name__}"
            self._check_deadline(endpoint, started, attempt, problem)
            delay = self._retry.delay(attempt)
            attempt += 1
            self._stats.add(retries=1)
            log.warning("%s failed (%s); retry %d in %.1f s", endpoint, problem, attempt, delay)
            if cancel.wait(delay):
                raise Cancelled("extraction closed")

    def _observe_latency(self, seconds: float) -> None:
        self._latency = seconds if not self._latency else self._latency + 0.2 * (seconds - self._latency)

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()

    def _check_deadline(self, endpoint: str, started: float, attempt: int, problem: str) -> None:
        elapsed = time.monotonic() - started
        if elapsed >= self._retry.give_up_after:
            raise GaveUp(endpoint, elapsed, attempt + 1, problem)

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.mount("http://", HTTPAdapter(max_retries=0))
            session.mount("https://", HTTPAdapter(max_retries=0))
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session


def _json(response: requests.Response) -> Any:
    """The parsed body, or None when it is not JSON (an HTML error page, a truncated body)."""
    try:
        return response.json()
    except ValueError:
        return None
