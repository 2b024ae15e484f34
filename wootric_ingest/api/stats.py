"""What a client has done so far, for logs, run records and benchmarks."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields


@dataclass
class Stats:
    """Counters shared by a client's threads; read them through `snapshot()`.

    requests: HTTP requests sent (token, retries and 429s included: each one spends rate limit);
    pages: list pages received; records: records yielded; windows: time windows walked;
    duplicates: records dropped because a boundary second was read twice; retries: transient failures
    retried; throttled_429: 429s received; token_refreshes: tokens obtained after the first;
    wait_seconds: time threads spent waiting for the rate limiter.
    """

    requests: int = 0
    pages: int = 0
    records: int = 0
    windows: int = 0
    duplicates: int = 0
    retries: int = 0
    throttled_429: int = 0
    token_refreshes: int = 0
    wait_seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: float) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
