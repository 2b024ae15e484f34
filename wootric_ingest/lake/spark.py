"""The one place that knows where a Spark session comes from: Databricks, spark-submit, or local.

On Databricks and under spark-submit the platform already made a session (with Delta configured by
the runtime or by `--packages`), so we reuse it. Locally we build one with the Delta jars that `make setup`
resolved once from Maven Central: their paths are recorded then, so later sessions start without resolving
(and without Ivy's report in a run's output). A local session is sized for one machine and small tables:
few shuffle and Delta snapshot partitions, no UI, Spark's own log lines only when they are warnings a user
can act on, scratch files out of the working directory.

A local run's JVM lives seconds to minutes, and most of that is cold: classes loaded and verified, code
compiled. So its JVM maps a class-data archive that `make setup` recorded from a small Delta workload
(Spark's and Delta's classes arrive parsed and verified; the Delta jars sit on the class path, where the
archive can hold them), and compiles with C1 only: C2's compiler threads would take the same few cores as the
run and rarely repay within it. An archive from another JDK or other jars is ignored by the JVM, silently.
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

#: The local JVM's own options (see the module's doc). C1 alone gets a code cache of 48 MB by default, which
#: Spark's generated code fills within minutes of a long session (a test suite, a long run); a full cache sets
#: the JVM sweeping it instead of working, so it gets the 240 MB the JVM gives C1 and C2 together.
JVM_OPTIONS = (
    "-XX:TieredStopAtLevel=1",
    "-XX:ReservedCodeCacheSize=240m",
    "-Xlog:cds=off",
    "-Xlog:cds+dynamic=off",
)

#: What a local JVM prints on its own, outside log4j, that no user can act on: Spark 4 loads an incubator module.
_JVM_NOISE = (b"WARNING: Using incubator modules",)


def delta_package() -> str:
    """The Maven coordinates of the Delta jars that match the installed delta-spark wheel."""
    return f"io.delta:delta-spark_2.13:{version('delta-spark')}"


def _recorded(suffix: str) -> Path:
    """Where `make setup` records what it prepared once: beside this Python environment, per Delta version."""
    return Path(sys.prefix) / "share" / "wootric-ingest" / f"delta-spark-{version('delta-spark')}.{suffix}"


def _recorded_jars() -> list[str] | None:
    """The paths of the jars resolved once, if every one of them is still there."""
    try:
        jars = [j.removeprefix("file://") for j in _recorded("jars").read_text(encoding="utf-8").split()]
    except OSError:
        return None
    return jars if jars and all(Path(j).is_file() for j in jars) else None


def class_archive() -> Path:
    """The JVM class-data archive `make setup` records (see the module's doc)."""
    return _recorded("jsa")


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
    session = _platform_session() or _local_session(
        app_name, scratch, ("-XX:SharedArchiveFile=" + str(class_archive()),)
    )
    session.conf.set("spark.sql.session.timeZone", "UTC")
    return session


def _local_session(app_name: str, scratch: str | os.PathLike | None, archive: tuple[str, ...]) -> SparkSession:
    """A local session; `archive` is the JVM option that maps the class-data archive, or the one that records it."""
    scratch_dir = Path(
        scratch or os.environ.get("WOOTRIC_SPARK_SCRATCH") or Path(tempfile.gettempdir()) / "wootric-ingest-spark"
    )
    (scratch_dir / "tmp").mkdir(parents=True, exist_ok=True)
    jars = _recorded_jars()
    java_options = [
        f"-Dderby.system.home={scratch_dir / 'derby'}",
        f"-Djava.io.tmpdir={scratch_dir / 'tmp'}",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG.as_uri()}",
        *JVM_OPTIONS,
        *(archive if jars else ()),
    ]
    conf = (
        SparkConf()
        .setMaster(os.environ.get("WOOTRIC_SPARK_MASTER", "local[*]"))
        .setAppName(app_name)
        .set("spark.driver.extraClassPath" if jars else "spark.jars.packages", ":".join(jars or []) or delta_package())
        .set("spark.sql.extensions", DELTA_EXTENSION)
        .set("spark.sql.catalog.spark_catalog", DELTA_CATALOG)
        .set("spark.sql.warehouse.dir", str(scratch_dir / "warehouse"))
        .set("spark.driver.extraJavaOptions", " ".join(java_options))
        .setAll(list(LOCAL_CONF.items()))
        .setAll([(k, v) for k, _, v in (kv.partition("=") for kv in os.environ.get("WOOTRIC_SPARK_CONF", "").split())])
    )
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # Python workers run with this environment's packages
    gateway = launch_gateway(conf, popen_kwargs={"stderr": subprocess.PIPE})
    threading.Thread(target=_forward, args=(gateway.proc.stderr,), name="jvm-stderr", daemon=True).start()
    SparkContext(conf=conf, gateway=gateway)
    return SparkSession.builder.getOrCreate()


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


