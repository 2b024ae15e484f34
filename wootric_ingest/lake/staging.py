"""Pages to bounded newline-delimited JSON files on the catalog's storage, so the driver never holds a stream.

Layout: `{root}/_wootric_ingest/staging/{run_id}/{stream}/part-{n:06d}.jsonl`, one line per record:
`{"fetched_at": <unix seconds>, "record": <the record as the API sent it>}`. Records are serialised as
they arrive and written as one file per batch of at most `batch_records` lines or `batch_bytes` bytes,
so the driver's memory is one batch whatever the stream's size. Staging lives beside the tables (same
storage), so on a cluster the executors read it in parallel.

`_manifest.json` in a stream's folder lists the cursor ranges (inclusive Unix seconds) the client
reported complete. It is rewritten only after the records of those ranges are in a part file, so a
run that failed can resume: the client skips the ranges, and the records are already staged. A stream's
folder is removed after its commit and kept after a failure. Spark skips names starting with `_` or
`.`, so neither the manifest nor a half-written `.part-*.tmp` is ever read as data.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable

from wootric_ingest import redaction
from wootric_ingest.api.windows import merged
from wootric_ingest.lake.storage import Storage

MANIFEST = "_manifest.json"
DEFAULT_BATCH_RECORDS = 5_000
DEFAULT_BATCH_BYTES = 8 * 1024 * 1024

_PART = re.compile(r"^part-(\d+)\.jsonl$")

Range = tuple[int, int]


def _serialised(record: object) -> bytes:
    """A record as one line of JSON: secrets masked; a lone surrogate (JSON may escape one, UTF-8 cannot hold
    it) kept escaped instead of failing the run."""
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    if redaction.exposes(text):
        record = redaction.redact_values(record)
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(record, separators=(",", ":")).encode("ascii")


class StagingArea:
    """The staged files of one stream in one run.

    Opening it where an earlier attempt of the same run left files resumes: new parts are numbered after
    the existing ones and `completed` starts from the manifest.
    """

    def __init__(
        self,
        files: Storage,
        folder: str,
        run_id: str,
        *,
        batch_records: int = DEFAULT_BATCH_RECORDS,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
    ):
        """`folder` is the stream's staging folder inside its run's (`Layout.staging_folder`)."""
        if batch_records < 1 or batch_bytes < 1:
            raise ValueError("batch_records and batch_bytes must be positive")
        self.files, self.folder, self.run_id = files, folder, run_id
        self.run_folder = folder.rsplit("/", 1)[0]
        self.batch_records, self.batch_bytes = batch_records, batch_bytes
        self.records = 0  # flushed by this attempt
        self.completed: list[Range] = self._read_manifest()
        self._next_part = 1 + max(
            (int(m.group(1)) for m in map(_PART.match, self.files.names(self.folder)) if m), default=-1
        )
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._pending_ranges: list[Range] = []

    def write(self, records: Iterable[dict], completed: Range | None = None, fetched_at: float | None = None) -> None:
        """Serialise records into the current batch, flushing each full one; `completed` is the client's
        report that every record of that range has now been handed over."""
        stamp = time.time() if fetched_at is None else fetched_at
        for record in records:
            line = b'{"fetched_at":%r,"record":%s}\n' % (stamp, _serialised(record))
            self._pending.append(line)
            self._pending_bytes += len(line)
            if len(self._pending) >= self.batch_records or self._pending_bytes >= self.batch_bytes:
                self.flush()
        if completed is not None:
            self._pending_ranges.append((int(completed[0]), int(completed[1])))

    def flush(self) -> None:
        """Write the batch as the next part file, then record in the manifest the ranges it completed."""
        if self._pending:
            self.files.publish(f"{self.folder}/part-{self._next_part:06d}.jsonl", b"".join(self._pending))
            self._next_part += 1
            self.records += len(self._pending)
            self._pending, self._pending_bytes = [], 0
        if self._pending_ranges:
            self.completed = merged(self.completed + self._pending_ranges)
            self._pending_ranges = []
            manifest = {"completed": [list(r) for r in self.completed]}
            self.files.write(f"{self.folder}/{MANIFEST}", json.dumps(manifest).encode("utf-8"))

    def parts(self) -> list[str]:
        """The staged part files, this attempt's and earlier ones', in write order."""
        return sorted(f"{self.folder}/{name}" for name in self.files.names(self.folder) if _PART.match(name))

    def cleanup(self) -> None:
        """Remove this stream's staging, and the run's folder once no stream is left in it."""
        self.files.remove_tree(self.folder)
        self.files.remove_if_empty(self.run_folder)

    def _read_manifest(self) -> list[Range]:
        """The completed ranges; none when the manifest is missing or was cut short by a crash (possible where a
        file is visible while written), so those ranges are fetched again: the cost of a re-read, never a loss."""
        text = self.files.read(f"{self.folder}/{MANIFEST}")
        try:
            listed = json.loads(text)["completed"] if text is not None else []
            return merged([(int(lo), int(hi)) for lo, hi in listed])
        except (TypeError, ValueError, KeyError):
            return []
