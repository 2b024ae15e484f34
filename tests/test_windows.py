"""Window walking against an in-memory API: every record once, whatever the order, ties, splits and unreadable
cursors."""

from __future__ import annotations

import logging
import random

import pytest

from sandbox.data import UNREADABLE_TIME
from wootric_ingest.api.errors import CrowdedSecond, WootricError
from wootric_ingest.api.windows import PER_PAGE, StreamOrder, Window, merged, uncovered
from wootric_ingest.streams import STREAMS

RESPONSES, END_USERS, DECLINES = STREAMS["responses"], STREAMS["end_users"], STREAMS["declines"]


class FakeApi:
    """Records as (second, tie, id); answers a page like the sandbox: ties by a hidden key, desc = asc reversed.
    The ids in `unreadable` render their cursor as text no clock reads, but are filtered and sorted by their
    real second, as the API's server knows it."""

    def __init__(self, stamps: list[int], *, honours_order: bool, newest_first: bool = True, seed: int = 1):
        rng = random.Random(seed)
        self.rows = sorted((s, rng.random(), 1000 + i) for i, s in enumerate(stamps))
        self.honours_order, self.newest_first = honours_order, newest_first
        self.unreadable: set[int] = set()
        self.requests = 0

    def served(self) -> list[int]:
        """Ids in the order the walk's (ascending) requests get them: newest first when the API ignores the order."""
        ids = [rid for _, _, rid in self.rows]
        return ids[::-1] if self.newest_first and not self.honours_order else ids

    def page(self, stream, request) -> list[dict]:
        self.requests += 1
        assert request.page <= 30, "asked for a page past the cap"
        rows = [r for r in self.rows if request.lo <= r[0] <= request.hi]
        descending = (request.sort_order == "desc") if self.honours_order else self.newest_first
        if descending:
            rows.reverse()
        start = (request.page - 1) * PER_PAGE
        return [
            {"id": rid, stream.cursor_field: UNREADABLE_TIME if rid in self.unreadable else second}
            for second, _, rid in rows[start : start + PER_PAGE]
        ]


def walk(api: FakeApi, stream, lo: int, hi: int, *, split_every: int = 0, seed: int = 0, in_flight: bool = False):
    """Drive windows sequentially, splitting a random splittable one every `split_every` pages; `in_flight`: while
    a page is asked for, as the client does when it feeds idle workers."""
    rng = random.Random(seed)
    order = StreamOrder(stream)
    windows = [Window(stream, lo, hi, order)]
    ids, completed, pages = [], [], 0
    while windows:
        window = rng.choice(windows)
        request = window.next_request()
        if in_flight and split_every and (pages + 1) % split_every == 0:
            splittable = [w for w in windows if w.splittable]
            if splittable:
                mine = [window] * len(splittable) if window.splittable else []  # often the one asked for
                windows += rng.choice(splittable + mine).split(rng.randint(2, 4))
        progress = window.take(request, api.page(stream, request))
        pages += 1
        ids += [r["id"] for r in progress.records]
        if progress.completed:
            completed.append(progress.completed)
        windows += progress.spawned
        if window.finished:
            windows.remove(window)
        if split_every and pages % split_every == 0 and not in_flight:
            splittable = [w for w in windows if w.splittable]
            if splittable:
                windows += rng.choice(splittable).split(rng.randint(2, 4))
    return ids, completed


def clustered_stamps(rng: random.Random, n: int, lo: int, hi: int) -> list[int]:
    """Mostly spread out, with bursts that pile dozens to hundreds of records on single seconds."""
    stamps = [rng.randrange(lo, hi + 1) for _ in range(n)]
    for _ in range(5):
        second = rng.randrange(lo, hi + 1)
        stamps += [second] * rng.randrange(40, 400)
    return stamps


@pytest.mark.parametrize("honours_order", [True, False])
@pytest.mark.parametrize("seed", range(6))
def test_every_record_once_with_ties_splits_and_either_order(honours_order, seed):
    rng = random.Random(seed)
    stamps = clustered_stamps(rng, 3000, 1_000, 200_000)
    api = FakeApi(stamps, honours_order=honours_order, seed=seed)
    ids, completed = walk(api, RESPONSES, 0, 300_000, split_every=rng.choice([0, 3, 7]), seed=seed)
    assert sorted(ids) == sorted(r[2] for r in api.rows)
    assert merged(completed) == [(0, 300_000)]


