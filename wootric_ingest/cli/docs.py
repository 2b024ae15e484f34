"""The streams described for people (Markdown) and for tools (a JSON catalog), from streams.py alone.

Both read the same fields the tables are created from, with the descriptions that become column comments,
so the reference, `discover` and the tables' column comments cannot drift apart; no Spark needed.
"""

from __future__ import annotations

from wootric_ingest.config import PiiConfig
from wootric_ingest.privacy import Policy
from wootric_ingest.streams import METADATA_FIELDS, STREAMS, Field, Kind, Stream, leaves

_JSON_TYPES = {Kind.STRING: "string", Kind.INTEGER: "integer", Kind.BOOLEAN: "boolean", Kind.TIMESTAMP: "string"}


def _describe(field: Field, label: str | None = None) -> str:
    comment = field.description
    if field.iso_time:
        comment += " (ISO-8601 UTC)"
    if label:
        comment += f" ({label})"
    return comment.replace("|", "\\|")


def _field_table(fields: tuple[Field, ...], labels: dict[str, str] | None = None) -> list[str]:
    lines = ["| Field | Type | Description |", "|---|---|---|"]
    lines += [f"| `{name}` | {f.kind.value} | {_describe(f, (labels or {}).get(name))} |" for name, f in leaves(fields)]
    return lines


def _labels(policy: Policy | None, fields: tuple[Field, ...]) -> dict[str, str]:
    """The policy's label per leaf column path, as the column comments carry it (a struct's covers its leaves)."""
    if not policy:
        return {}
    marks = {path: action.value for path, action in policy.marks(fields)}
    if fields is METADATA_FIELDS:
        marks["_raw"] = ", ".join(policy.actions)
    covering = {
        name: [label for path, label in marks.items() if f"{name}.".startswith(f"{path}.")]
        for name, _ in leaves(fields)
    }
    return {name: found[0] for name, found in covering.items() if found}


def _policy_lines(pii: PiiConfig) -> list[str]:
    """The policy in words; never the salt."""
    if not pii:
        return ["### Personal data policy", "", "None: every field lands as the API sends it (`source.pii`).", ""]
    return [
        "### Personal data policy",
        "",
        f"Hashed (HMAC-SHA256 with the salt, emails trimmed and lower-cased first): "
        f"{', '.join(f'`{e}`' for e in pii.hash) or 'none'}. Dropped (null): "
        f"{', '.join(f'`{e}`' for e in pii.drop) or 'none'}. A name matches at any depth, inside `_raw` too; a "
        f"dotted path matches that nesting only. Fingerprint in the commits: `{pii.fingerprint}`.",
        "",
    ]


def _endpoint(stream: Stream) -> str:
    return f"GET /v1/{stream.path}"


def _reading(stream: Stream) -> str:
    """How a run reads the stream, in words."""
    if stream.read_whole:
        return (
            f"cursor `{stream.cursor_field}`; the API sends it whole in one response (no paging, no filter), so it is "
            "read whole every run: `FULL_TABLE` only. It holds no personal data: the personal data policy and "
            "`forget` leave it alone"
        )
    lookback = (
        f"; incremental runs re-read the last {stream.default_lookback_days} days (`lookback_days`) to catch edits"
        if stream.default_lookback_days
        else ""
    )
    return f"cursor `{stream.cursor_field}` (walked with the API's `{stream.cursor_filter}` filter){lookback}"


def _sync_types(stream: Stream) -> list[str]:
    return ["FULL_TABLE"] if stream.read_whole else ["INCREMENTAL", "FULL_TABLE"]


