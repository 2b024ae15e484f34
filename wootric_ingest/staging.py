"""Pages to bounded newline-delimited JSON files, so the driver never holds a stream in memory.

Layout: `{root}/_wootric_ingest/staging/{run_id}/{stream}/part-{n:06d}.jsonl`, one line per record:
`{"fetched_at": <unix seconds>, "record": <the record as the API sent it>}`. Spark reads a stream's
folder with an explicit schema. A stream's folder is removed after its commit and kept after a failure.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Iterable

STAGING_DIR = "_wootric_ingest/staging"
DEFAULT_BATCH_RECORDS = 5_000


class StagingArea:
    """The staged files of one stream in one run; writes in batches of at most `batch_records` lines."""

    def __init__(self, root: str, run_id: str, stream: str, batch_records: int = DEFAULT_BATCH_RECORDS):
        self.path = Path(root) / STAGING_DIR / run_id / stream
        self.batch_records = batch_records
        self.records = 0
        self._files = 0
        self._pending: list[str] = []

    def write(self, records: Iterable[dict], fetched_at: float | None = None) -> None:
        """Buffer records (serialised at once, so no dicts are kept) and flush full batches."""
        stamp = time.time() if fetched_at is None else fetched_at
        for record in records:
            self._pending.append(json.dumps({"fetched_at": stamp, "record": record},
                                            ensure_ascii=False, separators=(",", ":")))
            if len(self._pending) >= self.batch_records:
                self.flush()

    def flush(self) -> None:
        """Write buffered lines as one new file, atomically (write, then rename), so a reader never sees half."""
        if not self._pending:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        final = self.path / f"part-{self._files:06d}.jsonl"
        partial = final.with_suffix(".tmp")
        partial.write_text("\n".join(self._pending) + "\n", encoding="utf-8")
        partial.rename(final)
        self.records += len(self._pending)
        self._files += 1
        self._pending = []

    @property
    def files(self) -> list[str]:
        return sorted(str(p) for p in self.path.glob("part-*.jsonl")) if self.path.exists() else []

    def cleanup(self) -> None:
        """Remove this stream's staging, and the run's folder once it is empty."""
        shutil.rmtree(self.path, ignore_errors=True)
        run_dir = self.path.parent
        if run_dir.exists() and not any(run_dir.iterdir()):
            run_dir.rmdir()
