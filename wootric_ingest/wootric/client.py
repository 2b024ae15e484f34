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
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterator, Sequence
from urllib.parse import urlsplit

from wootric_ingest.config import ApiConfig
from wootric_ingest.streams import Stream
from wootric_ingest.wootric.auth import TokenProvider
from wootric_ingest.wootric.errors import ApiError, WootricError, api_message
from wootric_ingest.wootric.ratelimit import RateLimiter
from wootric_ingest.wootric.regions import endpoints
from wootric_ingest.wootric.stats import Stats
from wootric_ingest.wootric.transport import RetryPolicy, Transport
from wootric_ingest.wootric.windows import PER_PAGE, PageRequest, StreamOrder, Window, uncovered

log = logging.getLogger(__name__)

SPLIT_AT = 4 * PER_PAGE
"""A window is split only when it seems to hold this many records more: two pages for each half."""
LATENCY_MARGIN = 1.25


@dataclass(frozen=True)
class Batch:
    """Records as the API sent them, and a range of the cursor filter (inclusive Unix seconds) whose
    records have all been yielded by now, in this batch or earlier ones (None when none completed)."""

    records: list[dict]
    completed: tuple[int, int] | None


class WootricClient:
    """One account's API session: `authenticate()`, then `pages()` per stream, then `close()`."""

    def __init__(self, api: ApiConfig, *, retry: RetryPolicy = RetryPolicy()):
        self.api = api
        self.endpoints = endpoints(api.base_url)
        self.stats = Stats()
        self._limiter = RateLimiter(api.requests_per_minute)
        self._transport = Transport(timeout=api.timeout_seconds, limiter=self._limiter, stats=self.stats,
                                    retry=retry)
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

    def pages(self, stream: Stream, since: datetime, until: datetime,
              done: Sequence[tuple[int, int]] = ()) -> Iterator[Batch]:
        """Every record of `stream` whose cursor lies in [since, until], except in the `done` ranges.

        Batches come in no particular order; each record comes once, except a record that moved
        while we walked (an end user updated mid-run), which may come in both versions.
        """
        order = StreamOrder(stream)
        queue = deque(Window(stream, lo, hi, order) for lo, hi in uncovered(_second(since), _second(until), done))
        self.stats.add(windows=len(queue))
        log.info("%s: walking %s..%s by %s in %d window(s)", stream.name, since.isoformat(), until.isoformat(),
                 stream.cursor_filter, len(queue))
        return self._walk(stream, queue)

    def _walk(self, stream: Stream, queue: deque[Window]) -> Iterator[Batch]:
        cancel = threading.Event()
        pool = ThreadPoolExecutor(max_workers=self.api.max_concurrency, thread_name_prefix=f"wootric-{stream.name}")
        flying: dict[Future, tuple[Window, PageRequest]] = {}

        def launch(window: Window) -> None:
            request = window.next_request()
            flying[pool.submit(self._page, stream, request, cancel)] = (window, request)

        def fill() -> None:
            while queue and len(flying) < self.api.max_concurrency:
                launch(queue.popleft())
            while len(flying) < self._wanted_in_flight():
                widest = max((w for w, _ in flying.values() if w.splittable),
                             key=Window.estimated_records_left, default=None)
                if widest is None or widest.estimated_records_left() < SPLIT_AT:
                    return
                launch(widest.split())
                self.stats.add(windows=1)

        try:
            fill()
            while flying:
                finished, _ = wait(flying, return_when=FIRST_COMPLETED)
                for future in finished:
                    window, request = flying.pop(future)
                    progress = window.take(request, future.result())
                    queue.extend(progress.spawned)
                    self.stats.add(pages=1, records=len(progress.records), duplicates=progress.duplicates,
                                   windows=len(progress.spawned))
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

    def _page(self, stream: Stream, request: PageRequest, cancel: threading.Event) -> list[dict]:
        """One list page; a 401 renews the token once, any other 4xx is our mistake and stops the run."""
        url = f"{self.endpoints.api_root}/{stream.path}"
        endpoint = f"GET {urlsplit(url).path}"
        params = request.params(stream)
        for attempt in range(2):
            token = self._tokens.bearer(cancel)
            answer = self._transport.send("GET", url, endpoint=endpoint, expect=list, params=params,
                                          headers={"Authorization": f"Bearer {token}"}, cancel=cancel)
            if answer.status != 401:
                break
            if attempt == 0:
                self._tokens.rejected(token, cancel)
        else:
            raise WootricError(f"{endpoint} refused a freshly issued access token (HTTP 401)")
        if answer.status >= 400:
            query = "&".join(f"{k}={v}" for k, v in params.items())
            raise ApiError(f"{endpoint}?{query}", answer.status, api_message(answer.body))
        return answer.body


def _second(instant: datetime) -> int:
    """Unix seconds of an instant; a naive datetime is taken as UTC."""
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=timezone.utc)
    return math.floor(instant.timestamp())
