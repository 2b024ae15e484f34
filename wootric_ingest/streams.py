"""The Wootric streams: one definition per stream, read by the client, the lake, the CLI and the tests.

Each stream's fields are the product page's field table, column for column, with their descriptions, so
`wootric-ingest docs`, `discover` and the Delta column comments come from one place. Plain Python (no
pyspark): the API client, `check`, `docs` and `discover` import it without Spark; `lake.schemas` turns the
fields into Spark types.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass


class Kind(str, enum.Enum):
    """A column's type: the product page's String, Integer and Boolean, and our metadata timestamps."""

    STRING = "String"
    INTEGER = "Integer"
    BOOLEAN = "Boolean"
    TIMESTAMP = "Timestamp"
    STRUCT = "Struct"


@dataclass(frozen=True)
class Field:
    """One column: a leaf of a `kind`, or a struct of `fields`. `iso_time` marks a String we normalise to
    ISO-8601 UTC (`2018-01-03T07:03:41Z`), so string order is time order."""

    name: str
    kind: Kind
    description: str
    iso_time: bool = False
    fields: tuple[Field, ...] = ()


def leaves(fields: tuple[Field, ...], prefix: str = "") -> Iterator[tuple[str, Field]]:
    """Every non-struct column as (dotted.name, field), in table order: the product page's flat view."""
    for f in fields:
        if f.kind is Kind.STRUCT:
            yield from leaves(f.fields, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f


def _s(name: str, description: str, *, time: bool = False) -> Field:
    return Field(name, Kind.STRING, description, iso_time=time)


def _struct(name: str, description: str, *fields: Field) -> Field:
    return Field(name, Kind.STRUCT, description, fields=fields)


END_USER_FIELDS = (
    _s("id", "Unique system identifier for the user"),
    _s("email", "User's email address"),
    _s("external_id", "External identifier for the user"),
    _s("phone_number", "User's phone number"),
    _s("created_at", "When the user was created", time=True),
    _s("updated_at", "When the user was last updated", time=True),
    _s("last_surveyed", "When the user was last surveyed", time=True),
    _s("external_created_at", "External timestamp when the user was created", time=True),
    _s("last_seen_at", "When the user was last seen", time=True),
    _struct(
        "properties",
        "Custom end-user properties (all keys are kept in _raw)",
        _s("name", "User's name"),
        _s("role", "User's role"),
        _s("domain", "User's domain"),
        _s("language", "User's language preference"),
    ),
    _struct(
        "last_response",
        "The user's most recent response",
        _s("id", "ID of the last response"),
        Field("score", Kind.INTEGER, "Score of the last response"),
        _s("text", "Text of the last response"),
        _struct("survey", "Survey of the last response", _s("channel", "Survey channel used")),
    ),
    _struct(
        "settings",
        "The user's survey settings",
        Field("email_nps", Kind.BOOLEAN, "Whether email NPS surveys are enabled"),
        Field("mobile_nps", Kind.BOOLEAN, "Whether mobile NPS surveys are enabled"),
        Field("web_nps", Kind.BOOLEAN, "Whether web NPS surveys are enabled"),
        Field("force_mobile_survey", Kind.BOOLEAN, "Whether to force mobile surveys"),
        Field("force_web_survey", Kind.BOOLEAN, "Whether to force web surveys"),
        Field("surveys_disabled_by_end_user", Kind.BOOLEAN, "Whether surveys are disabled by the user"),
    ),
)

RESPONSE_FIELDS = (
    _s("id", "Unique system identifier for the response"),
    _s("end_user_id", "ID of the user who provided the response"),
    _s("survey_id", "ID of the survey this response belongs to"),
    Field("score", Kind.INTEGER, "Numeric score provided in the response"),
    _s("text", "Text feedback provided with the response"),
    Field("completed", Kind.BOOLEAN, "Whether the response was completed"),
    Field("excluded_from_calculations", Kind.BOOLEAN, "Whether this response is excluded from calculations"),
    _s("ip_address", "IP address where the response originated"),
    _s("origin_url", "URL where the response originated"),
    _s("created_at", "When the response was created", time=True),
    _s("updated_at", "When the response was last updated", time=True),
    _s("tags", "Tags associated with the response (JSON array)"),
    _s("notes", "Notes associated with the response (JSON array)"),
    _struct(
        "end_user",
        "The responding user",
        _s("email", "Email address of the responding user"),
        _s("external_id", "External identifier of the responding user"),
        _s("external_created_at", "External creation timestamp of the user", time=True),
        _s("created_at", "Creation timestamp of the user", time=True),
        _s("properties", "Additional user properties (stored as JSON string)"),
    ),
)

DECLINE_FIELDS = (
    _s("id", "Unique system identifier for the decline"),
    _s("end_user_id", "ID of the user who declined the survey"),
    _s("survey_id", "ID of the survey that was declined"),
    _s("ip_address", "IP address where the decline originated"),
    _s("origin_url", "URL where the decline originated"),
    _s("created_at", "When the decline was created", time=True),
    _s("updated_at", "When the decline was last updated", time=True),
    _struct(
        "end_user",
        "The declining user",
        _s("properties", "Additional user properties (stored as JSON string)"),
    ),
)

SEGMENT_FIELDS = (
    _s("name", "Name of the segment: a custom end-user property the account declared (a key of end_user.properties)"),
    _s("data_type", "The segment's data type: string, date or integer"),
    _s("created_at", "When the segment was created", time=True),
)

METADATA_FIELDS = (
    Field("_extracted_at", Kind.TIMESTAMP, "When this run fetched the record (UTC)"),
    _s("_run_id", "The run that last wrote the row (see _wootric_ingest/runs)"),
    _s("_raw", "The record exactly as the API sent it (JSON): custom properties and new fields"),
    Field(
        "_deleted_at",
        Kind.TIMESTAMP,
        "When a full sync found the record gone from the source (soft deletes; null while the record exists)",
    ),
)


@dataclass(frozen=True)
class Stream:
    """What the client, the lake and the docs need to know about one Wootric stream.

    `key` is the field that identifies a record (the table holds one row per key). `cursor_filter` is the API
    filter that walks `cursor_field`; responses and declines have only a `created` filter, so edits to them are
    caught by re-reading a look-back window. A stream without one (segments) is a short list the API sends
    whole in one response: it is read whole, so only FULL_TABLE syncs it. `cursor_moves`: a change to a record
    moves its cursor (an end user's `updated_at` jumps to "now"), so the record can move while it is walked.
    `version_field` orders two versions of one record (None: the one fetched last wins). `personal_data`: its
    records are about end users, so the personal data policy and `forget` apply to it (segments describe the
    account, not people).
    """

    name: str
    description: str
    path: str
    cursor_field: str
    cursor_filter: str | None
    cursor_moves: bool
    sort_key: str | None
    fields: tuple[Field, ...]
    default_lookback_days: int
    key: str = "id"
    version_field: str | None = "updated_at"
    personal_data: bool = True

    @property
    def read_whole(self) -> bool:
        """Whether the API sends the stream whole in one response (no filter to walk, no pages)."""
        return self.cursor_filter is None

    @property
    def table_fields(self) -> tuple[Field, ...]:
        """The Delta table's columns: the seed columns, then our `_`-prefixed metadata columns."""
        return self.fields + METADATA_FIELDS


STREAMS: dict[str, Stream] = {
    s.name: s
    for s in (
        Stream(
            name="end_users",
            description="End users and their survey preferences.",
            path="end_users",
            cursor_field="updated_at",
            cursor_filter="updated",
            cursor_moves=True,
            sort_key="updated_at",
            fields=END_USER_FIELDS,
            default_lookback_days=0,
        ),
        Stream(
            name="responses",
            description="Survey responses and feedback.",
            path="responses",
            cursor_field="created_at",
            cursor_filter="created",
            cursor_moves=False,
            sort_key="created_at",
            fields=RESPONSE_FIELDS,
            default_lookback_days=30,
        ),
        Stream(
            name="declines",
            description="Surveys that end users declined to answer.",
            path="declines",
            cursor_field="created_at",
            cursor_filter="created",
            cursor_moves=False,
            sort_key="created_at",
            fields=DECLINE_FIELDS,
            default_lookback_days=30,
        ),
        Stream(
            name="segments",
            description="The account's segments: the custom end-user properties it declared, with their data type.",
            path="segments",
            cursor_field="created_at",
            cursor_filter=None,
            cursor_moves=False,
            sort_key=None,
            fields=SEGMENT_FIELDS,
            default_lookback_days=0,
            key="name",
            version_field=None,
            personal_data=False,
        ),
    )
}