def markdown(pii: PiiConfig | None = None) -> str:
    """The streams-and-fields reference (README's "Tables written" section and the agents' skills file); with a
    source's `pii`, its personal data policy too, and each field it hashes or drops marked."""
    policy = pii.policy if pii is not None else None
    lines = [
        "## Tables written",
        "",
        "Each configured stream lands in one Delta table: at `{catalog.root}/{layer}/{folder}/{table_prefix}{table}` "
        "(without the folder segment when none is set), or, with `catalog.tables: managed`, the managed table "
        "`{catalog.name}.{layer}.{table_prefix}{table}`. Every table has the change data feed on (unless "
        "`catalog.change_data_feed` is false) and a table comment. Columns are the fields below, in this order, with "
        "these "
        "descriptions as column comments, then the metadata columns. Nested fields are struct columns "
        "(`properties.name` is the `name` field of the `properties` struct). Timestamps are strings in ISO-8601 UTC "
        "(`2018-01-03T07:03:41Z`), so string order is time order. Rows are unique by the stream's primary key.",
        "",
    ]
    for stream in STREAMS.values():
        labels = _labels(policy if stream.personal_data else None, stream.fields)
        lines += [
            f"### `{stream.name}`",
            "",
            f"{stream.description} Source: `{_endpoint(stream)}`; primary key `{stream.key}`; {_reading(stream)}.",
            "",
            *_field_table(stream.fields, labels),
            "",
        ]
    lines += [
        "### Metadata columns (every table)",
        "",
        *_field_table(METADATA_FIELDS, _labels(policy, METADATA_FIELDS)),
        "",
        *(_policy_lines(pii) if pii is not None else []),
    ]
    return "\n".join(lines)


def _json_schema(field: Field, labels: dict[str, str], path: str = "") -> dict:
    path = f"{path}{field.name}"
    if field.kind is Kind.STRUCT:
        properties = {f.name: _json_schema(f, labels, f"{path}.") for f in field.fields}
        node: dict = {"type": ["null", "object"], "properties": properties}
    else:
        node = {"type": ["null", _JSON_TYPES[field.kind]]}
        if field.kind is Kind.TIMESTAMP or field.iso_time:
            node["format"] = "date-time"
    node["description"] = field.description
    if path in labels:
        node["description"] += f" ({labels[path]})"
        node["x-pii"] = labels[path]
    return node


def catalog(pii: PiiConfig | None = None) -> dict:
    """`discover`: every stream with its key, cursor and JSON Schema, in the Singer/Airbyte catalog habit; with a
    source's `pii`, its policy (never the salt) and an `x-pii` mark on each field it hashes or drops."""
    policy = pii.policy if pii is not None else None
    marks = {
        name: {path: action.value for path, action in policy.marks(stream.table_fields)}
        | {"_raw": ", ".join(policy.actions)}
        if policy and stream.personal_data
        else {}
        for name, stream in STREAMS.items()
    }
    policy_entry = (
        {"pii": {"hash": list(pii.hash), "drop": list(pii.drop), "fingerprint": pii.fingerprint}}
        if pii is not None
        else {}
    )
    return {
        **policy_entry,
        "streams": [
            {
                "stream": stream.name,
                "description": stream.description,
                "endpoint": _endpoint(stream),
                "key_properties": [stream.key],
                "replication_key": stream.cursor_field,
                "cursor_filter": stream.cursor_filter,
                "supported_sync_types": _sync_types(stream),
                "default_lookback_days": stream.default_lookback_days,
                "schema": {
                    "type": "object",
                    "properties": {f.name: _json_schema(f, marks[stream.name]) for f in stream.table_fields},
                },
            }
            for stream in STREAMS.values()
        ],
    }


BEGIN = "<!-- BEGIN wootric-ingest docs: generated by `wootric-ingest docs`; tests/test_docs.py keeps it equal -->"
END = "<!-- END wootric-ingest docs -->"


def splice(readme: str) -> str:
    """The README with its generated part replaced by the current `markdown()`."""
    start, end = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    return f"{readme[:start]}\n{markdown()}\n{readme[end:]}"


if __name__ == "__main__":
    # `python -m wootric_ingest.cli.docs README.md`: regenerate the README's tables section after changing streams.py.
    import sys
    from pathlib import Path

    target = Path(sys.argv[1])
    target.write_text(splice(target.read_text(encoding="utf-8")), encoding="utf-8")
