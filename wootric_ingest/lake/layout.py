"""Where everything of one source lives: the stream tables (at a path under the root, or managed by name), their
metastore names, and the job's own tables (runs, rejected) and files (staging, locks, always under the root).
Plain data derived from the config, so the chaos harness and tests share it without a Spark session;
`Lakehouse` is the one thing in the job that uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

from wootric_ingest.config import CatalogConfig, NpsConfig, StreamConfig, TableMode

JOB_FOLDER = "_wootric_ingest"


def quote(identifier: str) -> str:
    return "`" + identifier.replace("`", "``") + "`"


@dataclass(frozen=True)
class Layout:
    catalog: CatalogConfig

    @property
    def root(self) -> str:
        return self.catalog.root.rstrip("/")

    def table_name(self, stream: StreamConfig) -> str:
        """The table's own name: the prefix, then the stream's table."""
        return f"{self.catalog.table_prefix}{stream.table}"

    def table_path(self, stream: StreamConfig) -> str:
        """`{root}/{layer}/{folder}/{prefix}{table}`, without the folder segment when there is none."""
        return self._path(stream.layer, stream.folder, self.table_name(stream))

    def _path(self, layer: str, folder: str, table: str) -> str:
        return "/".join([self.root, layer, *([folder] if folder else []), table])

    def gold_path(self, nps: NpsConfig, table: str) -> str:
        """A gold table's path, laid out as a stream's: `{root}/{layer}/{folder}/{prefix}{table}`."""
        return self._path(nps.layer, nps.folder, f"{self.catalog.table_prefix}{table}")

    def gold_lock_name(self, nps: NpsConfig, table: str) -> str:
        """A gold table's lock, named as a stream table's."""
        return ".".join(p for p in (nps.layer, nps.folder, f"{self.catalog.table_prefix}{table}") if p)

    def gold_name(self, nps: NpsConfig, table: str) -> str | None:
        """A gold table's metastore name, `{catalog}.{layer}.{prefix}{table}`, as a stream's."""
        return self._name(nps.layer, f"{self.catalog.table_prefix}{table}")

    @property
    def managed(self) -> bool:
        return self.catalog.tables is TableMode.MANAGED

    def metastore_name(self, stream: StreamConfig) -> str | None:
        """`{catalog}.{layer}.{prefix}{table}` quoted (two parts without `catalog.name`), or None for path tables
        without `catalog.metastore`. The folder has no place in a three-level name: it only groups paths."""
        return self._name(stream.layer, self.table_name(stream))

    def where(self, stream: StreamConfig) -> str:
        """Where a user finds the stream's table: its name when managed, else its path."""
        return (self.metastore_name(stream) or "") if self.managed else self.table_path(stream)

    @property
    def runs_name(self) -> str | None:
        return self._name(self.catalog.job_schema, f"{self.catalog.table_prefix}runs")

    @property
    def rejected_name(self) -> str | None:
        return self._name(self.catalog.job_schema, f"{self.catalog.table_prefix}rejected")

    def _name(self, schema: str, table: str) -> str | None:
        if not self.catalog.registered:
            return None
        parts = ([self.catalog.name] if self.catalog.name else []) + [schema, table]
        return ".".join(quote(p) for p in parts)

    def lock_name(self, stream: StreamConfig) -> str:
        """A table's lock: its path under the root with dots (config names are letters, digits, `_`)."""
        return ".".join(p for p in (stream.layer, stream.folder, self.table_name(stream)) if p)

    @property
    def job_folder(self) -> str:
        return f"{self.root}/{JOB_FOLDER}"

    @property
    def runs_path(self) -> str:
        return f"{self.job_folder}/runs"

    @property
    def rejected_path(self) -> str:
        return f"{self.job_folder}/rejected"

    @property
    def staging_root(self) -> str:
        return f"{self.job_folder}/staging"

    def staging_folder(self, run_id: str, stream: str) -> str:
        return f"{self.staging_root}/{run_id}/{stream}"

    @property
    def locks_folder(self) -> str:
        return f"{self.job_folder}/locks"
