"""Counters of what the sandbox served, for tests, the chaos suite and benchmarks."""

from __future__ import annotations

import threading
from collections import Counter

COUNTERS = (
    "requests",
    "pages_served",
    "records_served",
    "served_401",
    "served_429",
    "injected_5xx",
    "token_grants",
    "churn_updates",
    "churn_deletes",
    "max_in_flight",
)
TALLIES = ("by_endpoint", "by_status", "token_grants_by_type", "faults_injected")


class Stats:
    """Thread-safe counters (flat) and tallies (by key); admin requests are never counted."""

    def __init__(self):
        self._lock = threading.Lock()
        self._in_flight = 0
        self.reset()

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counters[name] += n

    def tally(self, name: str, key: str | int, n: int = 1) -> None:
        with self._lock:
            self._tallies[name][str(key)] += n

    def enter(self) -> None:
        """A client request started; tracks the peak concurrency a benchmark reached."""
        with self._lock:
            self._in_flight += 1
            self._counters["max_in_flight"] = max(self._counters["max_in_flight"], self._in_flight)

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def snapshot(self) -> dict:
        with self._lock:
            return {
                **{name: self._counters[name] for name in COUNTERS},
                **{name: dict(sorted(self._tallies[name].items())) for name in TALLIES},
            }

    def reset(self) -> None:
        with self._lock:
            self._counters = Counter()
            self._counters["max_in_flight"] = self._in_flight
            self._tallies = {name: Counter() for name in TALLIES}
