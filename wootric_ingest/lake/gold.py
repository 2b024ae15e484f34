"""The NPS gold layer: `nps_daily`, `nps_by_segment` and `nps_by_tag`, computed from the responses (and declines)
tables with the definition of `wootric_ingest.nps`, kept current incrementally.

Each gold commit records the source versions it reflects. A refresh reads the change data feed of the source
commits made since then (inserted, updated, deleted and soft-deleted rows, before and after images), takes the
local dates and months they touched, and replaces only those dates (`nps_daily`) and months (`nps_by_segment`,
`nps_by_tag`), in one commit per gold table. Everything is recomputed instead when a gold table has no commit of
ours yet, when a full sync of a source happened since, or when the change feed cannot say (switched off, or
vacuumed past). Sources are read at exactly the versions recorded, so a refresh is reproducible.

With the `segments` stream configured (and landed), `nps_by_segment` keeps to the account's segments: only the
keys of `end_user.properties` the segments table names, with their `data_type`. Its commits record a fingerprint
of the segments used (name and data type of each); a refresh that finds other segments (one added, removed or
retyped) recomputes the whole table, which is small. Without the stream, every key is a segment and `data_type`
is null. The segments stream is FULL_TABLE, so it commits every run: only a change of its content counts. Its
version is among the source versions a gold commit records, so a refresh collects the segments only when it
moved since the last `nps_by_segment` commit, and otherwise takes the fingerprint that commit recorded.

Local dates are cut in `nps.timezone`: the refresh's own Spark session has it as its session time zone, so
`to_date` of a response's `created_at` (ISO-8601 UTC) is its date in the account's zone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import date, timedelta

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, DecimalType, IntegerType, LongType, StringType, StructType

from wootric_ingest import nps
from wootric_ingest.lake.lakehouse import Lakehouse
from wootric_ingest.lake.schemas import column
from wootric_ingest.lake.tables import DELETED_AT, Table, encode, one, with_retries

log = logging.getLogger(__name__)

METADATA_SOURCES = "sources"  # in a gold commit's metadata: {stream: version} it reflects
METADATA_SEGMENTS = "segments"  # in an nps_by_segment commit's metadata: the fingerprint of the segments it used
SOURCES = ("responses", "declines")  # the dated streams whose commits a refresh follows date by date
SEGMENTS = "segments"
FOLLOWS = (*SOURCES, SEGMENTS)  # a run of any of these streams refreshes the gold layer
FULL, INCREMENTAL = "FULL", "INCREMENTAL"

COUNTS = [
    column("responses", LongType(), "Responses that count: live, not excluded from calculations, score 0-10"),
    column("promoters", LongType(), "Counted responses scoring 9-10"),
    column("passives", LongType(), "Counted responses scoring 7-8"),
    column("detractors", LongType(), "Counted responses scoring 0-6"),
    column("nps", IntegerType(), "100 x (promoters - detractors) / responses, rounded half away from zero"),
    column(
        "nps_exact",
        DecimalType(nps.EXACT_PRECISION, nps.EXACT_SCALE),
        f"The NPS to {nps.EXACT_SCALE} decimal places, rounded half away from zero",
    ),
    column("excluded", LongType(), "Live responses marked excluded_from_calculations (not in the counts)"),
]


DAILY_SCHEMA = StructType(
    [
        column("date", DateType(), "The local date (in nps.timezone) of the responses' created_at"),
        *COUNTS,
        column("declines", LongType(), "Live declines of that local date"),
    ]
)
BY_SEGMENT_SCHEMA = StructType(
    [
        column("month", DateType(), "First day of the local month (in nps.timezone)"),
        column("segment", StringType(), "A key of the response's end_user.properties (its snapshot at response time)"),
        column("value", StringType(), "That key's value, as text"),
        *COUNTS,
        column(
            "data_type",
            StringType(),
            "The segment's data type (string, date or integer) from the segments stream; null without that stream",
        ),
    ]
)
BY_TAG_SCHEMA = StructType(
    [
        column("month", DateType(), "First day of the local month (in nps.timezone)"),
        column("tag", StringType(), "A tag of the responses"),
        *COUNTS,
    ]
)


@dataclass(frozen=True)
class GoldTable:
    """One gold table: its name, schema, what it holds, and the column that scopes an incremental refresh."""

    name: str
    schema: StructType
    holds: str
    scope: str  # `date` or `month`
    sources: tuple[str, ...]  # the dated streams it is computed from
    account_segments: bool = False  # keeps to the account's segments when the segments stream is configured


GOLD = (
    GoldTable(
        "nps_daily", DAILY_SCHEMA, "NPS per local date, one row per date with responses or declines", "date", SOURCES
    ),
    GoldTable(
        "nps_by_segment",
        BY_SEGMENT_SCHEMA,
        "NPS per local month, segment and value",
        "month",
        ("responses",),
        account_segments=True,
    ),
    GoldTable("nps_by_tag", BY_TAG_SCHEMA, "NPS per local month and tag", "month", ("responses",)),
)


def gold_table(lakehouse: Lakehouse, name: str) -> Table:
    spec = next(g for g in GOLD if g.name == name)
    return lakehouse.gold(spec.name, spec.schema, spec.holds)


@dataclass(frozen=True)
class GoldRefresh:
    """What one refresh did: per gold table, FULL or INCREMENTAL (or None: nothing changed), the rows it wrote,
    and the responses it left out of the counts it recomputed, per reason."""

    mode: str | None
    reason: str
    dates: int
    months: int
    rows_written: int
    table_version: int | None
    table_rows: int
    left_out: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def scored(responses: DataFrame) -> DataFrame:
    """Each live response with its local `date` and `month`, whether it counts, its category, whether it is
    excluded, and why it is left out of the counts (null when it counts or is excluded)."""
    score, excluded = F.col("score"), F.coalesce(F.col("excluded_from_calculations"), F.lit(False))
    counted = F.expr(nps.counted_sql("score", "excluded_from_calculations", DELETED_AT))
    raw_score = F.get_json_object("_raw", "$.score")
    when = F.to_date(F.try_to_timestamp(F.col("created_at")))
    left_out = (
        F.when(when.isNull(), F.lit(nps.NO_CREATED_AT))
        .when(excluded, F.lit(None))
        .when(score.isNull() & raw_score.isNull(), F.lit(nps.NO_SCORE))
        .when(score.isNull(), F.lit(nps.SCORE_NOT_A_NUMBER))
        .when(~score.between(nps.MIN_SCORE, nps.MAX_SCORE), F.lit(nps.SCORE_OUT_OF_RANGE))
    )
    return (
        responses.where(F.col(DELETED_AT).isNull())
        .withColumn("date", when)
        .withColumn("month", F.trunc("date", "month"))
        .withColumn("_left_out", left_out)
        .withColumn("_counted", counted & when.isNotNull())
        .withColumn("_category", F.expr(nps.category_sql("score")))
        .withColumn("_excluded", excluded & when.isNotNull())
    )


def _aggregate(frame: DataFrame, keys: list[str], extra: list[Column] | None = None) -> DataFrame:
    counted = F.col("_counted")
    sums = [
        F.count_if(counted).alias("responses"),
        F.count_if(counted & (F.col("_category") == "promoter")).alias("promoters"),
        F.count_if(counted & (F.col("_category") == "passive")).alias("passives"),
        F.count_if(counted & (F.col("_category") == "detractor")).alias("detractors"),
        F.count_if(F.col("_excluded")).alias("excluded"),
    ]
    return (
        frame.groupBy(*keys)
        .agg(*sums, *(extra or []))
        .withColumn("nps", F.expr(nps.nps_sql("promoters", "detractors", "responses")))
        .withColumn("nps_exact", F.expr(nps.nps_exact_sql("promoters", "detractors", "responses")))
    )


def daily(responses: DataFrame, declines: DataFrame | None) -> DataFrame:
    """`nps_daily` of these responses and declines (already scoped)."""
    rows = scored(responses).where("_counted OR _excluded").select("date", "_counted", "_category", "_excluded")
    rows = rows.withColumn("_decline", F.lit(False))
    if declines is not None:
        declined = (
            declines.where(F.col(DELETED_AT).isNull())
            .select(F.to_date(F.try_to_timestamp(F.col("created_at"))).alias("date"))
            .where("date IS NOT NULL")
            .select(
                "date",
                F.lit(False).alias("_counted"),
                F.lit(None).cast("string").alias("_category"),
                F.lit(False).alias("_excluded"),
                F.lit(True).alias("_decline"),
            )
        )
        rows = rows.unionByName(declined)
    return _aggregate(rows, ["date"], [F.count_if("_decline").alias("declines")]).select(*DAILY_SCHEMA.fieldNames())


def by_segment(responses: DataFrame, segments: DataFrame | None = None) -> DataFrame:
    """`nps_by_segment` of these responses: each key of `end_user.properties`, its value as text; with `segments`
    (the account's segments: `name`, `data_type`), only the keys it names (exactly), with their data type. A
    response whose properties are not a JSON object is in no segment."""
    properties = F.from_json(F.col("end_user.properties"), "map<string,string>")
    rows = (
        scored(responses)
        .where("_counted OR _excluded")
        .select("month", F.explode(properties).alias("segment", "value"), "_counted", "_category", "_excluded")
        .where("value IS NOT NULL")
    )
    if segments is None:
        rows = rows.withColumn("data_type", F.lit(None).cast(StringType()))
    else:
        rows = rows.join(F.broadcast(segments.select(F.col("name").alias("segment"), "data_type")), "segment")
    return _aggregate(rows, ["month", "segment", "value", "data_type"]).select(*BY_SEGMENT_SCHEMA.fieldNames())


def by_tag(responses: DataFrame) -> DataFrame:
    """`nps_by_tag` of these responses: each tag of a response's `tags` (a JSON array), once per response."""
    tags = F.array_distinct(F.from_json(F.col("tags"), "array<string>"))
    rows = (
        scored(responses)
        .where("_counted OR _excluded")
        .select("month", F.explode(tags).alias("tag"), "_counted", "_category", "_excluded")
        .where("tag IS NOT NULL")
    )
    return _aggregate(rows, ["month", "tag"]).select(*BY_TAG_SCHEMA.fieldNames())


def left_out(responses: DataFrame) -> dict[str, int]:
    """Live responses these counts left out, per reason (`nps`'s reasons)."""
    frame = scored(responses)
    properties = F.col("end_user.properties")
    unparseable = properties.isNotNull() & F.from_json(properties, "map<string,string>").isNull()
    found = one(
        frame.agg(
            *[F.count_if(F.col("_left_out") == reason).alias(reason) for reason in _SCORE_REASONS],
            F.count_if(F.col("_counted") & unparseable).alias(nps.UNPARSEABLE_PROPERTIES),
        )
    ).asDict()
    return {reason: int(n) for reason, n in found.items() if n}


_SCORE_REASONS = (nps.NO_CREATED_AT, nps.NO_SCORE, nps.SCORE_NOT_A_NUMBER, nps.SCORE_OUT_OF_RANGE)


def account_segments(segments: DataFrame) -> DataFrame:
    """The account's live segments (`name`, `data_type`) in `segments`, the segments table at some version."""
    return segments.where(F.col(DELETED_AT).isNull()).select("name", "data_type")


def fingerprint(segments: DataFrame | None) -> str | None:
    """What an `nps_by_segment` commit records of the segments it kept to: SHA-256 of their sorted names and data
    types (None: no segments stream, every key is a segment)."""
    if segments is None:
        return None
    pairs = sorted((r["name"], r["data_type"]) for r in segments.collect())
    return hashlib.sha256(json.dumps(pairs).encode("utf-8")).hexdigest()


class _Sources:
    """The responses, declines and segments tables at the versions a refresh reads (each version read once),
    through the refresh's session."""

    def __init__(self, lakehouse: Lakehouse, session: SparkSession):
        self.lakehouse, self.session = lakehouse, session
        config = lakehouse.config
        self.tables = {s: lakehouse.table(config.stream(s)) for s in FOLLOWS if config.has_stream(s)}
        self.versions = {s: t.version() for s, t in self.tables.items() if t.exists()}
        self.segments = (  # at one version: the fingerprint and the join agree
            account_segments(self.tables[SEGMENTS].read_version(self.versions[SEGMENTS], session))
            if SEGMENTS in self.versions
            else None  # no segments stream, or not landed yet
        )
        self._full: dict[str, tuple[int, ...]] = {}
        self._dates: dict[tuple[str, int, int], frozenset[date]] = {}

    def segments_fingerprint(self, since: dict[str, int], recorded: str | None) -> str | None:
        """The fingerprint of the segments read: `recorded`, the one the last commit recorded, when that commit
        reflects this very version of the segments table (`since`, the versions it recorded); else computed, the
        segments collected. The stream is FULL_TABLE and commits every run, but a run need not sync it."""
        if self.segments is None:
            return None
        if recorded is not None and since.get(SEGMENTS) == self.versions[SEGMENTS]:
            return recorded
        return fingerprint(self.segments)

    def read(self, stream: str) -> DataFrame | None:
        if stream not in self.tables:
            return None
        table = self.tables[stream]
        if stream not in self.versions:
            return self.session.createDataFrame([], table.schema)
        return table.read_version(self.versions[stream], self.session)

    def current(self, streams: tuple[str, ...]) -> dict[str, int]:
        """The versions read of those of `streams` that have a table."""
        return {s: v for s, v in self.versions.items() if s in streams}

    def why_full(self, since: dict[str, int], streams: tuple[str, ...]) -> str | None:
        """Why the changes to `streams` since `since` cannot be read from the change feed (so all is recomputed),
        or None."""
        if not self.lakehouse.config.catalog.change_data_feed:
            return "the change data feed is off (catalog.change_data_feed)"
        for stream, version in self.current(streams).items():
            before = since.get(stream)
            if before is None:
                return f"{stream} is new to the gold layer"
            if before > version:
                return f"{stream} is at version {version}, older than the {before} last refreshed from"
            if any(version > before for version in self._full_syncs(stream)):
                return f"a full sync of {stream}"
        return None

    def touched(self, since: dict[str, int], streams: tuple[str, ...]) -> set[date]:
        """The local dates of every row the commits to `streams` after `since` inserted, changed or removed."""
        dates: set[date] = set()
        for stream, version in self.current(streams).items():
            if since[stream] < version:
                dates |= self._touched(stream, since[stream] + 1, version)
        return dates

    def _full_syncs(self, stream: str) -> tuple[int, ...]:
        """The versions of `stream`'s full-sync commits (read once per refresh: the gold tables share them)."""
        if stream not in self._full:
            commits = self.tables[stream].commits()
            self._full[stream] = tuple(c.version for c in commits if c.metadata.get("sync") == FULL)
        return self._full[stream]

    def _touched(self, stream: str, first: int, last: int) -> frozenset[date]:
        """The local dates in the change feed of versions `first`..`last` of `stream` (read once per refresh)."""
        key = (stream, first, last)
        if key not in self._dates:
            feed = self.tables[stream].change_feed(first, last, self.session)
            day = F.to_date(F.try_to_timestamp(F.col("created_at")))
            self._dates[key] = frozenset(r[0] for r in feed.select(day).where(day.isNotNull()).distinct().collect())
        return self._dates[key]


def refresh(lakehouse: Lakehouse, run_id: str) -> GoldRefresh:
    """Bring every gold table up to the sources' current versions, one commit each (none when nothing changed);
    the result tells what `nps_daily`'s refresh did (the run history's row) and the rows all three wrote."""
    started = time.monotonic()
    config = lakehouse.config
    assert config.nps is not None
    session = lakehouse.spark.newSession()
    session.conf.set("spark.sql.session.timeZone", config.nps.timezone)
    sources = _Sources(lakehouse, session)
    results = [_refresh_one(lakehouse, sources, spec, run_id) for spec in GOLD]
    daily_result = results[0]
    table_rows = daily_result.table_rows
    if table_rows is None:
        table_rows = gold_table(lakehouse, GOLD[0].name).count()
    return GoldRefresh(
        daily_result.mode,
        daily_result.reason,
        daily_result.dates,
        max(r.months for r in results),
        sum(r.rows_written for r in results),
        daily_result.table_version,
        table_rows,
        daily_result.left_out,
        time.monotonic() - started,
    )


@dataclass(frozen=True)
class _Refreshed:
    mode: str | None
    reason: str
    table_version: int
    table_rows: int | None = None  # when the commit tells (a recompute's overwrite wrote them all); else counted
    dates: int = 0
    months: int = 0
    rows_written: int = 0
    left_out: dict[str, int] = field(default_factory=dict)


def _refresh_one(lakehouse: Lakehouse, sources: _Sources, spec: GoldTable, run_id: str) -> _Refreshed:
    table = gold_table(lakehouse, spec.name)
    table.ensure()
    version, commits = table.history(limit=20)
    since = {k: int(v) for k, v in (commits[0].metadata.get(METADATA_SOURCES, {}) if commits else {}).items()}
    segments_before = commits[0].metadata.get(METADATA_SEGMENTS) if commits else None
    segments_now = sources.segments_fingerprint(since, segments_before) if spec.account_segments else None
    segments_changed = bool(commits) and segments_before != segments_now
    if (
        commits
        and not segments_changed
        and {s: v for s, v in since.items() if s in spec.sources} == sources.current(spec.sources)
    ):
        return _Refreshed(None, "no source commit since the last refresh", version)
    if not commits:
        why_full: str | None = "no refresh yet"
    elif segments_changed:
        why_full = _segments_change(segments_before, segments_now)
    else:
        why_full = sources.why_full(since, spec.sources)
    responses, declines = sources.read("responses"), sources.read("declines")
    assert responses is not None  # validation requires the responses stream
    dates: set[date] = set()
    if why_full is None:
        try:
            dates = sources.touched(since, spec.sources)
        except Exception as e:  # a feed vacuumed past, or switched off for a while: Delta's error, whatever its class
            first_line = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            why_full = f"the change feed since {since} cannot be read ({first_line})"
    if why_full is None:
        scope = sorted(dates) if spec.scope == "date" else sorted({d.replace(day=1) for d in dates})
        reason = f"{len(dates)} local date(s) touched by the commits after versions {since}"
        responses = _within(responses, spec.scope, scope)
        declines = _within(declines, spec.scope, scope) if declines is not None else None
        condition = F.col(spec.scope).isin(scope) if scope else F.lit(False)
    else:
        reason = f"recomputed from scratch: {why_full}"
        condition = F.lit(True)
    if spec.name == "nps_daily":
        rows = daily(responses, declines)
    elif spec.account_segments:
        rows = by_segment(responses, sources.segments)
    else:
        rows = by_tag(responses)
    mode = INCREMENTAL if why_full is None else FULL
    metadata = {
        "run_id": run_id,
        "gold": spec.name,
        "refresh": mode,
        "reason": reason,
        METADATA_SOURCES: sources.versions,
        **({METADATA_SEGMENTS: segments_now} if spec.account_segments else {}),
    }
    writer = rows.writeTo(table.sql).option("userMetadata", encode(metadata))
    with_retries(lambda: writer.overwrite(condition), f"refreshing {table}")
    version, latest = table.history(limit=1)
    ours = bool(latest) and latest[0].metadata.get("run_id") == run_id
    written = int(latest[0].metrics.get("numOutputRows", 0)) if ours else 0  # Delta skips an empty write of nothing
    log.info("%s: %s refresh (%s), %d rows written", spec.name, mode, reason, written)
    return _Refreshed(
        mode,
        reason,
        version,
        written if ours and mode == FULL else None,  # an incremental one kept the other dates' rows
        len(dates),
        len({d.replace(day=1) for d in dates}),
        written,
        left_out(responses) if spec.name == "nps_daily" else {},
    )


def _segments_change(before: str | None, now: str | None) -> str:
    """Why `nps_by_segment` is recomputed when the segments fingerprint it recorded (`before`) is not the one now
    (`now`; None: no segments stream, or not landed yet)."""
    if now is None:
        return "the segments stream is no longer configured"
    if before is None:
        return "the segments stream is new to the gold layer"
    return "the account's segments changed"


def _within(frame: DataFrame, scope: str, values: list[date]) -> DataFrame:
    """The rows whose local `date` (or `month`) is in `values`. A bound on `created_at` (text that sorts as
    time) first, a day wider than any zone's offset, lets Delta skip the files of other times."""
    if not values:
        return frame.where(F.lit(False))
    last = values[-1] if scope == "date" else (values[-1].replace(day=28) + timedelta(days=4)).replace(day=1)
    low, high = (values[0] - timedelta(days=1)).isoformat(), (last + timedelta(days=2)).isoformat()
    day = F.to_date(F.try_to_timestamp(F.col("created_at")))
    key = day if scope == "date" else F.trunc(day, "month")
    return frame.where(F.col("created_at").between(low, high)).where(key.isin(values))
