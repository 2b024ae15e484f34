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
whole page shares one second, the window pages on through that second. A record leaving that second
between two of those requests (updated again, or deleted) shifts the later pages up and one record is
skipped. Only the live edge receives moves, so a crowded second there (from `unsettled_from` on) is read
again, pass after pass, before the window walks on, until a pass brings nothing new: a record then stays
unread only if every pass skipped it. Elsewhere, churn inside that very second during those few requests is the
one exposure left. A second with more than 1,500 records is then
read from its other end with the opposite sort order until the two readings meet; when the API
ignores the order, or the second holds more than the two readings reach, `CrowdedSecond` says so
rather than truncating.

A window can be split while it is walked (to feed idle workers): it keeps the part next to its
boundary and hands the far part to a new window. Windows never overlap, so de-duplication is only
ever needed at a window's own boundary second, and memory stays bounded by the records of one second.

A record whose cursor cannot be read (`"created_at": "yesterday-ish"`) is still placed: the API's filter
put it inside the request, and the page is sorted by the real time, so the readable records before and
after it bound where it lies. It is handed over once, with those bounds standing in for its second in the
de-duplication, and it never becomes the boundary nor counts for the order or the density. When a full
page's readable cursors cannot move the boundary on (all of them unreadable, or the readable ones all at
the boundary second), the window narrows instead (its time range is cut, and the API's filter places the
records): slower, and still nothing is skipped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from wootric_ingest.api.errors import CrowdedSecond, WootricError
from wootric_ingest.api.timestamps import unix_seconds
from wootric_ingest.streams import Stream

log = logging.getLogger(__name__)

PER_PAGE = 50
MAX_PAGE = 30
MAX_REPEATS = 3
"""How often in a row a numbered page may come back as the page before it before the walk gives up."""
ASC, DESC = "asc", "desc"

Bounds = tuple[int, int]
"""Where a record lies on the cursor filter, inclusive Unix seconds: its own second when its cursor reads,
else the span its place on the page allows."""


