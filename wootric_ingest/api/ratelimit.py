"""Pacing requests to Wootric's per-account rate limit, shared by every thread of one client.

Wootric counts requests per account in fixed windows and says where we stand in three headers:
`X-Rate-Limit-Limit`, `X-Rate-Limit-Remaining` and `X-Rate-Limit-Reset` (Unix seconds when the window
resets). The limit is the physical ceiling of an extraction, so the limiter spends the whole budget of
each window and never one request more. It counts its own requests, and learns other clients' from the
headers:

- a request counts in the window in which it *arrives*. Each permit is charged to the window current
  when it is granted and, while its request is in flight, to every window that begins before the
  answer is back (a request sent just before a reset may arrive after it);
- the budget is the limit, less what we charged to the window, less what other clients used in it.
  An answer's `limit - remaining` counts what had arrived by then, which is never more than we charged
  while we are the account's only client (whatever order requests arrive and answers come back in);
  anything above that is another client's. Subtracting every request in flight from `remaining`
  instead would count twice those that have arrived but are not answered yet: at one second per page
  that left a tenth of each window unused;
- a window ends when its reset time passes (plus a margin for the server's clock and ours), or as
  soon as an answer shows the server counting in a newer one (then every request out at the same time
  counts as both counted by it and still to come). An answer without headers (the token endpoint, a
  proxy's error page, a broken connection) cannot say which window it counted in, so it is charged to
  the next window as well, unless it came back before a request was sent that still counted in the old
  one (then it arrived before the reset);
- before the first headers, the configured requests per minute over an assumed 60 s window;
- a 429 (another client got there first) stops every thread until the window resets, or for one
  learnt window when the answer carries no headers;
- a client that shares the account with siblings it cannot talk to (the partitions of a Spark read, each in
  its own Python worker) spends at most its `share` of the limit in a window, so together they never exceed it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from wootric_ingest.api.errors import Cancelled

ASSUMED_WINDOW = 60.0


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


@dataclass(frozen=True)
class Permit:
    """Leave to send one request: when it was granted (before the request can arrive anywhere), how long
    the thread waited for it, and how many answers had come back by then."""

    granted_at: float
    waited: float
    answers_before: int


class RateLimiter:
    """One account's request budget, handed out as permits to any number of threads."""

    def __init__(self, requests_per_minute: int, *, share: float = 1.0, clock: Callable[[], float] = time.time):
        """`share`: the fraction of the account's limit this limiter may spend in a window (0 < share <= 1)."""
        if not 0 < share <= 1:
            raise ValueError(f"share must be within (0, 1], got {share}")
        self._clock = clock
        self._share = share
        self._cond = threading.Condition()
        self._limit = requests_per_minute
        self._window = ASSUMED_WINDOW
        self._window_learnt = False
        self._in_flight = 0
        self._answers = 0
        self._resets_at: float | None = None
        self._began: float | None = None
        self._ended = -math.inf
        self._charged = 0
        self._others = 0
        self._placed_until = -math.inf
        self._unplaced: list[float] = []

    def acquire(self, cancel: threading.Event | None = None) -> Permit:
        """Wait for a permit to send one request."""
        start = self._clock()
        with self._cond:
            if self._began is None:
                self._began = start
            while True:
                if cancel is not None and cancel.is_set():
                    raise Cancelled("extraction closed")
                now = self._clock()
                if now >= self._deadline() + self._margin():
                    self._roll(now)
                if self._charged + self._others < self._limit and self._charged < self._own_limit():
                    self._charged += 1
                    self._in_flight += 1
                    return Permit(now, now - start, self._answers)
                self._cond.wait(min(0.25, max(0.001, self._deadline() + self._margin() - now)))

    def release(self, permit: Permit, headers: Mapping[str, str] | None, *, throttled: bool = False) -> None:
        """The answer to a permitted request is back (headers None when there was no answer)."""
        with self._cond:
            self._in_flight -= 1
            overlapping = self._answers - permit.answers_before
            self._answers += 1
            now = self._clock()
            quota = Quota.from_headers(headers, now)
            current = True
            if quota is None:
                self._unplaced.append(now)
            else:
                current = self._observe(quota, permit, overlapping, now)
            if throttled and current:
                self._others = self._limit
                if quota is None:
                    self._resets_at, self._began = None, now
            self._cond.notify_all()

    def remaining(self) -> int:
        """Permits left in the current window: our share of the limit, less what we used, and never more than
        the limit leaves after what (by the headers) others used."""
        with self._cond:
            if self._clock() >= self._deadline() + self._margin():
                return self._own_limit()
            return max(0, min(self._limit - self._others, self._own_limit()) - self._charged)

    def rate(self) -> float:
        """This limiter's ceiling in requests per second, as far as the headers have told us."""
        with self._cond:
            return self._own_limit() / self._window

    def _own_limit(self) -> int:
        """What this limiter may spend of a window: its share of the account's limit, at least one request."""
        return max(1, math.floor(self._limit * self._share))

    def _observe(self, quota: Quota, permit: Permit, overlapping: int, now: float) -> bool:
        """Learn from an answer's headers (`overlapping`: other answers that came back while its request
        was out); False when it counted in a window that is already over."""
        self._limit = quota.limit
        self._learn_window(quota.reset - now)
        same = self._same_reset()
        if quota.reset <= self._ended + same:
            return False
        if self._resets_at is not None and quota.reset < self._resets_at - same:
            return True  # a window between the ended one and ours: nothing to learn, but a 429 still stops us
        used = quota.limit - quota.remaining
        if self._resets_at is not None and quota.reset > self._resets_at + same:
            self._roll(now, counted=1)
            # Our window ended early, on the server's word. Should that word be wrong (a Reset that drifts),
            # every request out while this one was may arrive after it: they count as counted and to come.
            used += self._in_flight + overlapping
        self._resets_at = quota.reset if self._resets_at is None else self._resets_at
        self._placed_until = max(self._placed_until, permit.granted_at)
        self._others = max(self._others, used - self._charged)
        return True

    def _roll(self, now: float, *, counted: int = 0) -> None:
        """A new window begins; `counted` answers already came back from it. What may still arrive in it
        is charged to it: requests in flight, and answers without headers that may have arrived after the
        reset."""
        if self._resets_at is not None:
            self._ended = self._resets_at
        unplaced = sum(1 for released in self._unplaced if released > self._placed_until)
        self._charged = self._in_flight + unplaced + counted
        self._others = 0
        self._resets_at, self._began = None, now
        self._placed_until, self._unplaced = -math.inf, []

    def _learn_window(self, span: float) -> None:
        """The window is at least as long as any reset we were told lies ahead."""
        if 0 < span < 3600:
            self._window = max(self._window, span) if self._window_learnt else span
            self._window_learnt = True

    def _deadline(self) -> float:
        if self._resets_at is not None:
            return self._resets_at
        return (self._began if self._began is not None else self._clock()) + self._window

    def _same_reset(self) -> float:
        """How far apart two resets of one window may be read (a Reset in seconds from now drifts with
        rounding and transit); two windows' resets are a whole window apart."""
        return min(2.0, self._window / 4)

    def _margin(self) -> float:
        """Slack after a reset, for the server's and our clocks to agree on which window a request is in."""
        return min(0.5, 0.01 * self._window)