def test_a_quiet_window_costs_one_request():
    api = FakeApi([5, 50, 500], honours_order=False)
    ids, completed = walk(api, RESPONSES, 0, 10**9)
    assert api.requests == 1 and sorted(ids) == [1000, 1001, 1002] and completed == [(0, 10**9)]


def test_requests_stay_within_five_percent_of_the_minimum_in_one_window():
    rng = random.Random(3)
    api = FakeApi([rng.randrange(0, 10**7) for _ in range(20_000)], honours_order=True)
    ids, _ = walk(api, END_USERS, 0, 10**7)
    assert len(ids) == 20_000
    assert api.requests <= 1.05 * (20_000 / PER_PAGE) + 1


def test_a_second_over_the_cap_is_read_from_both_ends_when_the_order_is_honoured():
    stamps = list(range(100, 400)) + [250] * 2100
    api = FakeApi(stamps, honours_order=True)
    ids, completed = walk(api, END_USERS, 0, 1000)
    assert sorted(ids) == sorted(r[2] for r in api.rows)
    assert merged(completed) == [(0, 1000)]


def walk_with_a_move(api: FakeApi, *, unsettled_from: int | None, moves_after: int, mover: int, to: int):
    """One window over [0, 1000] of end users; after page `moves_after`, record `mover` is updated and moves to
    second `to` (as churn moves an end user to "now"). Returns the ids yielded and the completed ranges."""
    window = Window(END_USERS, 0, 1000, StreamOrder(END_USERS), unsettled_from=unsettled_from)
    ids, completed = [], []
    while not window.finished:
        request = window.next_request()
        progress = window.take(request, api.page(END_USERS, request))
        ids += [r["id"] for r in progress.records]
        completed += [progress.completed] if progress.completed else []
        if api.requests == moves_after:
            api.rows = sorted([(to, 0.5, rid) if rid == mover else row for row in api.rows for rid in [row[2]]])
    return ids, completed


def crowded_second_at(second: int) -> FakeApi:
    """130 end users updated in one second (three numbered pages) and a few around it."""
    return FakeApi([second - 5] + [second] * 130 + [second + 20], honours_order=True)


def test_a_crowded_second_at_the_live_edge_is_read_again_so_a_record_that_left_it_skips_nothing():
    api = crowded_second_at(500)
    in_second = [rid for second, _, rid in api.rows if second == 500]
    # The walk reaches the second with its second request and pages through it by number; one of the second's
    # first 50 leaves it after that page, so page 2 starts one record later: the 51st would never be read.
    ids, completed = walk_with_a_move(api, unsettled_from=400, moves_after=2, mover=in_second[10], to=900)
    assert set(ids) == {r[2] for r in api.rows}
    assert merged(completed) == [(0, 1000)]


def test_a_crowded_second_before_the_live_edge_is_read_once():
    api = crowded_second_at(500)
    ids, _ = walk_with_a_move(api, unsettled_from=600, moves_after=0, mover=0, to=0)
    assert sorted(ids) == sorted(r[2] for r in api.rows)
    assert api.requests == 4  # one page up to the second, then its pages 1, 2 and 3 (with the record after it)


def test_a_recheck_that_finds_nothing_new_costs_one_pass_of_the_second():
    api = crowded_second_at(500)
    ids, _ = walk_with_a_move(api, unsettled_from=400, moves_after=0, mover=0, to=0)
    assert sorted(ids) == sorted(r[2] for r in api.rows)
    assert api.requests == 4 + 3  # the walk, then one pass over the second's 130 records that brings nothing


