"""The streams described for people (Markdown) and for tools (a JSON catalog), from streams.py alone.

Both read the same StructTypes the tables are created with, and the field comments in their metadata,
so the reference, `discover` and the tables' column comments cannot drift apart.
"""
from __future__ import annotations

from typing import Iterator

from pyspark.sql.types import BooleanType, DataType, IntegerType, StringType, StructField, StructType, TimestampType

from wootric_ingest.streams import METADATA_COLUMNS, PRIMARY_KEY, STREAMS, Stream

_TYPE_NAMES = {StringType(): "String", IntegerType(): "Integer", BooleanType(): "Boolean",
               TimestampType(): "Timestamp"}
_JSON_TYPES = {StringType(): "string", IntegerType(): "integer", BooleanType(): "boolean",
               TimestampType(): "string"}


def _type_name(dtype: DataType) -> str:
    return _TYPE_NAMES.get(dtype, dtype.simpleString())


def _leaves(schema: StructType, prefix: str = "") -> Iterator[tuple[str, StructField]]:
    """Every non-struct column as (dotted.name, field), in table order: the product page's flat view."""
    for field in schema.fields:
        if isinstance(field.dataType, StructType):
            yield from _leaves(field.dataType, f"{prefix}{field.name}.")
        else:
            yield f"{prefix}{field.name}", field


def _describe(field: StructField) -> str:
    comment = field.metadata.get("comment", "")
    if field.metadata.get("wootric_timestamp"):
        comment += " (ISO-8601 UTC)"
    return comment.replace("|", "\\|")


def _field_table(schema: StructType) -> list[str]:
    lines = ["| Field | Type | Description |", "|---|---|---|"]
    lines += [f"| `{name}` | {_type_name(f.dataType)} | {_describe(f)} |" for name, f in _leaves(schema)]
    return lines


def _endpoint(stream: Stream) -> str:
    return f"GET /v1/{stream.path}"


def markdown() -> str:
    """The streams-and-fields reference (README's "Tables written" section and the agents' skills file)."""
    lines = [
        "## Tables written",
        "",
        "Each configured stream lands in one Delta table at `{catalog.root}/{layer}/{folder}/{table_prefix}{table}` "
        "(without the folder segment when none is set). Columns are the fields below, in this order, with these "
        "descriptions as column comments, then the metadata columns. Nested fields are struct columns "
        "(`properties.name` is the `name` field of the `properties` struct). Timestamps are strings in ISO-8601 UTC "
        "(`2018-01-03T07:03:41Z`), so string order is time order. Rows are unique by `id`.",
        "",
    ]
    for stream in STREAMS.values():
        lookback = (f"; incremental runs re-read the last {stream.default_lookback_days} days "
                    f"(`lookback_days`) to catch edits" if stream.default_lookback_days else "")
        lines += [
            f"### `{stream.name}`",
            "",
            f"{stream.description} Source: `{_endpoint(stream)}`; primary key `{PRIMARY_KEY}`; cursor "
            f"`{stream.cursor_field}` (walked with the API's `{stream.cursor_filter}` filter){lookback}.",
            "",
            *_field_table(stream.schema),
            "",
        ]
    lines += [
        "### Metadata columns (every table)",
        "",
        *_field_table(METADATA_COLUMNS),
        "",
    ]
    return "\n".join(lines)


def _json_schema(dtype: DataType, field: StructField | None = None) -> dict:
    if isinstance(dtype, StructType):
        node: dict = {"type": ["null", "object"],
                      "properties": {f.name: _json_schema(f.dataType, f) for f in dtype.fields}}
    else:
        node = {"type": ["null", _JSON_TYPES.get(dtype, "string")]}
        if isinstance(dtype, TimestampType) or (field is not None and field.metadata.get("wootric_timestamp")):
            node["format"] = "date-time"
    if field is not None and field.metadata.get("comment"):
        node["description"] = field.metadata["comment"]
    return node


def catalog() -> dict:
    """`discover`: every stream with its key, cursor and JSON Schema, in the Singer/Airbyte catalog habit."""
    return {"streams": [
        {
            "stream": stream.name,
            "description": stream.description,
            "endpoint": _endpoint(stream),
            "key_properties": [PRIMARY_KEY],
            "replication_key": stream.cursor_field,
            "cursor_filter": stream.cursor_filter,
            "supported_sync_types": ["INCREMENTAL", "FULL_TABLE"],
            "default_lookback_days": stream.default_lookback_days,
            "schema": {"type": "object", **{k: v for k, v in _json_schema(stream.table_schema).items()
                                            if k != "type"}},
        }
        for stream in STREAMS.values()
    ]}
