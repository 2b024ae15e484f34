"""One run per table at a time: a lock file per table under `{root}/_wootric_ingest/locks/`, kept alive by a
heartbeat, so a manual run started during a scheduled one stops instead of doing the same work beside it.

A run takes the lock of every table it will write before it reads any table state, and gives them back when
it ends. When another run holds one, it stops with `RunInProgress` ("another run of this source is in
progress since …"). The holder rewrites `{table}.beat` every `heartbeat` seconds; a lock whose last beat is
older than `expiry` belongs to a run that died (killed, its driver gone) and is taken over. On the holder's
own host a pid that no longer runs frees the lock at once, so a killed local run does not block the next one.

What storage guarantees, honestly:
- On a POSIX file system (local disk, NFS v3+) a lock is created with `link()`, which is atomic: two runs
  cannot both create it.
- On an object store (S3, ADLS, GCS, directly or through Databricks' `/dbfs` and `/Volumes` mounts) "create
  if absent" and "delete if unchanged" are check-then-act: two runs starting within the same instant, or
  taking over the same stale lock at once, may both believe they hold it. A holder notices at its next
  heartbeat (the lock names another run) and `check()` then stops it before its next stream.
- Neither case can corrupt or duplicate a table. The lock saves work; correctness comes from Delta: every
  write is one optimistic-concurrency commit (a MERGE that meets a concurrent commit is retried against the
  new version, so an id is inserted once), and a run's commit is idempotent on its run id (txnAppId).
Heartbeats compare wall clocks of different hosts: `expiry` must exceed the clock skew between drivers.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from wootric_ingest.lake.storage import Storage

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT = 30.0
DEFAULT_EXPIRY = 300.0


class RunInProgress(RuntimeError):
    """Another live run holds the lock of a table this run would write."""


class LockLost(RuntimeError):
    """Our lock was taken over (our heartbeats stopped reaching the storage for longer than the expiry)."""


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: written once into the lock file when it is taken."""

    token: str
    run_id: str
    host: str
    pid: int
    since: float

    def describe(self) -> str:
        return f"run {self.run_id}, pid {self.pid} on {self.host}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


class TableLocks:
    """The locks of the tables one run writes, taken together (in name order) and released together."""

    def __init__(
        self,
        store: Storage,
        folder: str,
        names: Iterable[str],
        run_id: str,
        *,
        heartbeat: float = DEFAULT_HEARTBEAT,
        expiry: float = DEFAULT_EXPIRY,
        clock: Callable[[], float] = time.time,
        host: str | None = None,
        pid: int | None = None,
    ):
        if expiry <= heartbeat:
            raise ValueError("expiry must be longer than the heartbeat interval")
        self.store, self.folder = store, folder
        self.names = sorted(set(names))
        self.heartbeat, self.expiry, self.clock = heartbeat, expiry, clock
        self.me = Holder(uuid.uuid4().hex, run_id, host or socket.gethostname(), pid or os.getpid(), clock())
        self._held: list[str] = []
        self._lost: str | None = None
        self._stop = threading.Event()
        self._beater: threading.Thread | None = None

    def __enter__(self) -> TableLocks:
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def acquire(self) -> None:
        """Take every lock or none: `RunInProgress` names the live run that holds one."""
        try:
            for name in self.names:
                self._take(name)
                self._held.append(name)
        except BaseException:
            self.release()
            raise
        if self._held:
            self._beater = threading.Thread(
                target=self._beat_until_released, name="wootric-lock-heartbeat", daemon=True
            )
            self._beater.start()

    def check(self) -> None:
        """Raise `LockLost` when a heartbeat found that another run took one of our locks over."""
        if self._lost:
            raise LockLost(self._lost)

    def release(self) -> None:
        self._stop.set()
        if self._beater is not None:
            self._beater.join()
        for name in reversed(self._held):
            if _holder(self.store.read(self._path(name, "lock"))) == self.me:
                self.store.delete(self._path(name, "beat"))
                self.store.delete(self._path(name, "lock"))
        self._held = []

    def _take(self, name: str) -> None:
        lock = self._path(name, "lock")
        for _ in range(3):  # a dead holder's lock is deleted, then created afresh; another run may win that race
            if self.store.create_new(lock, json.dumps(asdict(self.me)).encode()):
                self._write_beat(name)
                log.debug("took the lock %s", lock)
                return
            seen = self.store.read(lock)
            if seen is None:
                continue  # released between our two calls
            holder, last_sign = _holder(seen), self._last_sign_of_life(name, seen)
            why = self._dead(holder, last_sign)
            if why is None:
                raise RunInProgress(self._busy_message(name, holder, last_sign))
            log.warning(
                "taking over the lock of %s from %s: %s",
                name,
                holder.describe() if holder else "an unreadable lock",
                why,
            )
            if self.store.read(lock) == seen:
                self.store.delete(lock)
        raise RunInProgress(f"another run of this source keeps taking the lock of {name}; try again later")

    def _dead(self, holder: Holder | None, last_sign: float | None) -> str | None:
        """Why the lock's holder is gone, or None while it is alive."""
        now = self.clock()
        if last_sign is None:
            return "the lock vanished"
        if now - last_sign > self.expiry:
            return f"no heartbeat for {now - last_sign:.0f} s (expiry {self.expiry:.0f} s)"
        if holder is not None and holder.host == self.me.host and not pid_alive(holder.pid):
            return f"{holder.describe()} is no longer running"
        return None

    def _last_sign_of_life(self, name: str, lock: bytes) -> float | None:
        """The holder's latest heartbeat, else when its lock was written (also for a lock we cannot parse)."""
        holder = _holder(lock)
        beat = _parse(self.store.read(self._path(name, "beat")))
        if holder is not None and beat and beat.get("token") == holder.token:
            return float(beat["at"])
        return holder.since if holder is not None else self.store.modified(self._path(name, "lock"))

    def _busy_message(self, name: str, holder: Holder | None, last_sign: float | None) -> str:
        since = _utc(holder.since) if holder else "an unknown time"
        who = f" ({holder.describe()})" if holder else ""
        age = f"{self.clock() - last_sign:.0f} s ago" if last_sign is not None else "unknown"
        return (
            f"another run of this source is in progress since {since}{who}: it holds the lock of {name} "
            f"(last heartbeat {age}). This run stops; the lock frees itself when that run ends, or "
            f"{self.expiry:.0f} s after its last heartbeat if it died."
        )

    def _beat_until_released(self) -> None:
        while not self._stop.wait(self.heartbeat):
            for name in self._held:
                try:
                    holder = _holder(self.store.read(self._path(name, "lock")))
                    if holder != self.me:
                        self._lost = (
                            f"the lock of {name} was taken over by "
                            f"{holder.describe() if holder else 'nobody'} after our heartbeats stopped "
                            f"for longer than {self.expiry:.0f} s; stopping before writing again"
                        )
                        log.error("%s", self._lost)
                        return
                    self._write_beat(name)
                except Exception:  # storage hiccup: the next beat tries again, the expiry has room for a few
                    log.warning("could not renew the lock of %s", name, exc_info=True)

    def _write_beat(self, name: str) -> None:
        self.store.write(self._path(name, "beat"), json.dumps({"token": self.me.token, "at": self.clock()}).encode())

    def _path(self, name: str, kind: str) -> str:
        return f"{self.folder}/{name}.{kind}"


def _holder(lock: bytes | None) -> Holder | None:
    data = _parse(lock)
    try:
        return Holder(**data) if data else None
    except TypeError:
        return None


def _parse(data: bytes | None) -> dict | None:
    try:
        value = json.loads(data) if data else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