@pytest.mark.parametrize("crowd, honours_order, reached", [(1600, False, 1500), (3100, True, 3000)])
def test_a_second_beyond_both_readings_is_reported(crowd, honours_order, reached):
    api = FakeApi(list(range(100, 200)) + [150] * crowd, honours_order=honours_order)
    with pytest.raises(CrowdedSecond) as raised:
        walk(api, RESPONSES, 0, 1000)
    assert (raised.value.stream_name, raised.value.second, raised.value.reached) == ("responses", 150, reached)


def test_a_crowded_first_second_of_unknown_order_splits_the_rest_off():
    api = FakeApi([500] * 1600 + [10, 20, 900], honours_order=True)
    ids, completed = walk(api, END_USERS, 500, 1000)
    assert sorted(ids) == sorted(r[2] for r in api.rows if r[0] >= 500)
    assert merged(completed) == [(500, 1000)]


def test_an_unordered_page_or_a_record_outside_the_filter_stops_the_walk():
    order = StreamOrder(RESPONSES)
    window = Window(RESPONSES, 0, 100, order)
    page = [{"id": i, "created_at": s} for i, s in enumerate([5, 9, 3] + [4] * 47)]
    with pytest.raises(WootricError, match="not ordered by created_at"):
        window.take(window.next_request(), page)
    with pytest.raises(WootricError, match="did not apply the filter"):
        window.take(window.next_request(), [{"id": 1, "created_at": 500}])


def test_a_split_while_in_flight_drops_what_now_belongs_to_the_new_window():
    order = StreamOrder(END_USERS)
    order.value = "asc"
    window = Window(END_USERS, 0, 1000, order)
    window.density = 1.0
    request = window.next_request()
    [far] = window.split(2)
    assert (window.lo, window.hi, far.lo, far.hi) == (0, 499, 500, 1000)
    page = [{"id": i, "updated_at": 480 + i} for i in range(PER_PAGE)]
    progress = window.take(request, page)
    assert window.finished and [r["id"] for r in progress.records] == list(range(20))
    assert progress.completed == (0, 499)


@pytest.mark.parametrize("newest_first", [False, True])
def test_a_split_keeps_the_part_next_to_the_boundary_and_cuts_the_rest_evenly(newest_first):
    order = StreamOrder(RESPONSES)
    order.value = "desc" if newest_first else "asc"
    window = Window(RESPONSES, 0, 99, order)
    assert not window.splittable, "a window that has not measured its density must not be split"
    window.density = 1.0
    far = window.split(4)
    kept = (window.lo, window.hi)
    spans = sorted([kept] + [(w.lo, w.hi) for w in far])
    assert spans == [(0, 24), (25, 49), (50, 74), (75, 99)]
    assert kept == ((75, 99) if newest_first else (0, 24))


def test_uncovered_and_merged_ranges():
    assert uncovered(0, 100, [(10, 20), (15, 30), (50, 60), (90, 200)]) == [(0, 9), (31, 49), (61, 89)]
    assert uncovered(0, 100, []) == [(0, 100)]
    assert uncovered(0, 100, [(0, 100)]) == []
    assert merged([(5, 9), (0, 4), (20, 30), (25, 26)]) == [(0, 9), (20, 30)]


# ------------------------------------------------------------------------------ cursors that cannot be read

#: End users walk `updated` oldest first (the API honours the order); responses and declines walk `created`,
#: the API sending them newest first whatever the request says.
ORDERS = [(END_USERS, True), (RESPONSES, False), (DECLINES, False)]


@pytest.mark.parametrize("stream, honours_order", ORDERS, ids=lambda v: getattr(v, "name", ""))
@pytest.mark.parametrize(
    "where, positions",
    [
        ("first on a page", [0]),
        ("in the middle", [25]),
        ("last on a full page", [49]),
        ("first the next page brings", [50]),
        ("last on a full page, twice in a row", [48, 49, 98, 99]),
        ("the last of all", [199]),
    ],
)
def test_a_record_whose_cursor_cannot_be_read_is_yielded_once_where_it_lies(stream, honours_order, where, positions):
    clean = FakeApi(list(range(100, 300)), honours_order=honours_order)
    walk(clean, stream, 0, 1000)
    api = FakeApi(list(range(100, 300)), honours_order=honours_order)
    served = api.served()
    api.unreadable = {served[p] for p in positions}
    ids, completed = walk(api, stream, 0, 1000)
    assert sorted(ids) == sorted(served), where
    assert merged(completed) == [(0, 1000)]
    assert api.requests <= clean.requests + 1, "a lone unreadable cursor should cost no slower walk"


