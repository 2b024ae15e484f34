"""Wootric as a Spark data source (Spark 4, Databricks Runtime 15.4+ and serverless).

    from wootric_ingest.source import register
    register(spark)
    spark.read.format("wootric").option("stream", "responses").option(...).load()

See `datasource` for what a read guarantees and `options` for the options.
"""

from __future__ import annotations

import re

from pyspark.sql import SparkSession

from wootric_ingest.source.datasource import NAME, WootricDataSource
from wootric_ingest.source.options import SECRET_OPTIONS

#: Spark's default `spark.redaction.regex`: option keys it matches are masked in plans, the UI and logs.
SPARK_REDACTION_DEFAULT = r"(?i)secret|password|token|access[.]?key"
OPTIONS_REDACTION = "spark.sql.redaction.options.regex"

__all__ = ["NAME", "WootricDataSource", "register"]


def register(spark: SparkSession) -> None:
    """Make `format("wootric")` available in this session, with every credential option redacted.

    Spark masks the values of options whose key matches `spark.redaction.regex` or
    `spark.sql.redaction.options.regex`; the default of the first covers `password`, `client_secret` and
    `account_token`. Should a cluster's setting not cover one of them, it is added to the second.
    """
    spark.dataSource.register(WootricDataSource)
    patterns = [spark.conf.get("spark.redaction.regex", SPARK_REDACTION_DEFAULT), spark.conf.get(OPTIONS_REDACTION)]
    uncovered = [key for key in SECRET_OPTIONS if not any(p and re.search(p, key) for p in patterns)]
    if uncovered:
        spark.conf.set(OPTIONS_REDACTION, "|".join(filter(None, [patterns[1], *map(re.escape, uncovered)])))
