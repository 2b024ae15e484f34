"""Progress of a run, stream by stream, and the one-screen summary at its end.

`ProgressClient` wraps whichever API client the job uses and watches what its `pages()` yields, so the
landing code needs no hook: pages and records fetched, records per second, requests left in the rate
window (when the client exposes `requests_left`), and an ETA when the batches say which time ranges
are complete. Lines go through Python logging, so they read the same in a terminal and in a Databricks
driver log, throttled to one per stream every `interval` seconds.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator, Sequence

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 10.0


def _records(batch: Any) -> list:
    """The records of one batch: a client yields either plain lists or batches with `.records`."""
    return batch if isinstance(batch, list) else batch.records


def _merge(ranges: list[tuple[float, float]], new: tuple[float, float]) -> list[tuple[float, float]]:
    """`ranges` (sorted, disjoint) with `new` added, touching ranges joined."""
    merged: list[tuple[float, float]] = []
    lo, hi = new
    for a, b in ranges:
        if b < lo or a > hi:
            merged.append((a, b))
        else:
            lo, hi = min(lo, a), max(hi, b)
    return sorted(merged + [(lo, hi)])


@dataclass
class StreamProgress:
    """What one stream's extraction has fetched so far."""

    stream: str
    since: datetime
    until: datetime
    started: float
    pages: int = 0
    records: int = 0
    finished: float | None = None
    completed: list[tuple[float, float]] = field(default_factory=list)
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


def requests_left(client: Any) -> int | None:
    """The requests left in the current rate-limit window, if the client exposes `requests_left`."""
    value = getattr(client, "requests_left", None)
    value = value() if callable(value) else value
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class Progress:
    """Progress of every stream of one run; logs a line per stream at most every `interval` seconds."""

    def __init__(self, *, interval: float = DEFAULT_INTERVAL, clock: Callable[[], float] = time.monotonic,
                 requests_left: Callable[[], int | None] = lambda: None):
        self.interval, self.clock, self.requests_left = interval, clock, requests_left
        self.streams: dict[str, StreamProgress] = {}

    def start(self, stream: str, since: datetime, until: datetime) -> StreamProgress:
        now = self.clock()
        progress = StreamProgress(stream, since, until, started=now, last_logged=now)
        self.streams[stream] = progress
        return progress

    def page(self, progress: StreamProgress, batch: Any) -> None:
        progress.pages += 1
        progress.records += len(_records(batch))
        completed = getattr(batch, "completed", None)
        if completed is not None:
            progress.completed = _merge(progress.completed, completed)
        now = self.clock()
        if now - progress.last_logged >= self.interval:
            progress.last_logged = now
            log.info("%s", self.line(progress, now))

    def finish(self, progress: StreamProgress) -> None:
        progress.finished = self.clock()
        log.info("%s: fetched %d records in %d pages, %.1f s (%.0f records/s)", progress.stream,
                 progress.records, progress.pages, progress.seconds(progress.finished),
                 progress.rate(progress.finished))

    def line(self, progress: StreamProgress, now: float) -> str:
        """One progress line: `responses: 12 pages, 600 records, 250 records/s, 87 requests left, 40% done, ETA 0:01:20`."""
        parts = [f"{progress.pages} pages", f"{progress.records} records", f"{progress.rate(now):.0f} records/s"]
        left = self.requests_left()
        if left is not None:
            parts.append(f"{left} requests left in the rate window")
        done, eta = progress.fraction(), progress.eta(now)
        if done is not None:
            parts.append(f"{done:.0%} of the time window done")
        if eta is not None:
            parts.append(f"ETA {eta}")
        return f"{progress.stream}: " + ", ".join(parts)


class ProgressClient:
    """Any API client, with each stream's pages counted into a `Progress` as they are yielded."""

    def __init__(self, client: Any, progress: Progress):
        self._client, self.progress = client, progress

    def pages(self, stream, since: datetime, until: datetime, *args, **kwargs) -> Iterator[Any]:
        progress = self.progress.start(stream.name, since, until)
        batches = self._client.pages(stream, since, until, *args, **kwargs)
        try:
            for batch in batches:
                self.progress.page(progress, batch)
                yield batch
        finally:
            getattr(batches, "close", lambda: None)()  # stop the client's workers when the consumer stops early
            self.progress.finish(progress)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def summary(results: Sequence[Any], progress: Progress) -> str:
    """The run's closing table, one row per stream, then why each stream ran as it did and what went wrong."""
    header = ("stream", "sync", "pages", "fetched", "inserted", "updated", "deleted", "table rows", "requests",
              "seconds", "records/s", "status")
    left_aligned = {0, 1, len(header) - 1}
    rows = []
    for r in results:
        fetched = progress.streams.get(r.stream)
        pages = str(fetched.pages) if fetched else "-"
        rate = f"{fetched.rate(progress.clock()):.0f}" if fetched else "-"
        rows.append((r.stream, r.mode, pages, str(r.records_fetched), str(r.rows_inserted), str(r.rows_updated),
                     str(r.rows_deleted), str(r.table_rows), str(r.api_requests), f"{r.seconds:.1f}", rate, r.status))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def fmt(row: Sequence[str]) -> str:
        return "  ".join(cell.ljust(w) if i in left_aligned else cell.rjust(w)
                         for i, (cell, w) in enumerate(zip(row, widths))).rstrip()

    lines = [fmt(header), fmt(["-" * w for w in widths]), *map(fmt, rows), ""]
    for r in results:
        line = f"{r.stream}: {r.mode} sync, {r.reason}" if r.mode else f"{r.stream}:"
        if r.records_rejected:
            line += f"; {r.records_rejected} records without a usable id kept in _wootric_ingest/rejected"
        if r.error:
            line += f"; failed: {r.error.splitlines()[0]}"
        lines.append(line)
    return "\n".join(lines)
