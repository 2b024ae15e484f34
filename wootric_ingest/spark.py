"""The one place that knows where a Spark session comes from: Databricks, spark-submit, or local.

On Databricks and under spark-submit the platform already made a session (with Delta configured by
the runtime or by `--packages`), so we reuse it. Locally we build `local[*]` with the Delta jars that
`make setup` resolved once into the Ivy cache, and keep Spark's scratch files out of the repo root.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pyspark.sql import SparkSession

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"


def delta_package() -> str:
    """The Maven coordinates of the Delta jars that match the installed delta-spark wheel."""
    from importlib.metadata import version

    return f"io.delta:delta-spark_2.13:{version('delta-spark')}"


def _platform_session() -> SparkSession | None:
    """The session Databricks or spark-submit already made, if this process runs under one."""
    if os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        return SparkSession.builder.getOrCreate()
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if os.environ.get("SPARK_ENV_LOADED") or os.environ.get("PYSPARK_GATEWAY_PORT"):
        return SparkSession.builder.getOrCreate()  # spark-submit: the JVM and its --packages are already set
    return None


def get_spark(app_name: str = "wootric-ingest", scratch: str | os.PathLike | None = None) -> SparkSession:
    """Reuse the platform's session, or build a local Delta-enabled one with UTC time and no UI."""
    session = _platform_session()
    if session is None:
        scratch_dir = Path(scratch or os.environ.get("WOOTRIC_SPARK_SCRATCH")
                           or Path(tempfile.gettempdir()) / "wootric-ingest-spark")
        scratch_dir.mkdir(parents=True, exist_ok=True)
        builder = (
            SparkSession.builder.master(os.environ.get("WOOTRIC_SPARK_MASTER", "local[*]"))
            .appName(app_name)
            .config("spark.jars.packages", delta_package())
            .config("spark.sql.extensions", DELTA_EXTENSION)
            .config("spark.sql.catalog.spark_catalog", DELTA_CATALOG)
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "4")
            .config("spark.default.parallelism", "4")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.warehouse.dir", str(scratch_dir / "warehouse"))
            .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={scratch_dir / 'derby'}")
            .config("spark.local.dir", str(scratch_dir / "local"))
            .config("spark.databricks.delta.schema.autoMerge.enabled", "false")
        )
        session = builder.getOrCreate()
        session.sparkContext.setLogLevel(os.environ.get("WOOTRIC_SPARK_LOG_LEVEL", "WARN"))
    session.conf.set("spark.sql.session.timeZone", "UTC")
    return session


if __name__ == "__main__":
    # `make setup` runs this once: starting a session resolves the Delta jars into the Ivy cache, and
    # touching a Delta class proves they load, so a broken install fails here, loudly, not in a test.
    spark = get_spark()
    spark.sparkContext._jvm.io.delta.tables.DeltaTable.forName  # noqa: B018  (raises if the jars are missing)
    print(f"Delta jars ready: {delta_package()} on Spark {spark.version}")
    spark.stop()
