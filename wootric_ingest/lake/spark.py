"""The one place that knows where a Spark session comes from: Databricks, spark-submit, or local.

On Databricks and under spark-submit the platform already made a session (with Delta configured by
the runtime or by `--packages`), so we reuse it. Locally we build one with the Delta jars that `make setup`
resolved once from Maven Central: their paths are recorded then, so later sessions start without resolving
(and without Ivy's report in a run's output). A local session is sized for one machine and small tables:
few shuffle and Delta snapshot partitions, no UI, Spark's own log lines only when they are warnings a user
can act on, scratch files out of the working directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path
from typing import IO

from pyspark import SparkConf, SparkContext
from pyspark.java_gateway import launch_gateway
from pyspark.sql import SparkSession

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")

#: Settings of a local session: a shuffle or a Delta log replay on one machine needs few partitions (Delta's
#: default of 50 snapshot partitions costs seconds per table version read in a small JVM).
LOCAL_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "4",
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.sql.session.timeZone": "UTC",
    "spark.databricks.delta.schema.autoMerge.enabled": "false",
}

#: What a local JVM prints on its own, outside log4j, that no user can act on: Spark 4 loads an incubator module.
_JVM_NOISE = (b"WARNING: Using incubator modules",)


def delta_package() -> str:
    """The Maven coordinates of the Delta jars that match the installed delta-spark wheel."""
    return f"io.delta:delta-spark_2.13:{version('delta-spark')}"


def _jars_record() -> Path:
    """Where `make setup` records the resolved jars: beside this Python environment, per Delta version."""
    return Path(sys.prefix) / "share" / "wootric-ingest" / f"delta-spark-{version('delta-spark')}.jars"


def _recorded_jars() -> str | None:
    """The jars resolved once, if every one of them is still there."""
    try:
        jars = _jars_record().read_text(encoding="utf-8").split()
    except OSError:
        return None
    return ",".join(jars) if jars and all(Path(j.removeprefix("file://")).is_file() for j in jars) else None


def on_databricks() -> bool:
    """Whether this process runs on the Databricks Runtime (where managed tables are Unity Catalog's)."""
    return bool(os.environ.get("DATABRICKS_RUNTIME_VERSION"))


def _platform_session() -> SparkSession | None:
    """The session Databricks or spark-submit already made, if this process runs under one."""
    if on_databricks():
        return SparkSession.builder.getOrCreate()
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if SparkContext._active_spark_context is not None:  # this process's session, asked for from another thread
        return SparkSession.builder.getOrCreate()
    if os.environ.get("SPARK_ENV_LOADED") or os.environ.get("PYSPARK_GATEWAY_PORT"):
        return SparkSession.builder.getOrCreate()  # spark-submit: the JVM and its --packages are already set
    return None


def get_spark(app_name: str = "wootric-ingest", scratch: str | os.PathLike | None = None) -> SparkSession:
    """Reuse the platform's session, or build a local Delta-enabled one (see the module's doc)."""
    session = _platform_session()
    if session is None:
        scratch_dir = Path(
            scratch or os.environ.get("WOOTRIC_SPARK_SCRATCH") or Path(tempfile.gettempdir()) / "wootric-ingest-spark"
        )
        (scratch_dir / "tmp").mkdir(parents=True, exist_ok=True)
        jars = _recorded_jars()
        java_options = (
            f"-Dderby.system.home={scratch_dir / 'derby'} -Djava.io.tmpdir={scratch_dir / 'tmp'} "
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG.as_uri()}"
        )
        conf = (
            SparkConf()
            .setMaster(os.environ.get("WOOTRIC_SPARK_MASTER", "local[*]"))
            .setAppName(app_name)
            .set("spark.jars" if jars else "spark.jars.packages", jars or delta_package())
            .set("spark.sql.extensions", DELTA_EXTENSION)
            .set("spark.sql.catalog.spark_catalog", DELTA_CATALOG)
            .set("spark.sql.warehouse.dir", str(scratch_dir / "warehouse"))
            .set("spark.driver.extraJavaOptions", java_options)
            .setAll(list(LOCAL_CONF.items()))
            .setAll(
                [(k, v) for k, _, v in (kv.partition("=") for kv in os.environ.get("WOOTRIC_SPARK_CONF", "").split())]
            )
        )
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # Python workers run with this environment's packages
        gateway = launch_gateway(conf, popen_kwargs={"stderr": subprocess.PIPE})
        threading.Thread(target=_forward, args=(gateway.proc.stderr,), name="jvm-stderr", daemon=True).start()
        SparkContext(conf=conf, gateway=gateway)
        session = SparkSession.builder.getOrCreate()
    session.conf.set("spark.sql.session.timeZone", "UTC")
    return session


def start_spark(app_name: str = "wootric-ingest") -> Future[SparkSession]:
    """`get_spark` on a thread of its own: a run fetches the streams whose plan needs no table history while
    the JVM starts (see run/job.py)."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spark-start")
    try:
        return pool.submit(get_spark, app_name)
    finally:
        pool.shutdown(wait=False)


def _forward(jvm_stderr: IO[bytes]) -> None:
    """The local JVM's stderr (log4j's lines) onto ours, without the lines in `_JVM_NOISE`."""
    for line in iter(jvm_stderr.readline, b""):
        if not line.startswith(_JVM_NOISE):
            os.write(2, line)


if __name__ == "__main__":
    # `make setup` runs this once: a session resolves the Delta jars into the Ivy cache and records where they
    # are; touching a Delta class proves they load, so a broken install fails here, loudly, not in a test.
    spark = get_spark()
    spark.sql("SELECT 1").write.format("delta").mode("overwrite").save(tempfile.mkdtemp())  # raises without jars
    resolved = spark.sparkContext.getConf().get("spark.jars") or ""
    _jars_record().parent.mkdir(parents=True, exist_ok=True)
    _jars_record().write_text("\n".join(resolved.split(",")) + "\n", encoding="utf-8")
    print(f"Delta jars ready: {delta_package()} on Spark {spark.version}")
    spark.stop()