def _record_jars() -> None:
    """Resolve the Delta jars into the Ivy cache and record where they are; touching a Delta class proves they
    load, so a broken install fails here, loudly, not in a test."""
    spark = get_spark()
    spark.sql("SELECT 1").write.format("delta").mode("overwrite").save(tempfile.mkdtemp())  # raises without jars
    if _recorded_jars() is None:  # this session resolved them
        resolved = spark.sparkContext.getConf().get("spark.jars") or ""
        _recorded("jars").parent.mkdir(parents=True, exist_ok=True)
        _recorded("jars").write_text("\n".join(resolved.split(",")) + "\n", encoding="utf-8")
    print(f"Delta jars ready: {delta_package()} on Spark {spark.version}")
    spark.stop()


def _record_class_archive() -> None:
    """Run what a landing runs (a table with a change feed created, overwritten, merged into, its history and
    change feed read) in a JVM that records the classes it loaded when it exits; the archive is renamed into
    place only once that JVM has exited, so no session maps a half-written one."""
    partial = class_archive().with_suffix(".partial")
    partial.unlink(missing_ok=True)
    spark = _local_session("wootric-ingest-setup", None, (f"-XX:ArchiveClassesAtExit={partial}",))
    from delta.tables import DeltaTable

    spark.sparkContext.setLogLevel("ERROR")  # the workload's warnings are about the workload, not the install
    path = tempfile.mkdtemp()
    spark.sql(
        f"CREATE TABLE delta.`{path}` (id STRING, updated_at STRING, score INT) USING delta "
        "TBLPROPERTIES (delta.enableChangeDataFeed = true)"
    )
    rows = spark.range(1000).selectExpr(
        "CAST(id AS STRING) AS id", "'2026-01-01T00:00:00Z' AS updated_at", "1 AS score"
    )
    rows.repartitionByRange(2, "id").write.format("delta").mode("overwrite").save(path)
    (
        DeltaTable.forPath(spark, path)
        .alias("t")
        .merge(rows.where("id < 10").selectExpr("id", "updated_at", "2 AS score").alias("s"), "t.id = s.id")
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll()
        .execute()
    )
    DeltaTable.forPath(spark, path).history().collect()
    spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", 0).load(path).groupBy(
        "_change_type"
    ).count().collect()
    gateway = SparkContext._gateway
    spark.stop()
    assert gateway is not None and gateway.proc is not None
    gateway.proc.stdin.close()  # the JVM exits at the end of its input, and writes the archive on its way out
    if gateway.proc.wait(timeout=600) == 0 and partial.is_file():
        partial.rename(class_archive())
        print(f"JVM class archive ready: {class_archive().stat().st_size // 2**20} MB")
    else:
        print("No JVM class archive (the JVM did not write one): local sessions start without it", file=sys.stderr)


if __name__ == "__main__":
    # `make setup` runs this once: the jars, then (in a fresh JVM with them on its class path) the class archive.
    if sys.argv[1:] == ["--class-archive"]:
        _record_class_archive()
    else:
        _record_jars()
        subprocess.run([sys.executable, "-m", "wootric_ingest.lake.spark", "--class-archive"], check=True)
