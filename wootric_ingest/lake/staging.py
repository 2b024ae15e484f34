"""Pages to bounded Parquet files of shaped rows on the catalog's storage, so the driver never holds a stream and
landing reads typed columns instead of parsing JSON.

Layout: `{root}/_wootric_ingest/staging/{run_id}/{stream}/part-{n:06d}.parquet`, the rows of the stream's table
as `shaping` makes them, and beside a part whose batch had records without a usable id,
`rejected-{n:06d}.parquet` (each such record as sent, when it was fetched and why it cannot be keyed). Records
are shaped as they arrive and written as one part per batch of at most `batch_records` records or
`batch_bytes` bytes of their JSON, so the driver's memory is one batch whatever the stream's size. Staging lives
beside the tables (same storage), so on a cluster the executors read it in parallel.

`_manifest.json` in a stream's folder lists the cursor ranges (inclusive Unix seconds) the client reported
complete and each part with its census (rows, id range, newest cursor, type mismatches, rejected records). It is
rewritten after each part is published, so a range is listed only once all its records are in listed parts,
and a run that failed can resume: the client skips the ranges, the records are already staged, and landing
needs no pass over them to learn what they hold. A part that a crash left unlisted is never read (its records'
ranges are not listed either, so they are fetched again). A stream's folder is removed after its commit and
kept after a failure. Spark skips names starting with `_` or `.`, so neither the manifest nor a half-written
`.part-*.tmp` is ever read as data.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql.pandas.types import to_arrow_schema

from wootric_ingest.api.windows import merged
from wootric_ingest.lake.rejects import STAGED_REJECTS_SCHEMA
from wootric_ingest.lake.schemas import table_schema
from wootric_ingest.lake.storage import Storage
from wootric_ingest.privacy import Policy
from wootric_ingest.shaping import fetch_time, shape
from wootric_ingest.streams import Stream

MANIFEST = "_manifest.json"
DEFAULT_BATCH_RECORDS = 5_000
DEFAULT_BATCH_BYTES = 8 * 1024 * 1024

_NUMBERED = re.compile(r"^(?:part|rejected)-(\d+)\.parquet$")

Range = tuple[int, int]


@dataclass(frozen=True)
class Census:
    """What staged rows hold, counted as they were shaped: `rows` (with a usable id), their first and last id
    (in the id column's order: strings, so "999" > "1000"), the newest cursor value (ISO-8601 UTC; None when no
    row has one), type mismatches per column, and `rejected` records (without a usable id)."""

    rows: int = 0
    first_id: str | None = None
    last_id: str | None = None
    newest: str | None = None
    type_mismatches: dict[str, int] = field(default_factory=dict)
    rejected: int = 0

    @property
    def ids(self) -> tuple[str, str] | None:
        """The first and last id, None when there is no row."""
        return None if self.first_id is None or self.last_id is None else (self.first_id, self.last_id)

    def __add__(self, other: Census) -> Census:
        return Census(
            self.rows + other.rows,
            _least(self.first_id, other.first_id),
            _most(self.last_id, other.last_id),
            _most(self.newest, other.newest),
            dict(Counter(self.type_mismatches) + Counter(other.type_mismatches)),
            self.rejected + other.rejected,
        )


def _least(a: str | None, b: str | None) -> str | None:
    return b if a is None else a if b is None else min(a, b)


def _most(a: str | None, b: str | None) -> str | None:
    return b if a is None else a if b is None else max(a, b)


@dataclass(frozen=True)
class Part:
    """A published part: its number and its census, which tells whether it has rows, records without a usable
    id (in the rejected file beside it), or both."""

    number: int
    census: Census

    @property
    def name(self) -> str:
        return f"part-{self.number:06d}.parquet"

    @property
    def rejected_name(self) -> str:
        return f"rejected-{self.number:06d}.parquet"


class StagingArea:
    """The staged files of one stream in one run.

    Opening it where an earlier attempt of the same run left files resumes: new parts are numbered after the
    existing ones, and `completed` and the listed parts start from the manifest.
    """

    def __init__(
        self,
        files: Storage,
        folder: str,
        stream: Stream,
        run_id: str,
        *,
        batch_records: int = DEFAULT_BATCH_RECORDS,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        policy: Policy | None = None,
    ):
        """`folder` is the stream's staging folder inside its run's (`Layout.staging_folder`); `policy` is the
        personal data policy, applied to each record before anything of it is shaped or written."""
        if batch_records < 1 or batch_bytes < 1:
            raise ValueError("batch_records and batch_bytes must be positive")
        self.files, self.folder, self.stream, self.run_id = files, folder, stream, run_id
        self.policy = policy if policy else None
        self.run_folder = folder.rsplit("/", 1)[0]
        self.batch_records, self.batch_bytes = batch_records, batch_bytes
        self.records = 0  # flushed by this attempt, rows and rejected alike
        self.completed, self._parts = self._read_manifest()
        self._next_part = 1 + max(
            (int(m.group(1)) for m in map(_NUMBERED.match, self.files.names(self.folder)) if m), default=-1
        )
        names = [f.name for f in stream.fields]
        self._id, self._cursor = names.index(stream.key), names.index(stream.cursor_field)
        self._pending_ranges: list[Range] = []
        self._clear()

    def write(self, records: Iterable[object], completed: Range | None = None, fetched_at: float | None = None) -> None:
        """Shape records into the current batch, flushing each full one; `completed` is the client's report that
        every record of that range has now been handed over."""
        stamp = fetch_time(time.time() if fetched_at is None else fetched_at)
        for record in records:
            if self.policy is not None:
                record = self.policy.apply(record)
            shaped = shape(self.stream, record, stamp, self.run_id)
            if shaped.problem is None:
                self._rows.append(shaped.values)
                self._mismatches.update(shaped.mismatches)
            else:
                self._rejected.append((shaped.raw, stamp, shaped.problem))
            self._pending_bytes += len(shaped.raw.encode("utf-8"))
            if len(self._rows) + len(self._rejected) >= self.batch_records or self._pending_bytes >= self.batch_bytes:
                self.flush()
        if completed is not None:
            self._pending_ranges.append((int(completed[0]), int(completed[1])))

    def flush(self) -> None:
        """Publish the batch as the next part (and its rejected records beside it), then record in the manifest
        the part's census and the ranges it completed."""
        if self._rows or self._rejected:
            part = Part(self._next_part, self._census())
            if self._rejected:
                self._publish(part.rejected_name, self._rejected, _REJECTS_ARROW)
            if self._rows:
                self._publish(part.name, self._rows, _arrow_schema(self.stream))
            self._parts.append(part)
            self._next_part += 1
            self.records += part.census.rows + part.census.rejected
            self._clear()
        elif not self._pending_ranges:
            return
        self.completed = merged(self.completed + self._pending_ranges)
        self._pending_ranges = []
        manifest = {"completed": [list(r) for r in self.completed], "parts": [_listed(p) for p in self._parts]}
        self.files.write(f"{self.folder}/{MANIFEST}", json.dumps(manifest).encode("utf-8"))

    def census(self) -> Census:
        """What the listed parts hold, summed."""
        return sum((p.census for p in self._parts), Census())

    def parts(self) -> list[str]:
        """The listed parts of rows, this attempt's and earlier ones', in write order (a batch whose records all
        lacked a usable id has only its rejected file)."""
        return [f"{self.folder}/{p.name}" for p in self._parts if p.census.rows]

    def rejected_parts(self) -> list[str]:
        """The rejected-record files beside the listed parts."""
        return [f"{self.folder}/{p.rejected_name}" for p in self._parts if p.census.rejected]

    def cleanup(self) -> None:
        """Remove this stream's staging, and the run's folder once no stream is left in it."""
        self.files.remove_tree(self.folder)
        self.files.remove_if_empty(self.run_folder)

    def _clear(self) -> None:
        """An empty batch."""
        self._rows: list[tuple] = []
        self._rejected: list[tuple] = []
        self._mismatches: Counter[str] = Counter()
        self._pending_bytes = 0

    def _census(self) -> Census:
        ids = [row[self._id] for row in self._rows]
        newest = max((row[self._cursor] for row in self._rows if row[self._cursor] is not None), default=None)
        return Census(
            len(self._rows),
            min(ids, default=None),
            max(ids, default=None),
            newest,
            dict(self._mismatches),
            len(self._rejected),
        )

    def _publish(self, name: str, rows: list[tuple], schema: pa.Schema) -> None:
        """Rows as one Parquet file, built in memory and published whole (object stores have no appends)."""
        columns = zip(*rows)
        table = pa.Table.from_arrays(
            [pa.array(values, type=f.type) for values, f in zip(columns, schema)], schema=schema
        )
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        self.files.publish(f"{self.folder}/{name}", sink.getvalue().to_pybytes())

    def _read_manifest(self) -> tuple[list[Range], list[Part]]:
        """The completed ranges and listed parts; none when the manifest is missing, was cut short by a crash
        (possible where a file is visible while written) or predates Parquet staging, so those ranges are
        fetched again: the cost of a re-read, never a loss."""
        text = self.files.read(f"{self.folder}/{MANIFEST}")
        try:
            listed = json.loads(text) if text is not None else {"completed": [], "parts": []}
            completed = merged([(int(lo), int(hi)) for lo, hi in listed["completed"]])
            return completed, [_part(p) for p in listed["parts"]]
        except (TypeError, ValueError, KeyError):
            return [], []


def _listed(part: Part) -> dict:
    c = part.census
    return {
        "number": part.number,
        "rows": c.rows,
        "first_id": c.first_id,
        "last_id": c.last_id,
        "newest": c.newest,
        "type_mismatches": c.type_mismatches,
        "rejected": c.rejected,
    }


def _part(listed: dict) -> Part:
    census = Census(
        int(listed["rows"]),
        listed["first_id"],
        listed["last_id"],
        listed["newest"],
        {str(k): int(v) for k, v in listed["type_mismatches"].items()},
        int(listed["rejected"]),
    )
    return Part(int(listed["number"]), census)


_REJECTS_ARROW = to_arrow_schema(STAGED_REJECTS_SCHEMA)


@cache
def _arrow_schema(stream: Stream) -> pa.Schema:
    """The stream table's schema in Arrow: the Parquet parts are the table's rows."""
    return to_arrow_schema(table_schema(stream))
