"""`spark.read.format("wootric")` and `spark.readStream.format("wootric")`: the Wootric API as a Spark data source.

The driver plans; each partition, in a Python worker on an executor, walks one time window of the stream's
cursor filter with the job's client (keyset pagination past the 30-page cap, retries, 401 renewal) and shapes
every record with the job's shaping, so a row here is the row the job lands (without `_run_id`, which names a
job run, and `_deleted_at`, which only a full sync can know). Records without a usable id are left out (the
job puts them in its rejected table); each worker logs how many.

Partitions cannot talk to one another, so the account's rate limit is split: each of a read's partitions
spends at most its share of the limit in any window (a 429 from another client still waits out the window).
A read of N records costs about ceil(N/50) requests, plus one token and one boundary request per partition.

What a read sees (the guarantee): the stream's records whose cursor lies in the read's range, each once.
The range is fixed when the read is planned (batch: `start_date` to `end_date` or the planning's now; stream:
between two offsets), and windows never overlap. A record that exists from planning until its window is read
comes exactly once; one deleted meanwhile is absent; one created meanwhile lies past the range (the next
micro-batch's). An end user updated meanwhile moves past the range too (its `updated_at` becomes now): it comes
once in its old version if its window had read it, else not at all, and the next micro-batch brings the new
version. Nothing comes twice. Responses and declines, walked by `created`, never move; their later edits are
what `lookback_days` re-reads.

Streaming offsets are JSON, `{"cursor": <Unix second>}`: every record whose cursor lies at or before that
second has been handed to a micro-batch. A micro-batch reads (start, end], and `latestOffset` is now less
`lag_seconds` (at least one second), so a batch never ends inside a second that can still receive records,
and no second is shared by two batches (no ids need carrying over). Replaying a batch after a failure plans
the same windows from the same offsets. With `lookback_days`, each micro-batch also re-reads the days before
its start; the re-read records are emitted again, and a MERGE by id downstream absorbs them.

`segments`, which the API sends whole in one response, is read in a batch only, as one partition and one request
(every segment, whatever its `created_at`); a streaming read of it is refused.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Iterator
from datetime import datetime, timezone

from pyspark.sql.datasource import DataSource, DataSourceReader, DataSourceStreamReader, InputPartition
from pyspark.sql.types import StructType

from wootric_ingest import redaction
from wootric_ingest.api import WootricClient
from wootric_ingest.lake.schemas import spark_schema
from wootric_ingest.shaping import fetch_time, shape
from wootric_ingest.source.options import OptionError, ReadOptions, parse_options
from wootric_ingest.streams import METADATA_FIELDS, Stream

log = logging.getLogger(__name__)

NAME = "wootric"
ROW_METADATA = ("_extracted_at", "_raw")
"""The job's metadata columns that mean something in a read: when the record was fetched, and as it was sent."""
MIN_WINDOW_SECONDS = 3600
"""A partition's window spans at least this long: a short range (a micro-batch) is one partition, one request."""
DAY = 86400


def row_schema(stream: Stream) -> StructType:
    """The stream table's columns a read gives: the seed columns, then `_extracted_at` and `_raw`."""
    return spark_schema(stream.fields + tuple(f for f in METADATA_FIELDS if f.name in ROW_METADATA))


class WindowPartition(InputPartition):
    """One window of the cursor filter, [lo, hi] in inclusive Unix seconds, and the share of the account's rate
    limit its reader may spend."""

    def __init__(self, lo: int, hi: int, share: float):
        super().__init__((lo, hi))
        self.lo, self.hi, self.share = lo, hi, share


