"""The Wootric API client the job and staging use: every record of a stream between two instants, once,
at the rate limit's ceiling and not one request above it.

`WootricClient` wires the parts together: `TokenProvider` (auth), `RateLimiter` (one budget for all
threads), `Transport` (HTTP and retries) and `Window` (walking the cursor filter past the page cap).
`pages()` keeps one request in flight per window on a thread pool. When the API is slow, a single
window cannot reach the ceiling, so the window with the most records left is split (each half is its
own keyset walk) until enough requests are in flight to hide the latency: ceiling x latency, with
margin, capped by `max_concurrency`. Splitting only then keeps the extra cost (about one request per
window) small when the API is fast.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Generator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from wootric_ingest.api.auth import TokenProvider
from wootric_ingest.api.errors import ApiError, WootricError, api_message
from wootric_ingest.api.ratelimit import RateLimiter
from wootric_ingest.api.regions import endpoints
from wootric_ingest.api.stats import Stats
from wootric_ingest.api.transport import RetryPolicy, Transport
from wootric_ingest.api.windows import PER_PAGE, PageRequest, StreamOrder, Window, merged, uncovered
from wootric_ingest.config import ApiConfig
from wootric_ingest.streams import Stream

log = logging.getLogger(__name__)

SPLIT_AT = 2 * PER_PAGE
"""Each part of a split window should hold at least this many records by its density, two pages."""
LATENCY_MARGIN = 1.25
TOKEN_ATTEMPTS = 3
"""Tokens one request may try: each 401 renews the token once; fresh tokens refused again and again is a fault."""
LIVE_EDGE_SLACK = 300
"""Seconds before the run's start from which a record may have moved during the run (absorbs clock skew)."""


@dataclass(frozen=True)
class Batch:
    """Records as the API sent them, and a range of the cursor filter (inclusive Unix seconds) whose
    records have all been yielded by now, in this batch or earlier ones (None when none completed)."""

    records: list[dict]
    completed: tuple[int, int] | None


