"""The shared rate limiter: never over the window's budget, whatever the threads and answer order, and
not one permit under it either."""

from __future__ import annotations

import math
import random
import threading
import time

import pytest

from wootric_ingest.api.errors import Cancelled
from wootric_ingest.api.ratelimit import Quota, RateLimiter


def headers(limit: int, remaining: int, reset: float) -> dict[str, str]:
    return {
        "X-Rate-Limit-Limit": str(limit),
        "X-Rate-Limit-Remaining": str(remaining),
        "X-Rate-Limit-Reset": str(reset),
    }


class FixedWindowServer:
    """Counts requests in fixed windows from the first one, like Wootric, in the window they arrive in.

    `announce` is how the reset is told: "exact", or "late": rounded up to a tenth of a second, as the
    sandbox rounds it up to a whole second.
    """

    def __init__(self, limit: int, window: float, announce: str = "exact"):
        self.limit, self.window, self.announce = limit, window, announce
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
            if self.announce == "late":
                reset = math.ceil(reset * 10) / 10
            return headers(self.limit, max(0, self.limit - self.counts[index]), reset)


def run_threads(
    limiter: RateLimiter,
    server: FixedWindowServer,
    requests: int,
    *,
    transit: float,
    answer: float,
    threads: int = 8,
    seed: int = 5,
) -> None:
    """`requests` requests through `threads` threads, each spending up to `transit` s on the way to the
    server (so one sent just before a reset may arrive after it) and up to `answer` s on the way back."""
    rng = random.Random(seed)
    delays = [(rng.uniform(0, transit), rng.uniform(0, answer)) for _ in range(requests)]
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not delays:
                    return
                there, back = delays.pop()
            permit = limiter.acquire()
            time.sleep(there)
            answer_headers = server.hit()
            time.sleep(back)
            limiter.release(permit, answer_headers)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()


def blocked(limiter: RateLimiter) -> bool:
    """Whether the next permit has to wait (the attempt is cancelled after a moment)."""
    cancel, outcome = threading.Event(), []

    def attempt():
        try:
            limiter.acquire(cancel)
            outcome.append(False)
        except Cancelled:
            outcome.append(True)

    thread = threading.Thread(target=attempt)
    thread.start()
    thread.join(0.2)
    cancel.set()
    thread.join()
    return outcome[0]


def test_quota_headers_are_read_as_epoch_or_seconds_from_now():
    assert Quota.from_headers(headers(100, 7, 1_700_000_060), 1_700_000_000) == Quota(100, 7, 1_700_000_060)
    assert Quota.from_headers(headers(100, 7, 30), 1_700_000_000) == Quota(100, 7, 1_700_000_030)
    assert Quota.from_headers({"X-Rate-Limit-Limit": "100"}, 0) is None
    assert Quota.from_headers(None, 0) is None


def test_threads_answered_out_of_order_spend_every_window_to_the_last_request():
    server = FixedWindowServer(limit=10, window=0.4)
    run_threads(RateLimiter(requests_per_minute=100), server, 80, transit=0.0, answer=0.05)
    counts = [server.counts.get(i, 0) for i in range(max(server.counts) + 1)]
    assert sum(counts) == 80
    assert counts == [10] * 8, "a window was left part unused, or went over"


@pytest.mark.parametrize("announce", ["exact", "late"])
@pytest.mark.parametrize("threads", [2, 8])
def test_requests_that_arrive_after_the_reset_they_were_sent_before_never_overrun_the_new_window(announce, threads):
    for seed in range(2):
        server = FixedWindowServer(limit=10, window=0.3, announce=announce)
        run_threads(
            RateLimiter(requests_per_minute=100), server, 50, transit=0.08, answer=0.04, threads=threads, seed=seed
        )
        assert max(server.counts.values()) <= 10, server.counts
        assert sum(server.counts.values()) == 50


def test_answers_coming_back_in_reverse_order_of_arrival_leave_the_budget_whole():
    limiter = RateLimiter(requests_per_minute=100)
    reset = time.time() + 30
    permits = [limiter.acquire() for _ in range(5)]
    for arrived, permit in reversed(list(enumerate(permits, start=1))):
        limiter.release(permit, headers(10, 10 - arrived, reset))
    assert [blocked(limiter) for _ in range(6)] == [False] * 5 + [True], "not one permit more or less than 10"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_reset_told_in_seconds_from_now_that_drifts_between_answers_is_still_one_window():
    clock = Clock()
    limiter = RateLimiter(requests_per_minute=100, clock=clock)
    reset = clock.now + 30
    permits = [limiter.acquire() for _ in range(10)]
    for arrived, permit in enumerate(permits, start=1):
        clock.now += 0.7
        drift = 0.6 if arrived % 2 else -0.6  # whole seconds, rounded either way, read on arrival
        limiter.release(permit, headers(20, 20 - arrived, round(reset - clock.now + drift)))
    assert [blocked(limiter) for _ in range(11)] == [False] * 10 + [True]


