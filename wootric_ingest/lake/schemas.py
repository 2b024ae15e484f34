"""The streams' fields as Spark schemas: the Delta tables' columns, types and column comments.

`wootric_timestamp` in a field's metadata marks a String normalised to ISO-8601 UTC (shaping reads it).
"""

from __future__ import annotations

from functools import cache

from pyspark.sql.types import (
    BooleanType,
    DataType,
    IntegerType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from wootric_ingest.streams import Field, Kind, Stream

_LEAF_TYPES: dict[Kind, DataType] = {
    Kind.STRING: StringType(),
    Kind.INTEGER: IntegerType(),
    Kind.BOOLEAN: BooleanType(),
    Kind.TIMESTAMP: TimestampType(),
}


def column(name: str, dtype: DataType, description: str) -> StructField:
    """A nullable column with its comment (Delta shows it)."""
    return StructField(name, dtype, nullable=True, metadata={"comment": description})


def spark_field(f: Field) -> StructField:
    if f.kind is Kind.STRUCT:
        return StructField(f.name, spark_schema(f.fields), nullable=True, metadata={"comment": f.description})
    field = column(f.name, _LEAF_TYPES[f.kind], f.description)
    if f.iso_time:
        field.metadata["wootric_timestamp"] = True
    return field


def spark_schema(fields: tuple[Field, ...]) -> StructType:
    return StructType([spark_field(f) for f in fields])


@cache
def seed_schema(stream: Stream) -> StructType:
    """The product page's columns of a stream."""
    return spark_schema(stream.fields)


@cache
def table_schema(stream: Stream) -> StructType:
    """A stream table's schema: the seed columns, then the metadata columns."""
    return spark_schema(stream.table_fields)