class WootricClient:
    """One account's API session: `authenticate()`, then `pages()` per stream, then `close()`."""

    def __init__(self, api: ApiConfig, *, retry: RetryPolicy | None = None, share: float = 1.0):
        """`retry` defaults to giving up on a request after the config's `retry_give_up_seconds`; `share` is the
        fraction of the account's rate limit this client may spend (one of several partitions of a Spark read)."""
        retry = retry or RetryPolicy(give_up_after=api.retry_give_up_seconds)
        self.api = api
        self.endpoints = endpoints(api.base_url)
        self.stats = Stats()
        self._limiter = RateLimiter(api.requests_per_minute, share=share)
        self._transport = Transport(timeout=api.timeout_seconds, limiter=self._limiter, stats=self.stats, retry=retry)
        self._tokens = TokenProvider(api.auth, self.endpoints.token_url, self._transport, self.stats)
        self._not_cancelled = threading.Event()

    def __enter__(self) -> WootricClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def authenticate(self) -> None:
        """Obtain a token now, so bad credentials fail before any work starts."""
        self._tokens.bearer(self._not_cancelled)

    def close(self) -> None:
        self._transport.close()

    def requests_left(self) -> int:
        """Requests the rate limiter may still send in the current window (for progress lines)."""
        return self._limiter.remaining()

    def pages(
        self, stream: Stream, since: datetime, until: datetime, done: Sequence[tuple[int, int]] = ()
    ) -> Generator[Batch, None, None]:
        """Every record of `stream` whose cursor lies in [since, until], except in the `done` ranges.

        Batches come in no particular order; each record comes once, except a record that moved
        while we walked (an end user updated mid-run), which may come in both versions. A stream the API sends
        whole (segments) comes whole, in one batch, whatever the range.
        """
        if stream.read_whole:
            return self._whole(stream, _second(since), _second(until), done)
        order = StreamOrder(stream)
        live_edge = LiveEdge(stream, time.time() - LIVE_EDGE_SLACK)
        queue = deque(
            Window(stream, lo, hi, order, unsettled_from=live_edge.since)
            for lo, hi in uncovered(_second(since), _second(until), done)
        )
        log.info(
            "%s: walking %s..%s by %s in %d window(s)",
            stream.name,
            since.isoformat(),
            until.isoformat(),
            stream.cursor_filter,
            len(queue),
        )
        return self._walk(stream, queue, live_edge)

    def _whole(self, stream: Stream, lo: int, hi: int, done: Sequence[tuple[int, int]]) -> Generator[Batch, None, None]:
        """One request for the whole stream, reported as completing the run's whole range [lo, hi], so a retry of
        the run that staged it does not read it again."""
        if not uncovered(lo, hi, done):
            return
        log.info("%s: reading the whole list in one request", stream.name)
        records = self._get(stream.path, {}, list, self._not_cancelled)
        self.stats.add(windows=1, pages=1, records=len(records))
        yield Batch(records, (lo, hi))

    def _walk(self, stream: Stream, queue: deque[Window], live_edge: LiveEdge) -> Generator[Batch, None, None]:
        cancel = threading.Event()
        pool = ThreadPoolExecutor(max_workers=self.api.max_concurrency, thread_name_prefix=f"wootric-{stream.name}")
        flying: dict[Future, tuple[Window, PageRequest]] = {}

        def launch(window: Window) -> None:
            request = window.next_request()
            flying[pool.submit(self._page, stream, request, cancel)] = (window, request)

        def open_windows(windows: list[Window]) -> None:
            self.stats.add(windows=len(windows))
            live_edge.opened(len(windows))

        def fill() -> None:
            while queue and len(flying) < self.api.max_concurrency:
                launch(queue.popleft())
            while (slots := self._wanted_in_flight() - len(flying)) > 0:
                widest = max(
                    (w for w, _ in flying.values() if w.splittable), key=Window.estimated_records_left, default=None
                )
                parts = min(slots + 1, int(widest.estimated_records_left() // SPLIT_AT) + 1) if widest else 1
                if widest is None or parts < 2:
                    return
                split_off = widest.split(parts)
                open_windows(split_off)
                for window in split_off:
                    launch(window)

        try:
            open_windows(list(queue))
            fill()
            while flying:
                finished, _ = wait(flying, return_when=FIRST_COMPLETED)
                for future in finished:
                    window, request = flying.pop(future)
                    progress = window.take(request, future.result())
                    queue.extend(progress.spawned)
                    open_windows(progress.spawned)
                    if window.finished:
                        live_edge.finished(window)
                    if window.finished and not flying and not queue:  # the last window, not one relaunched
                        queue.extend(again := live_edge.rewalk(window.order))
                        self.stats.add(windows=len(again))
                    self.stats.add(pages=1, records=len(progress.records), duplicates=progress.duplicates)
                    if not window.finished:
                        launch(window)
                    fill()
                    if progress.records or progress.completed:
                        yield Batch(progress.records, progress.completed)
        finally:
            cancel.set()
            pool.shutdown(wait=True, cancel_futures=True)
        log.info("%s: done; client totals so far %s", stream.name, self.stats.snapshot())

    def _wanted_in_flight(self) -> int:
        """Requests in flight needed to keep the limiter busy: its rate times the API's latency."""
        needed = math.ceil(self._limiter.rate() * self._transport.latency * LATENCY_MARGIN) + 1
        return min(self.api.max_concurrency, needed)

    def nps_summary(self, first: date, last: date) -> dict:
        """`GET /v1/nps_summary` for the local dates `first`..`last` (inclusive, in the account's time zone): the
        account's own NPS figures, through the same limiter, retries and token renewal as the lists."""
        params = {"date[start]": first.isoformat(), "date[end]": last.isoformat()}
        return self._get("nps_summary", params, dict, self._not_cancelled)

    def _page(self, stream: Stream, request: PageRequest, cancel: threading.Event) -> list[dict]:
        """One list page."""
        return self._get(stream.path, request.params(stream), list, cancel)

    def _get(self, path: str, params: dict, expect: type, cancel: threading.Event) -> Any:
        """One GET of the API; a 401 renews the token (a token can expire early), any other 4xx stops the run."""
        url = f"{self.endpoints.api_root}/{path}"
        endpoint = f"GET {urlsplit(url).path}"
        used: list[str] = []

        def authorization() -> dict[str, str]:
            used.append(self._tokens.bearer(cancel))
            return {"Authorization": f"Bearer {used[-1]}"}

        for _ in range(TOKEN_ATTEMPTS):
            answer = self._transport.send(
                "GET", url, endpoint=endpoint, expect=expect, params=params, headers=authorization, cancel=cancel
            )
            if answer.status != 401:
                break
            self._tokens.rejected(used[-1], cancel)
        else:
            raise WootricError(f"{endpoint} refused {TOKEN_ATTEMPTS} access tokens in a row (HTTP 401)")
        if answer.status >= 400:
            query = "&".join(f"{k}={v}" for k, v in params.items())
            raise ApiError(f"{endpoint}?{query}", answer.status, api_message(answer.body))
        return answer.body


class LiveEdge:
    """Records that move while we walk, and where to look for them again.

    Updating an end user moves it to "now" on the `updated` filter. A window that has finished cannot
    see what lands in it afterwards, so with several windows an end user could move from a part one
    window had not reached yet into the part of another window that had already finished. Only the
    live edge (from just before the run started) can receive such records, so when more than one
    window walked, the live edge of every finished window is walked once more at the end, after the
    last window finished, by one window that is never split. A single window needs nothing: what it has not reached
    can only move ahead of it. Streams walked by `created` never move.
    """

    def __init__(self, stream: Stream, since: float):
        self.since = math.floor(since) if stream.cursor_moves else None
        """Where records may move from while the stream is walked (None when its cursor never moves)."""
        self._ranges: list[tuple[int, int]] = []
        self._windows = 0

    def opened(self, windows: int) -> None:
        self._windows += windows

    def finished(self, window: Window) -> None:
        if self.since is not None and window.hi >= self.since:
            self._ranges.append((max(window.lo, self.since), window.hi))

    def rewalk(self, order: StreamOrder) -> list[Window]:
        """Windows over the live edge when several windows walked it, else none. They are never split: one
        walk over a range cannot miss a record that moves ahead of it, while parts walked at once could again
        (and churn during each pass would call for yet another)."""
        ranges, self._ranges = self._ranges, []
        if self._windows < 2:
            return []
        windows = [
            Window(order.stream, lo, hi, order, divisible=False, unsettled_from=self.since) for lo, hi in merged(ranges)
        ]
        self._windows = len(windows)
        return windows


def _second(instant: datetime) -> int:
    """Unix seconds of an instant; a naive datetime is taken as UTC."""
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=timezone.utc)
    return math.floor(instant.timestamp())
