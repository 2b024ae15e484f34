"""Record shaping as Spark expressions: staged raw JSON in, the seed's columns and types out.

Staged records are read with a *raw* schema whose leaves are all strings: Spark's JSON reader keeps any
JSON value (number, object, array) as its text, so nothing fails to parse at read time. Each column
is then typed with `try_` casts, so a value of the wrong type becomes null (and is counted) instead of
failing the run, and `_raw` keeps the record exactly as received. No Python UDFs: all of it runs in
the JVM, on executors.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Observation, Window
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, DataType, DoubleType, IntegerType, StringType, StructField, StructType

from wootric_ingest.lake.schemas import seed_schema
from wootric_ingest.streams import PRIMARY_KEY, Stream

#: One staged line: when the record was fetched, and the record as the API sent it (kept as JSON text).
STAGED_SCHEMA = StructType(
    [
        StructField("fetched_at", DoubleType()),
        StructField("record", StringType()),
    ]
)

_PACIFIC = "America/Los_Angeles"  # the zone Wootric renders offset-less timestamps in


def raw_schema(schema: StructType) -> StructType:
    """The seed schema with every leaf as a string, so any JSON value reads as its text."""

    def leaf(field: StructField) -> StructField:
        if isinstance(field.dataType, StructType):
            return StructField(field.name, raw_schema(field.dataType))
        return StructField(field.name, StringType())

    return StructType([leaf(f) for f in schema.fields])


def iso_utc(raw: Column) -> Column:
    """Any Wootric timestamp form as ISO-8601 UTC (`2018-01-03T07:03:41Z`), or null if unparseable.

    Forms: Ruby `2018-01-02 23:03:41 -0800`, ISO with or without millis, offset-less (Pacific local),
    and Unix seconds (`external_created_at` is an integer).
    """
    ts = F.coalesce(
        F.try_to_timestamp(raw, F.lit("yyyy-MM-dd HH:mm:ss Z")),
        F.try_to_timestamp(raw, F.lit("yyyy-MM-dd'T'HH:mm:ss.SSSXXX")),
        F.try_to_timestamp(raw, F.lit("yyyy-MM-dd'T'HH:mm:ssXXX")),
        F.to_utc_timestamp(F.try_to_timestamp(raw, F.lit("yyyy-MM-dd HH:mm:ss")), _PACIFIC),
        F.when(raw.rlike(r"^-?[0-9]{1,12}$"), F.timestamp_seconds(raw.try_cast("long"))),
    )
    return F.date_format(ts, "yyyy-MM-dd'T'HH:mm:ss'Z'")


def _typed(raw: Column, field: StructField) -> Column:
    dtype: DataType = field.dataType
    if isinstance(dtype, StructType):
        children = [_typed(raw[f.name], f).alias(f.name) for f in dtype.fields]
        return F.when(raw.isNull(), F.lit(None)).otherwise(F.struct(*children))
    if isinstance(dtype, (IntegerType, BooleanType)):
        return raw.try_cast(dtype)
    if field.metadata.get("wootric_timestamp"):
        return iso_utc(raw)
    return raw


def shape(staged: DataFrame, stream: Stream, run_id: str) -> DataFrame:
    """Staged lines → one row per record in the table's schema (seed columns, then metadata)."""
    parsed = staged.select(
        F.from_json("record", raw_schema(seed_schema(stream))).alias("r"),
        F.col("record").alias("_raw"),
        F.col("fetched_at"),
    )
    columns = [_typed(F.col("r")[f.name], f).alias(f.name) for f in seed_schema(stream).fields]
    return parsed.select(
        *columns,
        F.timestamp_seconds(F.col("fetched_at")).alias("_extracted_at"),
        F.lit(run_id).alias("_run_id"),
        F.col("_raw"),
    )