@pytest.mark.parametrize("stream, honours_order", ORDERS, ids=lambda v: getattr(v, "name", ""))
def test_a_record_alone_in_its_window_whose_cursor_cannot_be_read_is_yielded(stream, honours_order):
    api = FakeApi([500], honours_order=honours_order)
    api.unreadable = {1000}
    assert walk(api, stream, 0, 1000) == ([1000], [(0, 1000)])


@pytest.mark.parametrize("honours_order", [True, False])
@pytest.mark.parametrize("stream", [END_USERS, RESPONSES], ids=lambda s: s.name)
def test_unreadable_cursors_inside_a_crowded_second_are_paged_through_once(stream, honours_order):
    stamps = list(range(100, 300)) + [250] * 180
    api = FakeApi(stamps, honours_order=honours_order)
    crowd = [rid for rid in api.served() if stamps[rid - 1000] == 250]
    api.unreadable = {crowd[i] for i in (0, 1, 30, 48, 49, 99, 120, 179)}
    ids, completed = walk(api, stream, 0, 1000)
    assert sorted(ids) == sorted(api.served())
    assert merged(completed) == [(0, 1000)]


def test_unreadable_cursors_in_a_second_read_from_both_ends_are_yielded_once():
    stamps = list(range(100, 400)) + [250] * 2100
    api = FakeApi(stamps, honours_order=True)
    crowd = [rid for rid in api.served() if stamps[rid - 1000] == 250]
    # Forward page ends, the meeting point of the two readings, and records only the backward reading reaches.
    api.unreadable = {crowd[i] for i in (0, 49, 50, 1449, 1499, 1500, 1501, 2000, 2099)}
    ids, completed = walk(api, END_USERS, 0, 1000)
    assert sorted(ids) == sorted(api.served())
    assert merged(completed) == [(0, 1000)]


@pytest.mark.parametrize("stream, honours_order", ORDERS, ids=lambda v: getattr(v, "name", ""))
def test_pages_of_nothing_but_unreadable_cursors_narrow_the_window_and_say_so(stream, honours_order, caplog):
    rng = random.Random(5)
    api = FakeApi([rng.randrange(0, 100_000) for _ in range(600)], honours_order=honours_order)
    served = api.served()
    api.unreadable = set(served[200:340])
    with caplog.at_level(logging.WARNING, logger="wootric_ingest.api.windows"):
        ids, completed = walk(api, stream, 0, 100_000)
    assert sorted(ids) == sorted(served)
    assert merged(completed) == [(0, 100_000)]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings, "falling back to a slower walk must be logged"
    assert all(
        w.startswith(f"{stream.name}: ") and f"of the 50 records on a page of {stream.cursor_filter} 1970-01-01T" in w
        for w in warnings
    )
    assert api.requests < 3 * 600 / PER_PAGE + 40 * len(warnings), "narrowing should stay a matter of a few requests"


@pytest.mark.parametrize("honours_order", [True, False])
@pytest.mark.parametrize("seed", range(6))
def test_every_record_once_when_some_cursors_cannot_be_read_with_ties_and_splits(honours_order, seed):
    rng = random.Random(100 + seed)
    stamps = clustered_stamps(rng, 2000, 1_000, 200_000)
    api = FakeApi(stamps, honours_order=honours_order, seed=seed)
    served = api.served()
    run = rng.randrange(len(served) - 150)
    api.unreadable = {rid for rid in served if rng.random() < 0.04} | set(served[run : run + rng.randrange(20, 150)])
    stream = rng.choice([END_USERS, RESPONSES])
    ids, completed = walk(api, stream, 0, 300_000, split_every=rng.choice([2, 3, 7]), seed=seed, in_flight=seed % 2)
    assert sorted(ids) == sorted(served)
    assert merged(completed) == [(0, 300_000)]