def test_an_answer_that_ends_our_window_early_counts_every_request_that_was_out_with_it():
    limiter = RateLimiter(requests_per_minute=100)
    reset = time.time() + 30
    limiter.release(limiter.acquire(), headers(10, 9, reset))
    early = limiter.acquire()
    with_it = [limiter.acquire() for _ in range(3)]
    for permit in with_it:
        limiter.release(permit, headers(10, 5, reset))
    limiter.release(early, headers(10, 9, reset + 30))  # the server has moved on, or its Reset drifted
    # the three answers that came back while it was out may have been counted after it
    assert [blocked(limiter) for _ in range(7)] == [False] * (10 - 1 - 3) + [True]


def test_another_client_on_the_account_lowers_the_budget_until_the_reset():
    limiter = RateLimiter(requests_per_minute=100)
    first = limiter.acquire()
    reset = time.time() + 0.5
    limiter.release(first, headers(100, 2, reset))
    second, third = limiter.acquire(), limiter.acquire()
    assert second.waited < 0.05 and third.waited < 0.05
    limiter.release(second, None)
    limiter.release(third, None)
    assert limiter.acquire().waited >= 0.4 and time.time() >= reset


def test_a_429_stops_everyone_until_the_reset_or_for_one_learnt_window_without_headers():
    limiter = RateLimiter(requests_per_minute=100)
    limiter.release(limiter.acquire(), headers(100, 90, time.time() + 0.5))
    permit = limiter.acquire()
    reset = time.time() + 0.3
    limiter.release(permit, headers(100, 0, reset), throttled=True)
    permit = limiter.acquire()
    assert time.time() >= reset
    limiter.release(permit, None, throttled=True)
    waited = limiter.acquire().waited
    assert 0.3 <= waited < 2.0, "a 429 without headers should wait about one window, not the assumed minute"


def test_requests_in_flight_at_the_reset_are_charged_to_the_new_window():
    limiter = RateLimiter(requests_per_minute=5)
    limiter.release(limiter.acquire(), headers(5, 4, reset := time.time() + 0.2))
    in_flight = [limiter.acquire() for _ in range(4)]
    time.sleep(0.3)
    limiter.acquire()  # new window: 5 - 4 in flight = 1 permit
    started = time.time()
    limiter.release(in_flight[0], headers(5, 4, reset + 0.2))
    limiter.acquire()
    assert time.time() - started >= 0.05, "a fifth request went out while four were still in flight"


def test_an_answer_without_headers_is_charged_to_the_next_window_unless_it_came_back_before_the_reset():
    limiter = RateLimiter(requests_per_minute=100)
    token = limiter.acquire()
    limiter.release(token, None)  # the token endpoint: counts, says nothing; came back before `placed`
    placed = limiter.acquire()
    limiter.release(placed, headers(3, 1, time.time() + 0.2))  # 3 - 1 = 2 counted: the token and `placed`
    late = limiter.acquire()
    limiter.release(late, None)  # may have arrived after the reset
    time.sleep(0.25)
    assert limiter.acquire().waited < 0.05 and limiter.acquire().waited < 0.05
    started = time.time()
    limiter.acquire()
    assert time.time() - started >= 0.1, "the late answer without headers was not charged to the new window"


def test_a_late_answer_from_an_ended_window_does_not_raise_the_budget():
    limiter = RateLimiter(requests_per_minute=100)
    straggler = limiter.acquire()
    answered = limiter.acquire()
    first = time.time() + 0.1
    limiter.release(answered, headers(3, 1, first))
    time.sleep(0.15)
    second = time.time() + 0.3
    limiter.release(limiter.acquire(), headers(3, 0, second))
    limiter.release(straggler, headers(3, 2, first))
    limiter.acquire()
    assert time.time() >= second


def test_a_429_from_an_ended_window_does_not_stop_the_current_one():
    limiter = RateLimiter(requests_per_minute=100)
    straggler = limiter.acquire()
    first = time.time() + 0.1
    limiter.release(limiter.acquire(), headers(10, 8, first))
    time.sleep(0.15)
    limiter.release(limiter.acquire(), headers(10, 9, time.time() + 0.3))
    limiter.release(straggler, headers(10, 0, first), throttled=True)
    assert limiter.acquire().waited < 0.05


def test_a_limiter_with_a_share_of_the_account_spends_only_that_share_of_the_limit_the_headers_tell():
    before_headers = RateLimiter(requests_per_minute=100, share=0.25, clock=Clock())
    assert [blocked(before_headers) for _ in range(26)] == [False] * 25 + [True]  # a quarter of 100
    clock = Clock()
    limiter = RateLimiter(requests_per_minute=100, share=0.25, clock=clock)
    limiter.release(limiter.acquire(), headers(40, 30, clock.now + 30))  # siblings sent 9 of the account's 40
    assert limiter.remaining() == 9
    assert [blocked(limiter) for _ in range(10)] == [False] * 9 + [True]
    with pytest.raises(ValueError, match="share"):
        RateLimiter(requests_per_minute=100, share=0)
