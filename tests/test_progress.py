"""Progress reporting: counts, rate, requests left and ETA from what the client yields, on a fixed clock; the
rate window's requests left from the real client against the sandbox; and the run's closing summary."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from sandbox import Sandbox, SandboxOptions
from wootric_ingest.api import Batch, WootricClient
from wootric_ingest.cli.summary import summary
from wootric_ingest.lake.state import SyncMode
from wootric_ingest.run.landing import Fetched, Landed
from wootric_ingest.run.progress import Progress
from wootric_ingest.run.result import FAILED, OK, StreamResult
from wootric_ingest.streams import STREAMS

SINCE = datetime(2024, 1, 1, tzinfo=timezone.utc)
UNTIL = SINCE + timedelta(seconds=1000)
T0 = int(SINCE.timestamp())


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def batch(n: int, completed: tuple[int, int] | None = None) -> Batch:
    return Batch([{"id": i} for i in range(n)], completed)


def test_a_full_sync_logs_counts_rate_requests_left_and_an_eta(caplog):
    clock = Clock()
    progress = Progress(interval=15, clock=clock)
    with caplog.at_level(logging.INFO, logger="wootric_ingest.run.progress"):
        stream = progress.start("responses", SINCE, UNTIL)
        for b, left in [
            (batch(50, (T0, T0 + 99)), 89),
            (batch(50, (T0 + 100, T0 + 199)), 87),
            (batch(50, (T0 + 200, T0 + 249)), 85),
        ]:
            clock.now += 10
            progress.page(stream, b, left)
        progress.finish(stream)

    # The 2nd batch comes 20 s in: 100 records, 5/s, 200 of 1000 s of the window done, so 80 s to go.
    assert [r.getMessage() for r in caplog.records] == [
        "responses: 2 pages, 100 records, 5 records/s, 87 requests left in the rate window, "
        "20% of the time window done, ETA 0:01:20",
        "responses: fetched 150 records in 3 pages, 30.0 s (5 records/s)",
    ]


def test_completed_ranges_that_arrive_out_of_order_are_merged_once():
    progress = Progress(clock=Clock())
    stream = progress.start("end_users", SINCE, UNTIL)
    for completed in [(T0 + 500, T0 + 999), (T0, T0 + 99), (T0 + 50, T0 + 149)]:
        progress.page(stream, batch(1, completed), None)
    assert stream.completed == [(T0, T0 + 149), (T0 + 500, T0 + 999)]
    assert stream.fraction() == 0.65


def test_pages_without_complete_ranges_are_counted_without_an_eta():
    clock = Clock()
    progress = Progress(interval=0, clock=clock)
    declines = progress.start("declines", SINCE, UNTIL)
    progress.page(declines, batch(2), None)
    progress.page(declines, batch(1), None)
    assert (declines.pages, declines.records, declines.eta(clock())) == (2, 3, None)
    assert declines.line(clock()) == "declines: 2 pages, 3 records, 0 records/s"


def test_a_real_extraction_reports_the_requests_left_in_the_rate_window(make_config, caplog):
    with Sandbox(SandboxOptions(end_users=5, responses=400, declines=5, seed=8, rate_limit=50, rate_window=60)) as sb:
        config = make_config(sb)
        progress = Progress(interval=0)
        with WootricClient(config.api) as client, caplog.at_level(logging.INFO, logger="wootric_ingest.run.progress"):
            client.authenticate()
            stream = progress.start("responses", config.start_date, datetime.now(timezone.utc))
            for fetched in client.pages(STREAMS["responses"], config.start_date, datetime.now(timezone.utc)):
                progress.page(stream, fetched, client.requests_left())
    lines = [r.getMessage() for r in caplog.records]
    left = [int(line.split(" requests left")[0].rsplit(", ", 1)[1]) for line in lines if "requests left" in line]
    assert len(left) == stream.pages >= 8
    assert left == sorted(left, reverse=True) and left[-1] < 50 - 8  # every page (and the token) spent one
    assert sb.stats.snapshot()["served_429"] == 0


def test_the_summary_is_one_row_per_stream_then_why_each_ran_as_it_did():
    clock = Clock()
    progress = Progress(clock=clock)
    for name, pages, records in [("end_users", 3, 120), ("responses", 5, 240)]:
        stream = progress.start(name, SINCE, UNTIL)
        stream.pages, stream.records = pages, records
        clock.now += 2
        progress.finish(stream)
    started = datetime(2024, 3, 1, tzinfo=timezone.utc)
    results = [
        StreamResult(
            "end_users",
            OK,
            "t",
            started,
            started + timedelta(seconds=3.5),
            fetched=Fetched(120, 4, 2.0),
            landed=Landed(
                SyncMode.FULL,
                "first run: the table does not exist yet",
                118,
                0,
                3,
                2,
                1,
                118,
                None,
                1.5,
                records_rejected=2,
            ),
        ),
        StreamResult(
            "responses",
            FAILED,
            "t",
            started,
            started + timedelta(seconds=4.25),
            fetched=Fetched(240, 6, 2.0),
            landed=Landed(SyncMode.INCREMENTAL, "bookmark 2024-03-01T00:00:00Z", 40, 160, 0, 0, 7, 1200, None, 2.25),
            error="ConcurrentAppendException: files were added\n(details)",
        ),
    ]
    assert summary(results, progress).splitlines() == [
        "stream     sync         pages  fetched  inserted  updated  deleted  marked deleted  table rows  requests  "
        "seconds  records/s  status",
        "---------  -----------  -----  -------  --------  -------  -------  --------------  ----------  --------  "
        "-------  ---------  ------",
        "end_users  FULL             3      120       118        0        3               2         118         4  "
        "    3.5         60  ok",
        "responses  INCREMENTAL      5      240        40      160        0               0        1200         6  "
        "    4.2        120  failed",
        "",
        "end_users: FULL sync, first run: the table does not exist yet; "
        "2 records without a usable id kept in _wootric_ingest/rejected",
        "responses: INCREMENTAL sync, bookmark 2024-03-01T00:00:00Z; failed: ConcurrentAppendException: "
        "files were added",
    ]
