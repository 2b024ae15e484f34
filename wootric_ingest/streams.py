"""The Wootric streams: one definition per stream, read by the client, the sink, the CLI and the tests.

Each stream's table schema is the product page's field table, column for column. Descriptions live in
the schema's field metadata so `wootric-ingest docs` and the Delta column comments come from the same
place as the table itself.
"""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql.types import (
    BooleanType,
    DataType,
    IntegerType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

PRIMARY_KEY = "id"


def column(name: str, dtype: DataType, description: str, *, timestamp: bool = False) -> StructField:
    """A nullable column with its comment (Delta shows it); `timestamp` marks strings we normalise to ISO-8601 UTC."""
    metadata = {"comment": description}
    if timestamp:
        metadata["wootric_timestamp"] = True
    return StructField(name, dtype, nullable=True, metadata=metadata)


def _struct(name: str, description: str, *fields: StructField) -> StructField:
    return StructField(name, StructType(list(fields)), nullable=True, metadata={"comment": description})


S, I, B = StringType(), IntegerType(), BooleanType()

END_USERS_SCHEMA = StructType([
    column("id", S, "Unique system identifier for the user"),
    column("email", S, "User's email address"),
    column("external_id", S, "External identifier for the user"),
    column("phone_number", S, "User's phone number"),
    column("created_at", S, "When the user was created", timestamp=True),
    column("updated_at", S, "When the user was last updated", timestamp=True),
    column("last_surveyed", S, "When the user was last surveyed", timestamp=True),
    column("external_created_at", S, "External timestamp when the user was created", timestamp=True),
    column("last_seen_at", S, "When the user was last seen", timestamp=True),
    _struct(
        "properties", "Custom end-user properties (all keys are kept in _raw)",
        column("name", S, "User's name"),
        column("role", S, "User's role"),
        column("domain", S, "User's domain"),
        column("language", S, "User's language preference"),
    ),
    _struct(
        "last_response", "The user's most recent response",
        column("id", S, "ID of the last response"),
        column("score", I, "Score of the last response"),
        column("text", S, "Text of the last response"),
        _struct("survey", "Survey of the last response", column("channel", S, "Survey channel used")),
    ),
    _struct(
        "settings", "The user's survey settings",
        column("email_nps", B, "Whether email NPS surveys are enabled"),
        column("mobile_nps", B, "Whether mobile NPS surveys are enabled"),
        column("web_nps", B, "Whether web NPS surveys are enabled"),
        column("force_mobile_survey", B, "Whether to force mobile surveys"),
        column("force_web_survey", B, "Whether to force web surveys"),
        column("surveys_disabled_by_end_user", B, "Whether surveys are disabled by the user"),
    ),
])

RESPONSES_SCHEMA = StructType([
    column("id", S, "Unique system identifier for the response"),
    column("end_user_id", S, "ID of the user who provided the response"),
    column("survey_id", S, "ID of the survey this response belongs to"),
    column("score", I, "Numeric score provided in the response"),
    column("text", S, "Text feedback provided with the response"),
    column("completed", B, "Whether the response was completed"),
    column("excluded_from_calculations", B, "Whether this response is excluded from calculations"),
    column("ip_address", S, "IP address where the response originated"),
    column("origin_url", S, "URL where the response originated"),
    column("created_at", S, "When the response was created", timestamp=True),
    column("updated_at", S, "When the response was last updated", timestamp=True),
    column("tags", S, "Tags associated with the response (JSON array)"),
    column("notes", S, "Notes associated with the response (JSON array)"),
    _struct(
        "end_user", "The responding user",
        column("email", S, "Email address of the responding user"),
        column("external_id", S, "External identifier of the responding user"),
        column("external_created_at", S, "External creation timestamp of the user", timestamp=True),
        column("created_at", S, "Creation timestamp of the user", timestamp=True),
        column("properties", S, "Additional user properties (stored as JSON string)"),
    ),
])

DECLINES_SCHEMA = StructType([
    column("id", S, "Unique system identifier for the decline"),
    column("end_user_id", S, "ID of the user who declined the survey"),
    column("survey_id", S, "ID of the survey that was declined"),
    column("ip_address", S, "IP address where the decline originated"),
    column("origin_url", S, "URL where the decline originated"),
    column("created_at", S, "When the decline was created", timestamp=True),
    column("updated_at", S, "When the decline was last updated", timestamp=True),
    _struct(
        "end_user", "The declining user",
        column("properties", S, "Additional user properties (stored as JSON string)"),
    ),
])

METADATA_COLUMNS = StructType([
    column("_extracted_at", TimestampType(), "When this run fetched the record (UTC)"),
    column("_run_id", StringType(), "The run that last wrote the row (see _wootric_ingest/runs)"),
    column("_raw", StringType(), "The record exactly as the API sent it (JSON): custom properties and new fields"),
])


@dataclass(frozen=True)
class Stream:
    """What the client, the sink and the docs need to know about one Wootric stream.

    `cursor_filter` is the API filter that walks `cursor_field`; responses and declines have only a
    `created` filter, so edits to them are caught by re-reading a look-back window. `cursor_moves`: a
    change to a record moves its cursor (an end user's `updated_at` jumps to "now"), so the record can
    move while it is walked.
    """

    name: str
    description: str
    path: str
    cursor_field: str
    cursor_filter: str
    cursor_moves: bool
    sort_key: str
    schema: StructType
    default_lookback_days: int

    @property
    def table_schema(self) -> StructType:
        """The Delta table's schema: the seed columns, then our `_`-prefixed metadata columns."""
        return StructType(self.schema.fields + METADATA_COLUMNS.fields)


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
            schema=END_USERS_SCHEMA,
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
            schema=RESPONSES_SCHEMA,
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
            schema=DECLINES_SCHEMA,
            default_lookback_days=30,
        ),
    )
}
