"""Progress of a run's extractions, stream by stream: pages and records fetched, records per second, requests
left in the rate window, and an ETA when the batches say which time ranges are complete. Lines go through
Python logging, so they read the same in a terminal and in a Databricks driver log, throttled to one per
stream every `interval` seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from wootric_ingest.api import Batch
from wootric_ingest.api.windows import merged

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 10.0


@dataclass
class StreamProgress:
    """What one stream's extraction has fetched so far."""

    stream_name: str
    since: datetime
    until: datetime
    started: float
    pages: int = 0
    records: int = 0
    requests_left: int | None = None
    finished: float | None = None
    completed: list[tuple[int, int]] = field(default_factory=list)
    last_logged: float = 0.0

    def seconds(self, now: float) -> float:
        return (self.finished if self.finished is not None else now) - self.started

    def rate(self, now: float) -> float:
        """Records per second since the stream started."""
        elapsed = self.seconds(now)
        return self.records / elapsed if elapsed > 0 else 0.0

    def fraction(self) -> float | None:
        """How much of the [since, until] window is known complete, or None when the client does not say."""
        if not self.completed:
            return None
        lo, hi = self.since.timestamp(), self.until.timestamp()
        if hi <= lo:
            return 1.0
        covered = sum(max(0.0, min(b + 1, hi) - max(a, lo)) for a, b in self.completed)  # ranges are whole seconds
        return min(1.0, covered / (hi - lo))

    def eta(self, now: float) -> timedelta | None:
        """Time left, assuming the rest of the window goes as fast (per second of cursor time) as the part done."""
        done = self.fraction()
        if done is None or not 0 < done < 1:
            return None
        elapsed = self.seconds(now)
        return timedelta(seconds=round(elapsed * (1 - done) / done))

    def line(self, now: float) -> str:
        """One progress line, e.g. `responses: 12 pages, 600 records, 250 records/s, 87 requests left in the rate
        window, 40% of the time window done, ETA 0:01:20`."""
        parts = [f"{self.pages} pages", f"{self.records} records", f"{self.rate(now):.0f} records/s"]
        if self.requests_left is not None:
            parts.append(f"{self.requests_left} requests left in the rate window")
        done, eta = self.fraction(), self.eta(now)
        if done is not None:
            parts.append(f"{done:.0%} of the time window done")
        if eta is not None:
            parts.append(f"ETA {eta}")
        return f"{self.stream_name}: " + ", ".join(parts)


class Progress:
    """Progress of every stream of one run; logs a line per stream at most every `interval` seconds."""

    def __init__(self, *, interval: float = DEFAULT_INTERVAL, clock: Callable[[], float] = time.monotonic):
        self.interval, self.clock = interval, clock
        self.streams: dict[str, StreamProgress] = {}

    def start(self, stream_name: str, since: datetime, until: datetime) -> StreamProgress:
        now = self.clock()
        progress = StreamProgress(stream_name, since, until, started=now, last_logged=now)
        self.streams[stream_name] = progress
        return progress

    def page(self, progress: StreamProgress, batch: Batch, requests_left: int | None) -> None:
        """A batch the client yielded, and the requests it says are left in the rate window."""
        progress.pages += 1
        progress.records += len(batch.records)
        progress.requests_left = requests_left
        if batch.completed is not None:
            progress.completed = merged(progress.completed + [batch.completed])
        now = self.clock()
        if now - progress.last_logged >= self.interval:
            progress.last_logged = now
            log.info("%s", progress.line(now))

    def finish(self, progress: StreamProgress) -> None:
        progress.finished = self.clock()
        log.info(
            "%s: fetched %d records in %d pages, %.1f s (%.0f records/s)",
            progress.stream_name,
            progress.records,
            progress.pages,
            progress.seconds(progress.finished),
            progress.rate(progress.finished),
        )
