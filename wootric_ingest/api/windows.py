"""Walking a stream's cursor filter through time windows, past the API's 30-page cap, losing nothing.

A list query returns at most 30 pages of 50. Instead of paging through a query by page number, a
window is walked by its cursor (keyset pagination): every request is page 1 of "what is left of the
window", bounded *inclusively* at the last second seen (`gte` when the API sends oldest first, `lte`
when it sends newest first, as responses and declines do whatever `sort_order` says; the order is
learnt from the data). Records of that boundary second come back again and are dropped by id, so a
second shared across pages is never cut. A quiet year costs one request; a dense hour costs one
request per 50 records plus the boundary records read twice.

Why keyset and not page numbers: between two page requests records change (churn). An end user
updated while we walk by `updated` jumps to "now"; a deleted response vanishes. Under page numbers
every such record *before* the current page shifts the later pages down by one and silently skips a
record that never changed. A keyset request depends only on the boundary second, so a record that
exists throughout is read: if it stays put, it lies ahead of the boundary; if it moves, it moves to
"now", ahead of the boundary again (walking oldest first; updates never move a record backwards, and
responses/declines walked by `created` never move at all). A moved record may be read twice, in its old
and new version; the table keeps the newest.

Page numbers are used only inside one second, where the filter cannot narrow any further: when a
whole page shares one second, the window pages on through that second (churn inside that very second
during those few requests is the one exposure left). A second with more than 1,500 records is then
read from its other end with the opposite sort order until the two readings meet; when the API
ignores the order, or the second holds more than the two readings reach, `CrowdedSecond` says so
rather than truncating.

A window can be split while it is walked (to feed idle workers): it keeps the part next to its
boundary and hands the far part to a new window. Windows never overlap, so de-duplication is only
ever needed at a window's own boundary second, and memory stays bounded by the records of one second.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from wootric_ingest.api.errors import CrowdedSecond, WootricError
from wootric_ingest.api.timestamps import unix_seconds
from wootric_ingest.streams import Stream

PER_PAGE = 50
MAX_PAGE = 30
MAX_REPEATS = 3
"""How often in a row a numbered page may come back as the page before it before the walk gives up."""
ASC, DESC = "asc", "desc"


@dataclass(frozen=True)
class PageRequest:
    """One page of one query: the cursor filter's inclusive bounds, a page number and a sort order."""

    lo: int
    hi: int
    page: int = 1
    sort_order: str = ASC

    def params(self, stream: Stream) -> dict[str, str | int]:
        f = stream.cursor_filter
        return {
            f"{f}[gte]": self.lo,
            f"{f}[lte]": self.hi,
            "page": self.page,
            "per_page": PER_PAGE,
            "sort_key": stream.sort_key,
            "sort_order": self.sort_order,
        }


@dataclass
class PageOutcome:
    """What one page brought: records to yield, a range now complete, windows split off."""

    records: list[dict]
    completed: tuple[int, int] | None
    spawned: list[Window] = field(default_factory=list)
    duplicates: int = 0


class StreamOrder:
    """The order the API sends one stream's records in, learnt from the first page that shows it."""

    def __init__(self, stream: Stream):
        self.stream = stream
        self.value: str | None = None

    def learn(self, stamps: list[int]) -> None:
        if len(stamps) < 2 or stamps[0] == stamps[-1]:
            order = None
        elif all(a <= b for a, b in zip(stamps, stamps[1:])):
            order = ASC
        elif all(a >= b for a, b in zip(stamps, stamps[1:])):
            order = DESC
        else:
            raise WootricError(
                f"{self.stream.name}: a page is not ordered by {self.stream.cursor_field}, "
                f"so it cannot be walked by its {self.stream.cursor_filter} filter"
            )
        if order and self.value and order != self.value:
            raise WootricError(f"{self.stream.name}: pages came back in both orders ({self.value}, then {order})")
        self.value = self.value or order


def _identity(record: dict) -> object:
    """What tells two readings of a record apart at a boundary second: its id, or the whole record when it has
    no usable id (such a record is still handed over; landing rejects it with the reason)."""
    rid = record.get("id")
    return rid if isinstance(rid, (int, str)) else json.dumps(record, sort_keys=True, default=str)


