"""The file operations the job does beside its Delta tables (staging, locks), on the catalog root's storage.

Python's file API where it reaches the root (a local path, `file:`, `dbfs:/` through Databricks' `/dbfs`
FUSE mount); else the Hadoop FileSystem API of the driver's JVM (s3a://, abfss://, gs://), the same code and
credentials Spark reads and writes the tables with.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

_DBFS_FUSE = Path("/dbfs")


class Storage(Protocol):
    def read(self, path: str) -> bytes | None:
        """The file's bytes, or None when it does not exist."""

    def write(self, path: str, data: bytes) -> None:
        """Create or replace `path`: readers see the old content or the new, never half (on HDFS and ABFS,
        where a file being written is visible, a reader may see it short)."""

    def publish(self, path: str, data: bytes) -> None:
        """Create `path`, which does not exist yet, so that no reader ever sees it half written, on any storage:
        written under a hidden name (`.{name}.tmp`, which Spark skips) and renamed into place."""

    def create_new(self, path: str, data: bytes) -> bool:
        """Create `path` holding `data` unless it exists; True when this call created it."""

    def modified(self, path: str) -> float | None:
        """When the file was last written (Unix seconds), or None when it does not exist."""

    def delete(self, path: str) -> None: ...

    def names(self, folder: str) -> list[str]:
        """The names in `folder` ([] when it does not exist)."""

    def remove_tree(self, folder: str) -> None: ...

    def remove_if_empty(self, folder: str) -> None: ...


class LocalStorage:
    """Local paths, `file:` URIs and `dbfs:/` through the `/dbfs` mount."""

    @staticmethod
    def local(path: str) -> Path:
        parts = urlsplit(path)
        if parts.scheme == "dbfs":
            return _DBFS_FUSE / parts.path.lstrip("/")
        if parts.scheme == "file":
            return Path(parts.path)
        return Path(path)

    def read(self, path: str) -> bytes | None:
        try:
            return self.local(path).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, path: str, data: bytes) -> None:
        os.replace(self._written_aside(path, data), self.local(path))

    def publish(self, path: str, data: bytes) -> None:
        self.write(path, data)  # a rename is atomic on a POSIX file system

    def create_new(self, path: str, data: bytes) -> bool:
        partial = self._written_aside(path, data)
        try:
            os.link(partial, self.local(path))  # atomic, and fails if the file exists: never half written
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(partial)

    def modified(self, path: str) -> float | None:
        try:
            return self.local(path).stat().st_mtime
        except FileNotFoundError:
            return None

    def delete(self, path: str) -> None:
        self.local(path).unlink(missing_ok=True)

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

    def _written_aside(self, path: str, data: bytes) -> Path:
        """`data` in a hidden file of its own beside `path` (unique: concurrent writers never share one)."""
        target = self.local(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        partial.write_bytes(data)
        return partial


class HadoopStorage:
    """Any other URI through the driver JVM's Hadoop FileSystem API."""

    def __init__(self, spark):
        self._jvm = spark.sparkContext._jvm
        self._conf = spark.sparkContext._jsc.hadoopConfiguration()

    def read(self, path: str) -> bytes | None:
        fs, p = self._fs(path)
        if not fs.exists(p):
            return None
        stream = fs.open(p)
        try:
            return bytes(stream.readAllBytes())
        finally:
            stream.close()

    def write(self, path: str, data: bytes) -> None:
        fs, p = self._fs(path)
        self._create(fs, p, data, overwrite=True)  # S3 and GCS publish an object whole when it is closed

    def publish(self, path: str, data: bytes) -> None:
        fs, target = self._fs(path)
        partial = self._jvm.org.apache.hadoop.fs.Path(target.getParent(), f".{target.getName()}.tmp")
        self._create(fs, partial, data, overwrite=True)
        if not fs.rename(partial, target):
            raise OSError(f"could not rename {partial.toString()} to {target.toString()}")

    def create_new(self, path: str, data: bytes) -> bool:
        fs, p = self._fs(path)
        if fs.exists(p):
            return False
        try:
            self._create(fs, p, data, overwrite=False)
        except Exception as e:  # py4j wraps the JVM's FileAlreadyExistsException
            if "FileAlreadyExistsException" in str(e):
                return False
            raise
        return True

    def modified(self, path: str) -> float | None:
        fs, p = self._fs(path)
        return fs.getFileStatus(p).getModificationTime() / 1000 if fs.exists(p) else None

    def delete(self, path: str) -> None:
        fs, p = self._fs(path)
        fs.delete(p, False)

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

    def _fs(self, path: str):
        p = self._jvm.org.apache.hadoop.fs.Path(path)
        return p.getFileSystem(self._conf), p

    @staticmethod
    def _create(fs, p, data: bytes, *, overwrite: bool) -> None:
        out = fs.create(p, overwrite)
        try:
            out.write(bytearray(data))
        finally:
            out.close()


def python_reaches(root: str) -> bool:
    """Whether Python's file API reaches the root (a local path, or DBFS through its FUSE mount)."""
    scheme = urlsplit(root).scheme
    return scheme in ("", "file") or (scheme == "dbfs" and _DBFS_FUSE.is_dir())


def storage_for(root: str, spark=None) -> Storage:
    """Python's file API where it reaches the root, else Hadoop's (which needs `spark`)."""
    if python_reaches(root):
        return LocalStorage()
    if spark is None:
        raise ValueError(f"files under {root} need a Spark session (its Hadoop FileSystem API)")
    return HadoopStorage(spark)
