"""Pacing requests to Wootric's per-account rate limit, shared by every thread of one client.

Wootric counts requests per account in fixed windows and says where we stand in three headers:
`X-Rate-Limit-Limit`, `X-Rate-Limit-Remaining` and `X-Rate-Limit-Reset` (Unix seconds when the window
resets). The limit is the physical ceiling of an extraction, so the limiter spends the whole budget of
each window and never one request more:

- a permit is taken before a request is sent and the request counts as *in flight* until its answer is
  back: the server may not have counted it yet, so it is subtracted from whatever the headers say;
- an answer from the current window can only lower the budget (to `remaining` less what is in flight).
  Answers arrive out of order across threads and lowering is the safe direction; a budget lower than
  our own count means another client is using the account;
- when the reset time passes the budget is the limit less what is in flight (those may land in the new
  window), and an answer from a newer window than ours resets the budget at once;
- before the first headers arrive, and for the token endpoint (which may count but sends none), the
  configured requests per minute is assumed;
- a 429 (another client got there first) stops every thread until the window resets, or for one
  window when the answer carries no headers.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping

from wootric_ingest.wootric.errors import Cancelled

ASSUMED_WINDOW = 60.0
_SAME_RESET = 1e-3


@dataclass(frozen=True)
class Quota:
    """The rate-limit headers of one answer."""

    limit: int
    remaining: int
    reset: float

    @classmethod
    def from_headers(cls, headers: Mapping[str, str] | None, now: float) -> Quota | None:
        """The headers' quota, or None when the answer carries none; a small Reset is read as seconds from now."""
        if not headers:
            return None
        try:
            limit = int(headers["X-Rate-Limit-Limit"])
            remaining = int(headers["X-Rate-Limit-Remaining"])
            reset = float(headers["X-Rate-Limit-Reset"])
        except (KeyError, TypeError, ValueError):
            return None
        return cls(limit, remaining, reset if reset > 1e9 else now + reset)


class RateLimiter:
    """One account's request budget, handed out as permits to any number of threads."""

    def __init__(self, requests_per_minute: int, *, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._cond = threading.Condition()
        self._limit = requests_per_minute
        self._window = ASSUMED_WINDOW
        self._window_learnt = False
        self._budget = requests_per_minute
        self._in_flight = 0
        self._resets_at: float | None = None
        self._began: float | None = None
        self._ended = -math.inf

    def acquire(self, cancel: threading.Event | None = None) -> float:
        """Wait for a permit to send one request; returns the seconds spent waiting."""
        start = self._clock()
        with self._cond:
            if self._began is None:
                self._began = start
            while True:
                if cancel is not None and cancel.is_set():
                    raise Cancelled("extraction closed")
                now = self._clock()
                self._roll(now)
                if self._budget > 0:
                    self._budget -= 1
                    self._in_flight += 1
                    return now - start
                self._cond.wait(min(0.25, max(0.001, self._deadline() + self._margin() - now)))

    def release(self, headers: Mapping[str, str] | None, *, throttled: bool = False) -> None:
        """The answer to a permitted request is back (headers None when there was no answer)."""
        with self._cond:
            self._in_flight -= 1
            now = self._clock()
            quota = Quota.from_headers(headers, now)
            if quota is not None:
                self._observe(quota, now)
            if throttled:
                self._budget = 0
                if quota is not None and quota.reset > now:
                    self._resets_at = max(quota.reset, self._resets_at or quota.reset)
                elif quota is None:
                    self._resets_at, self._began = None, now
            self._cond.notify_all()

    def rate(self) -> float:
        """The ceiling in requests per second, as far as the headers have told us."""
        with self._cond:
            return self._limit / self._window

    def _observe(self, quota: Quota, now: float) -> None:
        self._limit = quota.limit
        self._learn_window(quota.reset - now)
        if quota.reset <= self._ended + _SAME_RESET:
            return
        fresh = quota.remaining - self._in_flight
        if self._resets_at is not None and quota.reset > self._resets_at + _SAME_RESET:
            self._ended, self._resets_at, self._budget = self._resets_at, quota.reset, fresh
        else:
            self._resets_at = quota.reset
            self._budget = min(self._budget, fresh)

    def _learn_window(self, span: float) -> None:
        """The window is at least as long as any reset we were told lies ahead."""
        if 0 < span < 3600:
            self._window = max(self._window, span) if self._window_learnt else span
            self._window_learnt = True

    def _deadline(self) -> float:
        if self._resets_at is not None:
            return self._resets_at
        return (self._began if self._began is not None else self._clock()) + self._window

    def _margin(self) -> float:
        """Slack after a reset, for the server's and our clocks to agree on which window a request is in."""
        return min(0.5, 0.01 * self._window)

    def _roll(self, now: float) -> None:
        deadline = self._deadline()
        if now >= deadline + self._margin():
            if self._resets_at is not None:
                self._ended = self._resets_at
            self._resets_at, self._began = None, now
            self._budget = self._limit - self._in_flight