@dataclass(frozen=True)
class PageRequest:
    """One page of one query: the cursor filter's inclusive bounds, a page number and a sort order."""

    lo: int
    hi: int
    page: int = 1
    sort_order: str = ASC

    def params(self, stream: Stream) -> dict[str, str | int]:
        f = stream.cursor_filter
        assert f is not None and stream.sort_key is not None, f"{stream.name} is read whole, not by pages"
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
    one at the walked side of it. `_seen` holds the records already yielded that a later page may bring
    again (those that may lie in the boundary second), each with where it lies.
    """

    def __init__(
        self,
        stream: Stream,
        lo: int,
        hi: int,
        order: StreamOrder,
        *,
        divisible: bool = True,
        unsettled_from: int | None = None,
    ):
        """`unsettled_from`: the second from which records may still move out while the window walks (the live
        edge of a stream whose cursor moves); a crowded second there is read again until it settles."""
        self.stream, self.lo, self.hi = stream, lo, hi
        self.divisible = divisible
        self.unsettled_from = unsettled_from
        self.rem_lo, self.rem_hi = lo, hi
        self.order = order
        self.density: float | None = None
        self.finished = False
        self._edge: int | None = None
        self._seen: dict[object, Bounds] = {}
        self._continuation: PageRequest | None = None
        self._reverse_seen: set = set()
        self._first_id: object = None
        self._last_id: object = None
        self._reported: tuple[int, int] | None = None
        self._previous_page: set = set()
        self._repeats = 0
        self._paged: tuple[int, set] | None = None
        self._recheck: _Recheck | None = None

    def __repr__(self) -> str:
        return f"Window({self.stream.name} [{self.lo}, {self.hi}], left [{self.rem_lo}, {self.rem_hi}])"

    def next_request(self) -> PageRequest:
        if self._recheck:
            second = self._recheck.second
            return PageRequest(second, second, self._recheck.page, self.order.value or ASC)
        return self._continuation or PageRequest(self.rem_lo, self.rem_hi)

    @property
    def splittable(self) -> bool:
        """Only a keyset walk with a known order, that has measured its own density, can hand its far part away."""
        return (
            self.divisible
            and not self.finished
            and self._continuation is None
            and self._recheck is None
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
        return [self._part(a, b) for a, b in far]

    def take(self, request: PageRequest, records: list[dict]) -> PageOutcome:
        """Learn from the answer to `request` (this window's last `next_request()`)."""
        if self._recheck:
            return self._take_recheck(request, records)
        page = {_identity(r) for r in records}
        if request.page > 1 and page and page == self._previous_page:
            return self._repeated(request)
        self._previous_page, self._repeats = page, 0
        stamps = self._stamps(request, records)
        if request.sort_order == DESC:
            return self._take_reverse(request, records)
        readable = [s for s in stamps if s is not None]
        self.order.learn(readable)
        placed = list(zip(records, self._place(request, stamps)))
        if len(readable) < len(stamps) and any(self._straddles(bounds) for _, bounds in placed):
            # Split while the request flew, and a record may lie on either side of the cut: ask again within the
            # window's own bounds (from page 1; what was yielded at the boundary second is dropped by id).
            self._continuation = None
            return PageOutcome([], None)
        kept = [(r, b) for r, b in placed if self.lo <= b[0] and b[1] <= self.hi]
        if len(records) < PER_PAGE or len(kept) < len(records):
            fresh = self._fresh(kept)
            if self._leave_paged_second(kept, then_finish=True):
                return PageOutcome(fresh, None, duplicates=len(kept) - len(fresh))
            return self._finish(fresh, len(kept) - len(fresh))
        last = readable[-1] if readable else None
        if last is not None and any(self._before(b, last) for _, b in kept):
            # A record that may lie past the new boundary (an unreadable one after the last readable) waits for
            # the next request, which starts there: yielded now, a split could hand its span to a new window.
            kept = [(r, b) for r, b in kept if not self._past(b, last)]
            rechecking = self._leave_paged_second(kept)
            fresh = self._fresh(kept)
            self.density = len(readable) / (abs(last - readable[0]) + 1)
            self._continuation = None
            self._remember(kept, last)
            self._advance_to(last)
            if rechecking:
                return PageOutcome(fresh, None, duplicates=len(kept) - len(fresh))
        elif (second := _one_second(kept)) is not None:
            fresh = self._fresh(kept)
            self._page_within(request, kept, second)
        else:
            return self._narrow(stamps, last)
        return PageOutcome(fresh, self._newly_completed(), duplicates=len(kept) - len(fresh))

    def _stamps(self, request: PageRequest, records: list[dict]) -> list[int | None]:
        """The page's cursors (None where one cannot be read), after checking the API applied the filter."""
        stamps = [self._stamp(r) for r in records]
        outside = [s for s in stamps if s is not None and not request.lo <= s <= request.hi]
        if outside:
            raise WootricError(
                f"{self.stream.name}: asked for {self.stream.cursor_filter} in "
                f"[{request.lo}, {request.hi}] and got a record at {outside[0]}: "
                "the API did not apply the filter"
            )
        return stamps

    def _part(self, lo: int, hi: int) -> Window:
        """A new window over [lo, hi] that walks as this one does."""
        return Window(self.stream, lo, hi, self.order, unsettled_from=self.unsettled_from)

    def _leave_paged_second(self, placed: list[tuple[dict, Bounds]], *, then_finish: bool = False) -> bool:
        """The walk leaves the second it paged through by number. At the live edge, a record leaving that second
        between two numbered pages (updated again, or deleted) shifted the later pages up and one record may have
        been skipped, so the window reads the second again before it walks on (True): records only leave a past
        second, and whatever leaves it meanwhile moves ahead of this window's boundary."""
        paged, self._paged = self._paged, None
        if paged is None or self.unsettled_from is None or paged[0] < self.unsettled_from:
            return False
        second, read = paged
        read |= {_identity(record) for record, bounds in placed if bounds == (second, second)}
        self._recheck = _Recheck(second, read, then_finish)
        return True

    def _take_recheck(self, request: PageRequest, records: list[dict]) -> PageOutcome:
        """One page of a pass over the second being read again: a full page asks for the next one; the last page
        of a pass that found nothing new ends the reading (past page 30, the second counts as read)."""
        recheck = self._recheck
        assert recheck is not None
        self._stamps(request, records)
        fresh = [r for r in records if _identity(r) not in recheck.read]
        recheck.read.update(_identity(r) for r in fresh)
        recheck.found = recheck.found or bool(fresh)
        duplicates = len(records) - len(fresh)
        if len(records) >= PER_PAGE and request.page < MAX_PAGE:
            recheck.page += 1
        elif recheck.found:
            recheck.page, recheck.found = 1, False
        else:
            self._recheck = None
            if recheck.then_finish:
                return self._finish(fresh, duplicates)
            return PageOutcome(fresh, self._newly_completed(), duplicates=duplicates)
        return PageOutcome(fresh, None, duplicates=duplicates)

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

    def _page_within(self, request: PageRequest, placed: list[tuple[dict, Bounds]], second: int) -> None:
        """A whole page of one second: page on through it, from the other end past page 30."""
        if request.page == 1 or second != self._edge:
            self._first_id = _identity(placed[0][0])
        if self._paged is None or self._paged[0] != second:
            self._paged = (second, set())
        self._paged[1].update(_identity(record) for record, _ in placed)
        self._remember(placed, second)
        self._last_id = _identity(placed[-1][0])
        self._advance_to(second)
        if request.page < MAX_PAGE:
            self._continuation = replace(request, page=request.page + 1)
        else:
            self._continuation = PageRequest(second, second, 1, DESC)

    def _take_reverse(self, request: PageRequest, records: list[dict]) -> PageOutcome:
        """A page of the crowded second `_edge` read backwards, until it meets the forward reading."""
        second = self._edge
        ids = [_identity(r) for r in records]
        if request.page == 1 and ids and ids[0] == self._first_id:
            raise self._crowded()
        met = next((i for i, rid in enumerate(ids) if self._seen.get(rid) == (second, second)), None)
        if met is not None and ids[met] != self._last_id:
            raise self._crowded()
        fresh = [r for r in records[:met] if _identity(r) not in self._reverse_seen and _identity(r) not in self._seen]
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
        self._continuation, self._edge, self._seen, self._reverse_seen = None, None, {}, set()
        self._paged = None
        spawned = []
        if self.order.value == ASC:
            self.rem_lo = second + 1
        elif self.order.value == DESC:
            self.rem_hi = second - 1
        else:
            if second > self.rem_lo:
                spawned.append(self._part(self.rem_lo, second - 1))
            self.lo = self.rem_lo = second + 1
            if self.rem_lo > self.rem_hi:
                self.finished = True
            return PageOutcome(fresh, (second, second), spawned, duplicates)
        if self.rem_lo > self.rem_hi:
            return self._finish(fresh, duplicates)
        return PageOutcome(fresh, self._newly_completed(), spawned, duplicates)

    def _narrow(self, stamps: list[int | None], anchor: int | None) -> PageOutcome:
        """A full page whose readable cursors cannot move the boundary on: cut what is left of the window at the
        second those cursors show (or the boundary, else in half), keep the part next to the boundary and hand
        the rest to new windows. The page is dropped: the narrower requests bring its records again, and the
        API's filter places those whose cursor cannot be read. Every cut shrinks the window, so this ends, at
        worst at a single second, which is paged through like any crowded second."""
        lo, hi = self.rem_lo, self.rem_hi
        assert lo < hi, "a single second's page is always one second"
        anchor = self._edge if anchor is None else anchor
        if self.order.value == DESC:
            cut = anchor if anchor is not None and lo < anchor <= hi else (lo + hi + 1) // 2
            near, far = (cut, hi), [(lo, cut - 1)]
        elif self.order.value == ASC or anchor is None:
            cut = anchor if anchor is not None and lo <= anchor < hi else (lo + hi) // 2
            near, far = (lo, cut), [(cut + 1, hi)]
        else:
            near, far = (anchor, anchor), [(lo, anchor - 1), (anchor + 1, hi)]
        if self.order.value == ASC:
            self.hi = self.rem_hi = near[1]
        elif self.order.value == DESC:
            self.lo = self.rem_lo = near[0]
        else:
            self.lo, self.hi = self.rem_lo, self.rem_hi = near
        self._continuation = None
        spawned = [self._part(a, b) for a, b in far if a <= b]
        log.warning(
            "%s: %d of the %d records on a page of %s %s..%s have an unreadable %s, so the page cannot move the "
            "walk on; reading %s..%s first and the rest as %d more window(s) (slower; no record is skipped)",
            self.stream.name,
            stamps.count(None),
            len(stamps),
            self.stream.cursor_filter,
            _iso(lo),
            _iso(hi),
            self.stream.cursor_field,
            _iso(near[0]),
            _iso(near[1]),
            len(spawned),
        )
        return PageOutcome([], None, spawned)

    def _finish(self, fresh: list[dict], duplicates: int) -> PageOutcome:
        self.finished = True
        self.rem_lo, self.rem_hi = self.hi + 1, self.hi
        self._edge, self._seen, self._continuation = None, {}, None
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

    def _stamp(self, record: dict) -> int | None:
        """The record's cursor in Unix seconds; None when it cannot be read (`_place` places the record)."""
        try:
            return unix_seconds(record.get(self.stream.cursor_field))
        except ValueError:
            return None

    def _place(self, request: PageRequest, stamps: list[int | None]) -> list[Bounds]:
        """Where each record of a page lies: its own second, or, when its cursor cannot be read, between the
        readable seconds nearest before and after it on the page (the page is sorted by the real time), or the
        request's bound where the page has none on that side (on a later numbered page, the second paged
        through). While the order is not known yet, the span covers both orders."""
        if None not in stamps:
            return [(s, s) for s in stamps if s is not None]
        orders = [self.order.value] if self.order.value else [ASC, DESC]
        placed: list[Bounds] = []
        for i, stamp in enumerate(stamps):
            if stamp is not None:
                placed.append((stamp, stamp))
                continue
            before = next((s for s in reversed(stamps[:i]) if s is not None), None)
            after = next((s for s in stamps[i + 1 :] if s is not None), None)
            ends = []
            for order in orders:
                first, last = (request.lo, request.hi) if order == ASC else (request.hi, request.lo)
                if request.page > 1 and self._edge is not None:
                    first = self._edge
                ends += [first if before is None else before, last if after is None else after]
            placed.append((min(ends), max(ends)))
        return placed

    def _straddles(self, bounds: Bounds) -> bool:
        """Whether a record may lie on either side of the window's bounds (it was split while the page flew)."""
        lo, hi = bounds
        return lo < self.lo <= hi or lo <= self.hi < hi

    def _before(self, bounds: Bounds, second: int) -> bool:
        """Whether a record lies before `second` in the walk's order, for certain."""
        if self.order.value == ASC:
            return bounds[1] < second
        if self.order.value == DESC:
            return bounds[0] > second
        return False

    def _past(self, bounds: Bounds, second: int) -> bool:
        """Whether a record may lie beyond `second` in the walk's order."""
        return bounds[1] > second if self.order.value == ASC else bounds[0] < second

    def _fresh(self, placed: list[tuple[dict, Bounds]]) -> list[dict]:
        """The records not handed over before: a record read again where it may lie is dropped (one that moved
        meanwhile, an end user updated during the walk, is new again)."""
        if not self._seen:
            return [record for record, _ in placed]
        low, high = min(lo for lo, _ in self._seen.values()), max(hi for _, hi in self._seen.values())
        fresh = []
        for record, bounds in placed:
            before = self._seen.get(_identity(record)) if bounds[0] <= high and low <= bounds[1] else None
            if before is None or _overlap(before, bounds) is None:
                fresh.append(record)
        return fresh

    def _remember(self, placed: list[tuple[dict, Bounds]], edge: int) -> None:
        """Make `edge` the boundary second and keep what a later page may bring again: the records handed over
        that may lie in it (nothing that may lie past it is handed over), narrowed where one was read before."""
        seen = {key: (lo, hi) for key, (lo, hi) in self._seen.items() if lo <= edge <= hi}
        for record, (lo, hi) in placed:
            if lo <= edge <= hi:
                key = _identity(record)
                before = seen.get(key)
                seen[key] = (_overlap(before, (lo, hi)) if before else None) or (lo, hi)
        self._edge, self._seen = edge, seen


@dataclass
class _Recheck:
    """A crowded second at the live edge read again by page number, pass after pass, until a pass brings no
    record that was not read before (`read` holds the ids read in that second so far)."""

    second: int
    read: set
    then_finish: bool
    page: int = 1
    found: bool = False


def _one_second(placed: list[tuple[dict, Bounds]]) -> int | None:
    """The second all of a page's records lie in, if they certainly share one."""
    spans = {bounds for _, bounds in placed}
    if len(spans) != 1:
        return None
    lo, hi = spans.pop()
    return lo if lo == hi else None


def _overlap(a: Bounds, b: Bounds) -> Bounds | None:
    lo, hi = max(a[0], b[0]), min(a[1], b[1])
    return (lo, hi) if lo <= hi else None


def _iso(second: int) -> str:
    return datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
