"""Progress reporting: counts, rate, requests left and ETA from what the client yields, on a fixed clock."""
from __future__ import annotations

import logging
import types
from datetime import datetime, timedelta, timezone

from wootric_ingest.landing import StreamResult
from wootric_ingest.progress import Progress, ProgressClient, requests_left, summary
from wootric_ingest.streams import STREAMS

SINCE = datetime(2024, 1, 1, tzinfo=timezone.utc)
UNTIL = SINCE + timedelta(seconds=1000)
T0 = int(SINCE.timestamp())


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class ScriptedClient:
    """Yields the given batches, moving the clock 10 s before each, and says how many requests are left."""

    def __init__(self, clock: Clock, batches: list, left: int | None = None):
        self.clock, self.batches, self.requests_left = clock, batches, left
        self.authenticated = False

    def authenticate(self) -> None:
        self.authenticated = True

    def pages(self, stream, since, until, done=()):
        for batch in self.batches:
            self.clock.now += 10
            yield batch


def batch(n: int, completed: tuple[int, int] | None = None):
    return types.SimpleNamespace(records=[{"id": i} for i in range(n)], completed=completed)


def test_a_full_sync_logs_counts_rate_requests_left_and_an_eta(caplog):
    clock = Clock()
    client = ScriptedClient(clock, [batch(50, (T0, T0 + 99)), batch(50, (T0 + 100, T0 + 199)),
                                    batch(50, (T0 + 200, T0 + 249))], left=87)
    progress = Progress(interval=15, clock=clock, requests_left=lambda: requests_left(client))
    watched = ProgressClient(client, progress)

    with caplog.at_level(logging.INFO, logger="wootric_ingest.progress"):
        fetched = [len(b.records) for b in watched.pages(STREAMS["responses"], SINCE, UNTIL)]

    assert fetched == [50, 50, 50]
    # The 2nd batch comes 20 s in: 100 records, 5/s, 200 of 1000 s of the window done, so 80 s to go.
    assert [r.getMessage() for r in caplog.records] == [
        "responses: 2 pages, 100 records, 5 records/s, 87 requests left in the rate window, "
        "20% of the time window done, ETA 0:01:20",
        "responses: fetched 150 records in 3 pages, 30.0 s (5 records/s)",
    ]


def test_completed_ranges_that_arrive_out_of_order_are_merged_once():
    clock = Clock()
    progress = Progress(clock=clock)
    stream = progress.start("end_users", SINCE, UNTIL)
    for completed in [(T0 + 500, T0 + 999), (T0, T0 + 99), (T0 + 50, T0 + 149)]:
        progress.page(stream, batch(1, completed))
    assert stream.completed == [(T0, T0 + 149), (T0 + 500, T0 + 999)]
    assert stream.fraction() == 0.65


def test_plain_pages_from_a_client_without_ranges_are_counted_without_an_eta():
    clock = Clock()
    client = ScriptedClient(clock, [[{"id": 1}, {"id": 2}], [{"id": 3}]])
    progress = Progress(interval=0, clock=clock, requests_left=lambda: requests_left(client))
    watched = ProgressClient(client, progress)

    assert sum(len(page) for page in watched.pages(STREAMS["declines"], SINCE, UNTIL)) == 3
    watched.authenticate()  # everything else reaches the wrapped client
    assert client.authenticated
    declines = progress.streams["declines"]
    assert (declines.pages, declines.records, declines.eta(clock())) == (2, 3, None)
    assert progress.line(declines, clock()) == "declines: 2 pages, 3 records, 0 records/s"


def test_the_summary_is_one_row_per_stream_then_why_each_ran_as_it_did():
    clock = Clock()
    progress = Progress(clock=clock)
    for name, pages, records in [("end_users", 3, 120), ("responses", 5, 240)]:
        stream = progress.start(name, SINCE, UNTIL)
        stream.pages, stream.records = pages, records
        clock.now += 2
        progress.finish(stream)
    results = [
        StreamResult("end_users", "FULL", "first run: the table does not exist yet", records_fetched=120,
                     rows_inserted=118, rows_updated=0, rows_deleted=3, table_rows=118, api_requests=4, seconds=3.5,
                     records_rejected=2),
        StreamResult("responses", "INCREMENTAL", "bookmark 2024-03-01T00:00:00Z", records_fetched=240,
                     rows_inserted=40, rows_updated=160, table_rows=1200, api_requests=6, seconds=4.25,
                     status="failed", error="ConcurrentAppendException: files were added\n(details)"),
    ]
    assert summary(results, progress).splitlines() == [
        "stream     sync         pages  fetched  inserted  updated  deleted  table rows  requests  seconds  "
        "records/s  status",
        "---------  -----------  -----  -------  --------  -------  -------  ----------  --------  -------  "
        "---------  ------",
        "end_users  FULL             3      120       118        0        3         118         4      3.5  "
        "       60  ok",
        "responses  INCREMENTAL      5      240        40      160        0        1200         6      4.2  "
        "      120  failed",
        "",
        "end_users: FULL sync, first run: the table does not exist yet; "
        "2 records without a usable id kept in _wootric_ingest/rejected",
        "responses: INCREMENTAL sync, bookmark 2024-03-01T00:00:00Z; failed: ConcurrentAppendException: "
        "files were added",
    ]
