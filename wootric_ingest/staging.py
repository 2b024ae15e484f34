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
import os
import re
import shutil
import time
from pathlib import Path
from typing import Iterable, Protocol
from urllib.parse import urlsplit

from wootric_ingest import redaction

STAGING_DIR = "_wootric_ingest/staging"
MANIFEST = "_manifest.json"
DEFAULT_BATCH_RECORDS = 5_000
DEFAULT_BATCH_BYTES = 8 * 1024 * 1024

_PART = re.compile(r"^part-(\d+)\.jsonl$")
_DBFS_FUSE = Path("/dbfs")

Range = tuple[int, int]


class Files(Protocol):
    """The few file operations staging needs, on one kind of storage."""

    def write(self, folder: str, name: str, data: bytes) -> None:
        """Create or replace `folder/name` atomically: readers see the old file, the new one, or none."""

    def read(self, path: str) -> bytes | None:
        """The file's bytes, or None when it does not exist."""

    def names(self, folder: str) -> list[str]:
        """The names in `folder` ([] when it does not exist)."""

    def remove_tree(self, folder: str) -> None: ...

    def remove_if_empty(self, folder: str) -> None: ...


class LocalFiles:
    """Local paths and `file:` URIs; `dbfs:/` through Databricks' `/dbfs` FUSE mount."""

    @staticmethod
    def local(path: str) -> Path:
        parts = urlsplit(path)
        if parts.scheme == "dbfs":
            return _DBFS_FUSE / parts.path.lstrip("/")
        if parts.scheme == "file":
            return Path(parts.path)
        return Path(path)

    def write(self, folder: str, name: str, data: bytes) -> None:
        target = self.local(folder)
        target.mkdir(parents=True, exist_ok=True)
        partial = target / f".{name}.tmp"
        with open(partial, "wb") as f:
            f.write(data)
        os.replace(partial, target / name)

    def read(self, path: str) -> bytes | None:
        try:
            return self.local(path).read_bytes()
        except FileNotFoundError:
            return None

    def names(self, folder: str) -> list[str]:
        target = self.local(folder)
        return os.listdir(target) if target.is_dir() else []

    def remove_tree(self, folder: str) -> None:
        shutil.rmtree(self.local(folder), ignore_errors=True)

    def remove_if_empty(self, folder: str) -> None:
        try:
            self.local(folder).rmdir()
        except OSError:  # not empty, or already gone
            pass


class HadoopFiles:
    """Any other URI (s3a://, abfss://, gs://, dbfs:/ without FUSE) through the Hadoop FileSystem API of the
    driver's JVM, the same code and credentials Spark itself reads the files with."""

    def __init__(self, spark):
        self._jvm = spark.sparkContext._jvm
        self._conf = spark.sparkContext._jsc.hadoopConfiguration()

    def _fs(self, path: str):
        p = self._jvm.org.apache.hadoop.fs.Path(path)
        return p.getFileSystem(self._conf), p

    def write(self, folder: str, name: str, data: bytes) -> None:
        fs, target = self._fs(f"{folder}/{name}")
        _, partial = self._fs(f"{folder}/.{name}.tmp")
        out = fs.create(partial, True)
        try:
            out.write(bytearray(data))
        finally:
            out.close()
        if fs.exists(target):
            fs.delete(target, False)
        if not fs.rename(partial, target):
            raise OSError(f"could not rename {partial.toString()} to {target.toString()}")

    def read(self, path: str) -> bytes | None:
        fs, p = self._fs(path)
        if not fs.exists(p):
            return None
        stream = fs.open(p)
        try:
            return bytes(stream.readAllBytes())
        finally:
            stream.close()

    def names(self, folder: str) -> list[str]:
        fs, p = self._fs(folder)
        if not fs.exists(p):
            return []
        return [status.getPath().getName() for status in fs.listStatus(p)]

    def remove_tree(self, folder: str) -> None:
        fs, p = self._fs(folder)
        fs.delete(p, True)

    def remove_if_empty(self, folder: str) -> None:
        fs, p = self._fs(folder)
        if fs.exists(p) and len(fs.listStatus(p)) == 0:
            fs.delete(p, False)


def files_for(root: str, spark=None) -> Files:
    """The adapter for the catalog root: the local filesystem when Python can reach the path (a local
    path, `file:`, or `dbfs:/` with the FUSE mount), else the Hadoop FileSystem API (needs `spark`)."""
    scheme = urlsplit(root).scheme
    if scheme in ("", "file") or (scheme == "dbfs" and _DBFS_FUSE.is_dir()):
        return LocalFiles()
    if spark is None:
        raise ValueError(f"staging under {root} needs a Spark session (its Hadoop FileSystem API)")
    return HadoopFiles(spark)


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


def merge_ranges(ranges: Iterable[Range]) -> list[Range]:
    """Inclusive integer ranges, sorted, with overlapping and touching ones joined."""
    merged: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [(lo, hi) for lo, hi in merged]


class StagingArea:
    """The staged files of one stream in one run.

    Opening it where an earlier attempt of the same run left files resumes: new parts are numbered after
    the existing ones and `completed` starts from the manifest.
    """

    def __init__(self, root: str, run_id: str, stream: str, *, files: Files | None = None,
                 batch_records: int = DEFAULT_BATCH_RECORDS, batch_bytes: int = DEFAULT_BATCH_BYTES):
        if batch_records < 1 or batch_bytes < 1:
            raise ValueError("batch_records and batch_bytes must be positive")
        self.root, self.run_id = root, run_id
        self.run_folder = f"{root.rstrip('/')}/{STAGING_DIR}/{run_id}"
        self.folder = f"{self.run_folder}/{stream}"
        self.files = files or LocalFiles()
        self.batch_records, self.batch_bytes = batch_records, batch_bytes
        self.records = 0  # flushed by this attempt
        self.completed: list[Range] = self._read_manifest()
        self._next_part = 1 + max((int(m.group(1)) for m in map(_PART.match, self.files.names(self.folder)) if m),
                                  default=-1)
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
            self.files.write(self.folder, f"part-{self._next_part:06d}.jsonl", b"".join(self._pending))
            self._next_part += 1
            self.records += len(self._pending)
            self._pending, self._pending_bytes = [], 0
        if self._pending_ranges:
            self.completed = merge_ranges(self.completed + self._pending_ranges)
            self._pending_ranges = []
            manifest = {"completed": [list(r) for r in self.completed]}
            self.files.write(self.folder, MANIFEST, json.dumps(manifest).encode("utf-8"))

    def parts(self) -> list[str]:
        """The staged part files, this attempt's and earlier ones', in write order."""
        return sorted(f"{self.folder}/{name}" for name in self.files.names(self.folder) if _PART.match(name))

    def cleanup(self) -> None:
        """Remove this stream's staging, and the run's folder once no stream is left in it."""
        self.files.remove_tree(self.folder)
        self.files.remove_if_empty(self.run_folder)

    def _read_manifest(self) -> list[Range]:
        data = self.files.read(f"{self.folder}/{MANIFEST}")
        if data is None:
            return []
        return merge_ranges((int(lo), int(hi)) for lo, hi in json.loads(data)["completed"])
