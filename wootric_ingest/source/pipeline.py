"""A Lakeflow Declarative Pipeline (Delta Live Tables) over the `wootric` data source: the pipeline's source file.

Per stream named in the pipeline configuration's `wootric.streams`: a streaming table `wootric_<stream>_feed`
appended by `spark.readStream.format("wootric")` (Spark's checkpoint keeps the offsets), and `wootric_<stream>`,
one row per id kept current by an AUTO CDC flow sequenced by `updated_at` (then `_extracted_at`, so a record
re-emitted by the look-back ties nothing). The data source's options come from the configuration as
`wootric.<option>`; a value `{{secrets/<scope>/<key>}}` is read from the secret scope on the driver and
handed to Spark as an option, which Spark redacts. `make bundle CONF=... PIPELINE=1` deploys this file with the
wheel and the configuration taken from the job's config file.

Runs only inside a pipeline (the `dlt` module and a Databricks session exist only there).
"""

from __future__ import annotations

import re

import dlt  # type: ignore[import-not-found]  # the Lakeflow Declarative Pipelines runtime's module
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from wootric_ingest.cli.commands import databricks_secret_reader
from wootric_ingest.source import register
from wootric_ingest.source.options import OPTIONS
from wootric_ingest.streams import STREAMS

SECRET_REFERENCE = re.compile(r"^\{\{\s*secrets/([^/\s}]+)/([^/\s}]+)\s*\}\}$")

spark = SparkSession.builder.getOrCreate()
register(spark)


def source_options(stream: str) -> dict[str, str]:
    """The data source's options for `stream`, from the pipeline configuration, secret references read."""
    read_secret = databricks_secret_reader()
    options = {"stream": stream, "lookback_days": str(STREAMS[stream].default_lookback_days)}
    for key in OPTIONS:
        value = spark.conf.get(f"wootric.{key}", None)
        if value is None or key == "stream":
            continue
        reference = SECRET_REFERENCE.match(value)
        options[key] = read_secret(*reference.groups()) if reference and read_secret else value
    return options


def define(stream: str) -> None:
    """The feed (what the API sent, appended) and the current table (one row per id) of one stream."""
    feed = f"wootric_{stream}_feed"

    @dlt.table(name=feed, comment=f"Wootric {stream} as read, appended (a look-back re-emits recent records)")
    def _feed() -> DataFrame:
        return spark.readStream.format("wootric").options(**source_options(stream)).load()

    dlt.create_streaming_table(name=f"wootric_{stream}", comment=f"Wootric {stream}: one row per id, current")
    dlt.create_auto_cdc_flow(
        target=f"wootric_{stream}",
        source=feed,
        keys=["id"],
        sequence_by=F.struct("updated_at", "_extracted_at"),
        stored_as_scd_type=1,
    )


for name in (spark.conf.get("wootric.streams", None) or "responses").split(","):
    define(name.strip())
