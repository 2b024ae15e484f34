"""The shared rate limiter: never over the window's budget, whatever the threads and answer order."""
from __future__ import annotations

import random
import threading
import time

from wootric_ingest.wootric.ratelimit import Quota, RateLimiter


def headers(limit: int, remaining: int, reset: float) -> dict[str, str]:
    return {"X-Rate-Limit-Limit": str(limit), "X-Rate-Limit-Remaining": str(remaining),
            "X-Rate-Limit-Reset": str(reset)}


class FixedWindowServer:
    """Counts requests in fixed windows from the first one, like Wootric; remembers the worst window."""

    def __init__(self, limit: int, window: float):
        self.limit, self.window = limit, window
        self.lock = threading.Lock()
        self.origin: float | None = None
        self.counts: dict[int, int] = {}

    def hit(self) -> dict[str, str]:
        with self.lock:
            now = time.time()
            self.origin = self.origin or now
            index = int((now - self.origin) // self.window)
            self.counts[index] = self.counts.get(index, 0) + 1
            reset = self.origin + (index + 1) * self.window
            return headers(self.limit, max(0, self.limit - self.counts[index]), reset)


def test_quota_headers_are_read_as_epoch_or_seconds_from_now():
    assert Quota.from_headers(headers(100, 7, 1_700_000_060), 1_700_000_000) == Quota(100, 7, 1_700_000_060)
    assert Quota.from_headers(headers(100, 7, 30), 1_700_000_000) == Quota(100, 7, 1_700_000_030)
    assert Quota.from_headers({"X-Rate-Limit-Limit": "100"}, 0) is None
    assert Quota.from_headers(None, 0) is None


def test_threads_never_exceed_a_window_and_use_all_of_it():
    server = FixedWindowServer(limit=10, window=0.4)
    limiter = RateLimiter(requests_per_minute=100)
    rng = random.Random(5)
    delays = [rng.uniform(0.0, 0.05) for _ in range(80)]

    def worker():
        while True:
            with lock:
                if not delays:
                    return
                delay = delays.pop()
            limiter.acquire()
            answer = server.hit()
            time.sleep(delay)  # answers come back out of order
            limiter.release(answer)

    lock = threading.Lock()
    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert max(server.counts.values()) <= 10, server.counts
    assert sum(server.counts.values()) == 80
    assert elapsed < 8 * 0.4 * 1.3, "the limiter left windows unused"


def test_another_client_on_the_account_lowers_the_budget_until_the_reset():
    limiter = RateLimiter(requests_per_minute=100)
    limiter.acquire()
    reset = time.time() + 0.5
    limiter.release(headers(100, 2, reset))
    assert limiter.acquire() < 0.05 and limiter.acquire() < 0.05
    limiter.release(None)
    limiter.release(None)
    waited = limiter.acquire()
    assert time.time() >= reset and waited >= 0.4


def test_a_429_stops_everyone_until_the_reset_or_for_one_learnt_window_without_headers():
    limiter = RateLimiter(requests_per_minute=100)
    limiter.acquire()
    limiter.release(headers(100, 90, time.time() + 0.5))
    limiter.acquire()
    reset = time.time() + 0.3
    limiter.release(headers(100, 0, reset), throttled=True)
    limiter.acquire()
    assert time.time() >= reset
    limiter.release(None, throttled=True)
    waited = limiter.acquire()
    assert 0.3 <= waited < 2.0, "a 429 without headers should wait about one window, not the assumed minute"


def test_requests_in_flight_at_the_reset_are_charged_to_the_new_window():
    limiter = RateLimiter(requests_per_minute=5)
    limiter.acquire()
    reset = time.time() + 0.2
    limiter.release(headers(5, 4, reset))
    for _ in range(4):
        limiter.acquire()
    time.sleep(0.3)
    limiter.acquire()  # new window: 5 - 4 in flight = 1 permit
    started = time.time()
    limiter.release(headers(5, 4, reset + 0.2))
    limiter.acquire()
    assert time.time() - started >= 0.05, "a fifth request went out while four were still in flight"


def test_a_late_answer_from_an_ended_window_does_not_raise_the_budget():
    limiter = RateLimiter(requests_per_minute=100)
    limiter.acquire()
    limiter.acquire()
    first = time.time() + 0.1
    limiter.release(headers(3, 1, first))
    time.sleep(0.15)
    second = time.time() + 0.3
    limiter.acquire()
    limiter.release(headers(3, 0, second))
    limiter.release(headers(3, 2, first))  # the straggler of the first window
    limiter.acquire()
    assert time.time() >= second
