"""The rate limit and injected faults: every way the real API can make a client's life hard.

Random faults (latency, error_rate, churn) draw from one seeded `random.Random`, so a run with the
same options and the same request sequence sees the same faults. Scripted faults hit the next
matching requests exactly, for tests that pin one behaviour.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from dataclasses import dataclass

from .data import Dataset
from .options import SandboxOptions
from .stats import Stats

KINDS = (
    "status_500",
    "status_503",
    "status_429",
    "status_429_no_headers",
    "timeout",
    "reset",
    "truncated_json",
    "html_200",
    "error_envelope_200",
    "repeat_previous_page",
    "stop_mid_body",
    "token_timeout",
    "expire_token",
)
# Without a path, these aim at /oauth/token and every other kind at the list endpoints.
TOKEN_KINDS = ("token_timeout",)
# Meaningless on /oauth/token even when aimed there by path.
LIST_ONLY_KINDS = ("repeat_previous_page", "expire_token")
RANDOM_ERROR_STATUSES = (500, 502, 503, 504)
# The doc's example limit, announced by a scripted 429 when the sandbox itself is unlimited.
NOMINAL_LIMIT = 100


class RateLimiter:
    """Per-account fixed windows aligned to the first request; every request counts, 429s too."""

    def __init__(self, limit: int | None, window: float):
        self.limit, self.window = limit, window
        self._lock = threading.Lock()
        self._origin: float | None = None
        self._index = -1
        self._used = 0

    def hit(self, n: int = 1) -> tuple[bool, dict[str, str]]:
        """Count `n` requests now: (allowed, the X-Rate-Limit-* headers to send, none if unlimited)."""
        with self._lock:
            self._roll()
            self._used += n
            if self.limit is None:
                return True, {}
            return self._used <= self.limit, self._headers(self.limit, max(0, self.limit - self._used))

    def exhausted_headers(self) -> dict[str, str]:
        """Headers of a 429 in the current window, as a scripted 429 sends them."""
        with self._lock:
            self._roll()
            return self._headers(self.limit or NOMINAL_LIMIT, 0)

    def _roll(self) -> None:
        now = time.time()
        if self._origin is None:
            self._origin = now
        index = math.floor((now - self._origin) / self.window)
        if index != self._index:
            self._index, self._used = index, 0

    def _headers(self, limit: int, remaining: int) -> dict[str, str]:
        # Rounded up, so a client that waits until Reset is always in the next window.
        reset = math.ceil(self._origin + (self._index + 1) * self.window)
        return {
            "X-Rate-Limit-Limit": str(limit),
            "X-Rate-Limit-Remaining": str(remaining),
            "X-Rate-Limit-Reset": str(reset),
        }


@dataclass
class _Scripted:
    kind: str
    remaining: int
    path: str | None


class Faults:
    """Scripted and random faults of one sandbox, plus `consume_rate` (another client on the account)."""

    def __init__(
        self, options: SandboxOptions, limiter: RateLimiter, stats: Stats, dataset: Dataset, stopping: threading.Event
    ):
        self.options = options
        self._limiter, self._stats, self._dataset, self._stopping = limiter, stats, dataset, stopping
        self._lock = threading.Lock()
        self._rng = random.Random(f"{options.seed}:faults")
        self._queue: deque[_Scripted] = deque()
        self._pages = 0

    # ------------------------------------------------------------- public API

    def script(self, kind: str, count: int = 1, path: str | None = None) -> None:
        """Give the next `count` matching requests fault `kind`; `path` narrows them ("responses",
        "/v1/responses", "/oauth/token"); without it a kind aims at the list endpoints, except
        `token_timeout` which aims at /oauth/token. `repeat_previous_page` waits for a page >= 2."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {KINDS}")
        if count < 1:
            raise ValueError("count must be >= 1")
        with self._lock:
            self._queue.append(_Scripted(kind, count, path))

    def consume_rate(self, n: int) -> None:
        """Another client on the same account spends `n` requests of the current window."""
        self._limiter.hit(n)

    def injected(self) -> dict[str, int]:
        """Faults served so far by kind; error_rate ones count as "random_5xx"."""
        return self._stats.snapshot()["faults_injected"]

    def pending(self) -> list[dict]:
        with self._lock:
            return [{"kind": s.kind, "count": s.remaining, "path": s.path} for s in self._queue]

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    # ------------------------------------------------------ used by the handler

    def take(self, *, path: str, stream: str, page: int | None) -> str | None:
        """The scripted fault this request gets, if any (consumed); `stream` is "token" for /oauth/token."""
        with self._lock:
            for entry in self._queue:
                if self._matches(entry, path, stream, page):
                    entry.remaining -= 1
                    if not entry.remaining:
                        self._queue.remove(entry)
                    self._stats.tally("faults_injected", entry.kind)
                    return entry.kind
        return None

    def random_error(self) -> int | None:
        """A 5xx status for this list request with probability `error_rate`."""
        if not self.options.error_rate:
            return None
        with self._lock:
            if self._rng.random() >= self.options.error_rate:
                return None
            status = self._rng.choice(RANDOM_ERROR_STATUSES)
        self._stats.tally("faults_injected", "random_5xx")
        return status

    def delay(self) -> None:
        """Sleep this handler thread for `latency` (+ jitter): concurrent requests overlap, as for real."""
        seconds = self.options.latency
        if self.options.latency_jitter:
            with self._lock:
                seconds += self._rng.uniform(0, self.options.latency_jitter)
        if seconds:
            self._stopping.wait(seconds)

    def hold(self) -> None:
        """A `timeout` fault: hold the request longer than any client waits; cut short by stop()."""
        self._stopping.wait(self.options.timeout_sleep)

    def after_page(self, stream: str) -> None:
        """Churn: records change (and maybe vanish) between page requests, as on a live account."""
        churn, deletes = self.options.churn, self.options.churn_deletes
        if not churn and not deletes:
            return
        with self._lock:
            self._pages += 1
            delete_now = deletes and self._pages % self.options.churn_delete_every == 0
        if churn:
            self._stats.add("churn_updates", len(self._dataset.update(stream, n=churn)))
        if delete_now:
            self._stats.add("churn_deletes", len(self._dataset.delete(stream, n=1)))

    @staticmethod
    def _matches(entry: _Scripted, path: str, stream: str, page: int | None) -> bool:
        on_token = stream == "token"
        if entry.path is None:
            aimed = (entry.kind in TOKEN_KINDS) == on_token
        else:
            aimed = entry.path in (path, stream) and not (on_token and entry.kind in LIST_ONLY_KINDS)
        if entry.kind == "repeat_previous_page":
            aimed = aimed and page is not None and page >= 2
        return aimed
