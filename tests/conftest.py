"""Shared fixtures: one real local Spark session with Delta per test run, and config builders.

There is no skip here on purpose: without Java or the Delta jars, `get_spark` raises and every Delta
test errors loudly, so a broken install is seen.
"""

from __future__ import annotations

import copy
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from wootric_ingest.config import SourceConfig, parse_config

REPO = Path(__file__).resolve().parents[1]

# Test tables are tiny: one shuffle partition and one Delta snapshot partition are enough, in this process's
# session and in every job and chaos-worker JVM a test starts (they inherit the environment).
os.environ.setdefault(
    "WOOTRIC_SPARK_CONF", "spark.sql.shuffle.partitions=1 spark.databricks.delta.snapshotPartitions=1"
)


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built once per test run by `make dist` exactly as a user builds it."""
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        ["make", "--no-print-directory", "dist", f"DIST={dist}"], cwd=REPO, check=True, capture_output=True, text=True
    )
    wheels = list(dist.glob("wootric_ingest-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from wootric_ingest.lake.spark import get_spark

    session = get_spark(scratch=tmp_path_factory.mktemp("spark"))
    yield session
    session.stop()


BASE_CONFIG = {
    "source": {
        "description": "Wootric sandbox for tests",
        # The sandbox has no rate limit unless a test gives it one; the client's default pace (100 a minute
        # until the headers say otherwise) would only make tests wait.
        "api": {
            "base_url": "http://127.0.0.1:1",
            "auth": {"username": "u", "password": "p"},
            "requests_per_minute": 6000,
        },
        "start_date": "2024-01-01T00:00:00Z",
        "trigger": {"cron": "0 6 * * *", "timezone": "UTC"},
        "delta_log_retention_days": 30,
    },
    "catalog": {"root": "lakehouse", "table_prefix": "wootric_"},
    "streams": {
        "end_users": {"layer": "raw", "folder": "wootric", "table": "end_users", "sync_type": "INCREMENTAL"},
        "responses": {"layer": "raw", "folder": "wootric", "table": "responses", "sync_type": "INCREMENTAL"},
        "declines": {"layer": "raw", "folder": "wootric", "table": "declines", "sync_type": "FULL_TABLE"},
    },
}


def config_dict(**sections) -> dict:
    """BASE_CONFIG with sections merged in one level deep (e.g. source={"start_date": ...})."""
    data = copy.deepcopy(BASE_CONFIG)
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    return data


@pytest.fixture
def make_config(tmp_path: Path):
    """Build a validated SourceConfig pointing at a sandbox and a fresh lakehouse under tmp_path; with
    `tables="managed"`, managed tables by name in the session catalog, in schemas of this test's own (the
    session catalog outlives a test)."""

    def build(sandbox=None, tables: str = "path", **sections) -> SourceConfig:
        data = config_dict(**sections)
        if tables == "managed":
            own = uuid.uuid4().hex[:8]
            data["catalog"].update(tables="managed", job_schema=f"jobs_{own}")
            for stream in data["streams"].values():
                stream["layer"] = f"{stream['layer']}_{own}"
        if sandbox is not None:
            data["source"]["api"] = {
                "base_url": sandbox.base_url,
                "auth": {"username": sandbox.credentials.username, "password": sandbox.credentials.password},
                **{k: v for k, v in data["source"]["api"].items() if k not in ("base_url", "auth")},
            }
        return parse_config(data, base=tmp_path, environ={})

    return build


@pytest.fixture(params=["path", "managed"])
def table_mode(request) -> str:
    """Both ways tables can live: at paths, and managed by name (Unity Catalog on Databricks; here the session
    catalog, which takes the same code path as a three-part name)."""
    return request.param


def lakehouse(spark, config: SourceConfig):
    from wootric_ingest.lake.lakehouse import Lakehouse

    return Lakehouse(config, spark)


def read_table(spark, config: SourceConfig, stream: str):
    """A stream's table as Spark reads it, wherever it lives."""
    return lakehouse(spark, config).table(config.stream(stream)).read()


def table_path(config: SourceConfig, stream: str) -> str:
    """Where a stream's table lives, as the job's layout says."""
    from wootric_ingest.lake.layout import Layout

    return Layout(config.catalog).table_path(config.stream(stream))


def runs_path(config: SourceConfig) -> str:
    from wootric_ingest.lake.layout import Layout

    return Layout(config.catalog).runs_path