def latest_per_id(rows: DataFrame) -> DataFrame:
    """One row per id: the newest `updated_at`, then the latest fetch, then the raw text, so ties resolve the
    same way whatever order pages arrived in. The shuffle partitions by id range, not hash, so each file
    written holds a narrow id range and a later MERGE can skip the files outside its ids."""
    order = Window.partitionBy(PRIMARY_KEY).orderBy(
        F.col("updated_at").desc_nulls_last(), F.col("_extracted_at").desc(), F.col("_raw").desc()
    )
    return (
        rows.repartitionByRange(PRIMARY_KEY)
        .withColumn("_rank", F.row_number().over(order))
        .where("_rank = 1")
        .drop("_rank")
    )


_RAW_PARSED = "_raw_parsed"


def summarize(rows: DataFrame, stream: Stream, keyed: Column, *, types: bool) -> DataFrame:
    """One row about shaped rows, in one pass: over the rows where `keyed` holds, `records`, distinct `ids`
    (fewer than records when a record was fetched twice), the `first_id` and `last_id` (in the id column's
    order), the `newest` cursor value and, with `types`, the `type_mismatches` map; and how many rows are
    `unkeyed`.

    Without `types` Spark parses only the id and the cursor of each record (it prunes the JSON schema to the
    columns used), so the pass costs a fraction of shaping; `observe_type_mismatches` then counts them during
    the write instead.
    """
    parsed = rows.withColumn(_RAW_PARSED, F.from_json("_raw", raw_schema(seed_schema(stream)))) if types else rows
    counts = [
        F.count_if(keyed).alias("records"),
        F.count_distinct(F.when(keyed, F.col(PRIMARY_KEY))).alias("ids"),
        F.min(F.when(keyed, F.col(PRIMARY_KEY))).alias("first_id"),
        F.max(F.when(keyed, F.col(PRIMARY_KEY))).alias("last_id"),
        F.max(F.when(keyed, F.col(stream.cursor_field))).alias("newest"),
        F.count_if(~keyed).alias("unkeyed"),
    ]
    if types:
        counts.append(type_mismatches(stream, F.col(_RAW_PARSED)).alias("type_mismatches"))
    return parsed.agg(*counts)


def observe_type_mismatches(rows: DataFrame, stream: Stream, observation: Observation) -> DataFrame:
    """`rows`, counting their type mismatches into `observation` (`.get` is then the `type_mismatches` map)
    while an action (the write) runs them: no pass of its own. `_raw` is parsed once, beside the typed columns
    (the same parse as `shape`'s, so Spark shares it), instead of once per counted column inside an aggregate,
    which is ten times slower."""
    parsed = rows.withColumn(_RAW_PARSED, F.from_json("_raw", raw_schema(seed_schema(stream))))
    counts = [count.alias(path) for path, count in _mismatch_counts(stream, F.col(_RAW_PARSED))]
    return parsed.observe(observation, *counts).drop(_RAW_PARSED)


def type_mismatches(stream: Stream, raw: Column) -> Column:
    """An aggregate over shaped rows and `raw`, their `_raw` parsed with the raw schema: per seed column
    (nested ones as `a.b`), how many records carried a value that landed as null because it did not fit the
    column's type, i.e. the source changed a field's type.

    Leaves compare the raw text with the typed value; an object field that arrived as something else (so it
    and its children are null) is counted once, at the object.
    """
    return F.create_map(*[part for path, count in _mismatch_counts(stream, raw) for part in (F.lit(path), count)])


def _mismatch_counts(stream: Stream, raw: Column) -> list[tuple[str, Column]]:
    counts: list[tuple[str, Column]] = []

    def walk(fields: list[StructField], raw_parent: Column, typed_parent: Column | None, prefix: str) -> None:
        for f in fields:
            path = f"{prefix}{f.name}"
            raw_value = raw_parent[f.name]
            typed = F.col(f.name) if typed_parent is None else typed_parent[f.name]
            if isinstance(f.dataType, StructType):
                present = F.get_json_object("_raw", f"$.{path}").isNotNull()
                counts.append((path, F.count_if(raw_value.isNull() & typed.isNull() & present)))
                walk(f.dataType.fields, raw_value, typed, f"{path}.")
            else:
                counts.append((path, F.count_if(raw_value.isNotNull() & typed.isNull())))

    walk(seed_schema(stream).fields, raw, None, "")
    return counts