def uncovered(lo: int, hi: int, done: Sequence[tuple[int, int]] = ()) -> list[tuple[int, int]]:
    """The parts of [lo, hi] that no range in `done` covers (all bounds inclusive Unix seconds)."""
    gaps, start = [], lo
    for a, b in sorted(done):
        if b < start or a > hi:
            continue
        if a > start:
            gaps.append((start, a - 1))
        start = max(start, b + 1)
    if start <= hi:
        gaps.append((start, hi))
    return gaps


def merged(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Inclusive ranges with overlapping and adjacent ones joined, in order."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


class Window:
    """One window [lo, hi] of one stream, walked page by page until all its records are yielded.

    `rem_lo`/`rem_hi` bound what is not yet known to be complete; the boundary second (`_edge`) is the
    one at the walked side of it, with the ids already yielded there (`_seen`).
    """

    def __init__(self, stream: Stream, lo: int, hi: int, order: StreamOrder):
        self.stream, self.lo, self.hi = stream, lo, hi
        self.rem_lo, self.rem_hi = lo, hi
        self.order = order
        self.density: float | None = None
        self.finished = False
        self._edge: int | None = None
        self._seen: set = set()
        self._continuation: PageRequest | None = None
        self._reverse_seen: set = set()
        self._first_id: object = None
        self._last_id: object = None
        self._reported: tuple[int, int] | None = None
        self._previous_page: set = set()
        self._repeats = 0

    def __repr__(self) -> str:
        return f"Window({self.stream.name} [{self.lo}, {self.hi}], left [{self.rem_lo}, {self.rem_hi}])"

    def next_request(self) -> PageRequest:
        return self._continuation or PageRequest(self.rem_lo, self.rem_hi)

    @property
    def splittable(self) -> bool:
        """Only a keyset walk with a known order, that has measured its own density, can hand its far part away."""
        return (
            not self.finished
            and self._continuation is None
            and self.order.value is not None
            and self.density is not None
            and self.rem_hi > self.rem_lo
        )

    def estimated_records_left(self) -> float:
        """Records left, if the density of the last full page holds for the rest of the window."""
        return (self.density or 0.0) * (self.rem_hi - self.rem_lo + 1)

    def split(self, parts: int) -> list[Window]:
        """Cut what is left into `parts` equal spans of time: keep the one next to the boundary, return the others."""
        lo, hi = self.rem_lo, self.rem_hi
        parts = max(1, min(parts, hi - lo + 1))
        cuts = [lo + (hi - lo + 1) * i // parts for i in range(parts + 1)]
        spans = [(cuts[i], cuts[i + 1] - 1) for i in range(parts)]
        if self.order.value == DESC:
            spans.reverse()
        (keep_lo, keep_hi), far = spans[0], spans[1:]
        if self.order.value == ASC:
            self.hi = self.rem_hi = keep_hi
        else:
            self.lo = self.rem_lo = keep_lo
        return [Window(self.stream, a, b, self.order) for a, b in far]

    def take(self, request: PageRequest, records: list[dict]) -> PageOutcome:
        """Learn from the answer to `request` (this window's last `next_request()`)."""
        page = {_identity(r) for r in records}
        if request.page > 1 and page and page == self._previous_page:
            return self._repeated(request)
        self._previous_page, self._repeats = page, 0
        stamps = [self._stamp(r) for r in records]
        outside = [s for s in stamps if not request.lo <= s <= request.hi]
        if outside:
            raise WootricError(
                f"{self.stream.name}: asked for {self.stream.cursor_filter} in "
                f"[{request.lo}, {request.hi}] and got a record at {outside[0]}: "
                "the API did not apply the filter"
            )
        if request.sort_order == DESC:
            return self._take_reverse(request, records)
        self.order.learn(stamps)
        full = len(records) >= PER_PAGE
        kept = [(r, s) for r, s in zip(records, stamps) if self.lo <= s <= self.hi]
        fresh = [r for r, s in kept if not (s == self._edge and _identity(r) in self._seen)]
        duplicates = len(kept) - len(fresh)
        if not full or len(kept) < len(records):
            return self._finish(fresh, duplicates)
        last = stamps[-1]
        self.density = len(records) / (abs(last - stamps[0]) + 1)
        if stamps[0] == last:
            self._page_within(request, records, last)
        else:
            self._continuation = None
            self._edge, self._seen = last, {_identity(r) for r, s in zip(records, stamps) if s == last}
            self._advance_to(last)
        return PageOutcome(fresh, self._newly_completed(), duplicates=duplicates)

    def _repeated(self, request: PageRequest) -> PageOutcome:
        """Page n came back as page n-1 (a cache or proxy answering stale): taking it as page n would skip the
        records of the real one, so the same page is asked for again, a few times at most."""
        self._repeats += 1
        if self._repeats > MAX_REPEATS:
            raise WootricError(
                f"{self.stream.name}: GET {self.stream.path} answered page {request.page} with the "
                f"page before it {self._repeats} times in a row; stopping rather than skipping "
                "the records of that page"
            )
        self._continuation = request
        return PageOutcome([], None, duplicates=len(self._previous_page))

    def _page_within(self, request: PageRequest, records: list[dict], second: int) -> None:
        """A whole page of one second: page on through it, from the other end past page 30."""
        if request.page == 1 or second != self._edge:
            self._first_id = _identity(records[0])
        if second != self._edge:
            self._edge, self._seen = second, set()
        self._seen.update(_identity(r) for r in records)
        self._last_id = _identity(records[-1])
        self._advance_to(second)
        if request.page < MAX_PAGE:
            self._continuation = replace(request, page=request.page + 1)
        else:
            self._continuation = PageRequest(second, second, 1, DESC)

    def _take_reverse(self, request: PageRequest, records: list[dict]) -> PageOutcome:
        """A page of the crowded second `_edge` read backwards, until it meets the forward reading."""
        ids = [_identity(r) for r in records]
        if request.page == 1 and ids and ids[0] == self._first_id:
            raise self._crowded()
        met = next((i for i, rid in enumerate(ids) if rid in self._seen), None)
        if met is not None and ids[met] != self._last_id:
            raise self._crowded()
        fresh = [r for r in records[:met] if _identity(r) not in self._reverse_seen]
        self._reverse_seen.update(_identity(r) for r in fresh)
        if met is None and len(records) >= PER_PAGE:
            if request.page >= MAX_PAGE:
                raise self._crowded()
            self._continuation = replace(request, page=request.page + 1)
            return PageOutcome(fresh, None)
        return self._pass_crowded_second(fresh, len(records) - len(fresh))

    def _pass_crowded_second(self, fresh: list[dict], duplicates: int) -> PageOutcome:
        second = self._edge
        assert second is not None, "a crowded second is passed only while one is being read"
        self._continuation, self._edge, self._seen, self._reverse_seen = None, None, set(), set()
        spawned = []
        if self.order.value == ASC:
            self.rem_lo = second + 1
        elif self.order.value == DESC:
            self.rem_hi = second - 1
        else:
            if second > self.rem_lo:
                spawned.append(Window(self.stream, self.rem_lo, second - 1, self.order))
            self.lo = self.rem_lo = second + 1
            if self.rem_lo > self.rem_hi:
                self.finished = True
            return PageOutcome(fresh, (second, second), spawned, duplicates)
        if self.rem_lo > self.rem_hi:
            return self._finish(fresh, duplicates)
        return PageOutcome(fresh, self._newly_completed(), spawned, duplicates)

    def _finish(self, fresh: list[dict], duplicates: int) -> PageOutcome:
        self.finished = True
        self.rem_lo, self.rem_hi = self.hi + 1, self.hi
        self._edge, self._seen, self._continuation = None, set(), None
        return PageOutcome(fresh, (self.lo, self.hi), duplicates=duplicates)

    def _advance_to(self, second: int) -> None:
        if self.order.value == ASC:
            self.rem_lo = second
        elif self.order.value == DESC:
            self.rem_hi = second

    def _newly_completed(self) -> tuple[int, int] | None:
        """The walked side of the window, everything before the boundary second, when it grew."""
        if self.order.value == ASC and self.rem_lo > self.lo:
            span = (self.lo, self.rem_lo - 1)
        elif self.order.value == DESC and self.rem_hi < self.hi:
            span = (self.rem_hi + 1, self.hi)
        else:
            return None
        if span == self._reported:
            return None
        self._reported = span
        return span

    def _crowded(self) -> CrowdedSecond:
        assert self._edge is not None
        return CrowdedSecond(self.stream.name, self._edge, len(self._seen) + len(self._reverse_seen))

    def _stamp(self, record: dict) -> int:
        try:
            return unix_seconds(record.get(self.stream.cursor_field))
        except ValueError as e:
            raise WootricError(
                f"{self.stream.name} record {record.get('id')}: {self.stream.cursor_field} {e}"
            ) from None