def plan_windows(lo: int, hi: int, max_partitions: int) -> list[WindowPartition]:
    """[lo, hi] cut into equal windows, as many as `max_partitions` allows but none shorter than
    `MIN_WINDOW_SECONDS`; each window's reader gets an equal share of the rate limit."""
    if hi < lo:
        return []
    parts = max(1, min(max_partitions, math.ceil((hi - lo + 1) / MIN_WINDOW_SECONDS)))
    cuts = [lo + (hi - lo + 1) * i // parts for i in range(parts + 1)]
    return [WindowPartition(cuts[i], cuts[i + 1] - 1, 1 / parts) for i in range(parts)]


def read_window(options: ReadOptions, window: WindowPartition) -> Iterator[tuple]:
    """The rows of one window, walked by one request at a time within the window's share of the rate limit."""
    for secret in (options.api.auth.password, options.api.auth.client_secret, options.api.auth.account_token):
        redaction.register(secret)  # this worker's logs and errors mask them too
    stream, seed = options.stream, len(options.stream.fields)
    api = dataclasses.replace(options.api, max_concurrency=1)
    unkeyed = 0
    with WootricClient(api, share=window.share) as client:
        for batch in client.pages(stream, _instant(window.lo), _instant(window.hi)):
            fetched = fetch_time(time.time())
            for record in batch.records:
                shaped = shape(stream, record, fetched, "")
                if shaped.problem is not None:
                    unkeyed += 1
                    continue
                yield (*shaped.values[:seed], fetched, shaped.raw)
    if unkeyed:
        log.warning("%s: %d records without a usable id were left out", stream.name, unkeyed)


def check_credentials(options: ReadOptions) -> None:
    """Obtain a token on the driver, so bad credentials or an unreachable API fail before any partition runs."""
    with WootricClient(options.api) as client:
        client.authenticate()


class WootricDataSource(DataSource):
    """`format("wootric")`: options as in `wootric_ingest.source.options`, checked when the DataFrame is defined."""

    def __init__(self, options: dict[str, str]):
        super().__init__(options)
        self.read_options = parse_options(options)

    @classmethod
    def name(cls) -> str:
        return NAME

    def schema(self) -> StructType:
        return row_schema(self.read_options.stream)

    def reader(self, schema: StructType) -> DataSourceReader:
        return WootricBatchReader(self.read_options)

    def streamReader(self, schema: StructType) -> DataSourceStreamReader:
        stream = self.read_options.stream
        if stream.read_whole:
            raise OptionError([f"stream: {stream.name} is read whole, in one request; read it with spark.read"])
        return WootricStreamReader(self.read_options)


class WootricBatchReader(DataSourceReader):
    """From `start_date` to `end_date`, or to the moment the read is planned."""

    def __init__(self, options: ReadOptions):
        self.options = options

    def partitions(self) -> list[WindowPartition]:
        check_credentials(self.options)
        end = self.options.end if self.options.end is not None else math.floor(time.time())
        if self.options.stream.read_whole:
            return [WindowPartition(self.options.start, end, 1.0)]
        return plan_windows(self.options.start, end, self.options.api.max_concurrency)

    def read(self, partition: InputPartition) -> Iterator[tuple]:
        assert isinstance(partition, WindowPartition)
        return read_window(self.options, partition)


class WootricStreamReader(DataSourceStreamReader):
    """Micro-batches over (start, end] of the cursor filter; offsets `{"cursor": <Unix second>}`."""

    def __init__(self, options: ReadOptions):
        self.options = options
        check_credentials(options)

    def initialOffset(self) -> dict:
        return {"cursor": self.options.start - 1}

    def latestOffset(self) -> dict:
        latest = math.floor(time.time()) - self.options.lag_seconds
        if self.options.end is not None:
            latest = min(latest, self.options.end)
        return {"cursor": max(latest, self.options.start - 1)}

    def partitions(self, start: dict, end: dict) -> list[WindowPartition]:
        lo, hi = int(start["cursor"]) + 1, int(end["cursor"])
        if hi < lo:
            return []
        lo = max(self.options.start, lo - self.options.lookback_days * DAY)
        return plan_windows(lo, hi, self.options.api.max_concurrency)

    def read(self, partition: InputPartition) -> Iterator[tuple]:
        assert isinstance(partition, WindowPartition)
        return read_window(self.options, partition)


def _instant(second: int) -> datetime:
    return datetime.fromtimestamp(second, timezone.utc)
