"""The streams' fields as Spark schemas: the Delta tables' columns, types and column comments.

`wootric_timestamp` in a field's metadata marks a String normalised to ISO-8601 UTC (shaping reads it).
"""

from __future__ import annotations

from collections.abc import Mapping
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
def table_schema(stream: Stream) -> StructType:
    """A stream table's schema: the seed columns, then the metadata columns."""
    return spark_schema(stream.table_fields)


def marked(schema: StructType, labels: Mapping[str, str], prefix: str = "") -> StructType:
    """`schema` with the personal data policy's label appended to the comment of each column it names (dotted
    paths, e.g. `{"end_user.email": "hashed"}` makes that comment end in ` (hashed)`)."""
    fields = []
    for f in schema.fields:
        path = f"{prefix}{f.name}"
        dtype = marked(f.dataType, labels, f"{path}.") if isinstance(f.dataType, StructType) else f.dataType
        metadata = dict(f.metadata)
        if path in labels:
            metadata["comment"] = f"{metadata.get('comment', '')} ({labels[path]})".strip()
        fields.append(StructField(f.name, dtype, f.nullable, metadata))
    return StructType(fields)
