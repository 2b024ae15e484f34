"""`forget`: erase people on request from every stream table, the rejected table and waiting staging.

A person is named by email or end-user id. Emails are looked up as the tables hold them (the keyed hash where the
policy hashes the field, trimmed and lower-cased otherwise), and the end-user ids found for them in `end_users`
join the given ids, so responses and declines go by `end_user_id` as well as by `end_user.email`. Each table loses
the person's rows in one MERGE that deletes the ids matched against the table itself, so the Delta log records
`t.id <=> s.id`, never an email or an id as a literal. The commit carries the table's bookmark, last full sync and
policy forward, so the next run plans as before; the run history gets one row per table and names people by
their hash only. A staging folder of an interrupted run that holds one of them is removed (the next run fetches
those ranges again). Older table versions keep the rows until the retention ages them out: the result says when.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from wootric_ingest.config import StreamConfig
from wootric_ingest.lake.gold import GOLD, gold_table, refresh
from wootric_ingest.lake.gold import SOURCES as GOLD_SOURCES
from wootric_ingest.lake.history import RunRow
from wootric_ingest.lake.lakehouse import Lakehouse
from wootric_ingest.lake.rejects import STAGED_REJECTS_SCHEMA
from wootric_ingest.lake.schemas import table_schema
from wootric_ingest.lake.state import last_full_sync
from wootric_ingest.lake.tables import StreamTable, Table
from wootric_ingest.privacy import Action, Path, Policy, normalised
from wootric_ingest.streams import STREAMS

log = logging.getLogger(__name__)

FORGET = "FORGET"
REJECTED = "rejected"

#: Where each stream's rows name a person: the email column and the end-user id column (paths). Streams without
#: personal data (segments) have neither and are left alone.
_EMAIL: dict[str, Path] = {"end_users": ("email",), "responses": ("end_user", "email")}
_USER_ID: dict[str, Path] = {
    "end_users": (STREAMS["end_users"].key,),
    "responses": ("end_user_id",),
    "declines": ("end_user_id",),
}
#: Where a record as sent (`_raw`, a rejected record) names one.
_RECORD_EMAILS: tuple[Path, ...] = (("email",), ("end_user", "email"))
_RECORD_USER_ID: Path = ("end_user_id",)


@dataclass(frozen=True)
class People:
    """Who to forget: emails and end-user ids as given."""

    emails: tuple[str, ...] = ()
    end_user_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Erased:
    """What one table lost: rows removed, the version that removed them (None: none to remove), until when the
    older versions still hold them, and the `created_at` dates (UTC) of the rows removed."""

    stream: str
    table: str
    rows: int
    version: int | None
    ages_out: datetime
    dates: tuple[str, ...] = ()


@dataclass(frozen=True)
class Erasure:
    """One `forget`: per table what it lost, the staging folders removed, the people found nowhere (by their
    hash) and the tables vacuumed."""

    run_id: str
    tables: list[Erased]
    staging_removed: list[str] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)
    vacuumed: list[str] = field(default_factory=list)


def pseudonym(policy: Policy, value: str, salted: bool) -> str:
    """How the history and the output name a person: the policy's keyed hash when there is a salt, else SHA-256
    of the normalised value (guessable from a list of candidates: configure a salt)."""
    if salted:
        return policy.digest(value)
    return hashlib.sha256(normalised(value).encode("utf-8", "surrogatepass")).hexdigest()


class _Lookup:
    """The people as the tables hold them, as conditions on columns."""

    def __init__(self, policy: Policy, people: People):
        self.policy = policy
        self.emails = sorted({normalised(e) for e in people.emails})
        self.ids = sorted({i.strip() for i in people.end_user_ids})

    def email(self, column: Column, path: Path) -> Column:
        action = self.policy.action(path)
        if action is Action.DROPPED or not self.emails:
            return F.lit(False)
        if action is Action.HASHED:
            return column.isin([self.policy.digest(e) for e in self.emails])
        return F.lower(F.trim(column)).isin(self.emails)

    def user_id(self, column: Column, path: Path, ids: Iterable[str]) -> Column:
        stored = sorted({s for s in (self.policy.stored(path, i) for i in ids) if s is not None})
        return column.isin(stored) if stored else F.lit(False)

    def record(self, ids: Iterable[str]) -> Column:
        """A record as sent (JSON in `record`) that names one of the people."""
        ids = list(ids)
        condition = self.user_id(_in_record(_RECORD_USER_ID), _RECORD_USER_ID, ids)
        for path in _RECORD_EMAILS:
            condition = condition | self.email(_in_record(path), path)
        return condition

    def found(self, emails: set[str], ids: set[str]) -> tuple[list[str], list[str]]:
        """The emails and ids, as given, of the people whose stored forms are not among those found."""
        seen = emails | {normalised(e) for e in emails}
        lost_emails = [e for e in self.emails if e not in seen and self.policy.digest(e) not in seen]
        lost_ids = [i for i in self.ids if i not in ids and self.policy.stored(_RECORD_USER_ID, i) not in ids]
        return lost_emails, lost_ids


def _column(path: Path) -> Column:
    return F.col(".".join(path))


def _in_record(path: Path) -> Column:
    return F.get_json_object("record", "$." + ".".join(path))


def forget(lakehouse: Lakehouse, people: People, *, vacuum: bool = False) -> Erasure:
    """Erase `people` from every configured stream table, the rejected table and waiting staging, each table in
    one commit recorded in the run history. With `vacuum`, then vacuum the tables (files older versions stopped
    using longer ago than the retention; the versions this erasure replaced age out at `Erased.ages_out`)."""
    now = datetime.now(timezone.utc)
    config = lakehouse.config
    run_id = f"{now:%Y%m%dT%H%M%SZ}-forget-{uuid.uuid4().hex[:8]}"
    lookup = _Lookup(lakehouse.policy, people)
    salted = bool(config.pii.salt)
    names = sorted({pseudonym(lakehouse.policy, v, salted) for v in (*lookup.emails, *lookup.ids)})
    ages_out = now + timedelta(days=config.delta_log_retention_days)
    streams = [s for s in config.streams if s.name in _USER_ID]
    gold = tuple(spec.name for spec in GOLD) if config.nps is not None else ()
    with lakehouse.locks(config.streams, run_id, gold=gold):
        tables = {s.name: lakehouse.table(s) for s in streams if lakehouse.table(s).exists()}
        ids, found_emails, found_ids = set(lookup.ids), set[str](), set[str]()
        if "end_users" in tables:
            path = _EMAIL["end_users"]
            matched = tables["end_users"].read().where(lookup.email(_column(path), path))
            key = STREAMS["end_users"].key
            for row in matched.select(key, _column(path).alias("email")).collect():
                ids.add(row[key])
                found_emails.add(row["email"])
        erased = []
        for name, table in tables.items():
            id_path, email_path = _USER_ID[name], _EMAIL.get(name)
            condition = lookup.user_id(_column(id_path), id_path, ids)
            if email_path is not None:
                condition = condition | lookup.email(_column(email_path), email_path)
            gone = table.read().where(condition)
            email = _column(email_path) if email_path else F.lit(None).cast("string")
            summary = _summary(gone, _column(id_path), email, F.substring("created_at", 1, 10))
            found_ids.update(summary.users)
            found_emails.update(summary.emails)
            erased.append(_erase(table, name, gone, summary, (table.stream.key,), run_id, names, ages_out))
        if lakehouse.rejected.table.exists():
            gone = lakehouse.rejected.table.read().where(lookup.record(ids))
            email = F.coalesce(*[_in_record(p) for p in _RECORD_EMAILS])  # one per stream: never both
            summary = _summary(gone, _in_record(_RECORD_USER_ID), email, F.lit(None))
            found_ids.update(summary.users)
            found_emails.update(summary.emails)
            keys = ("stream", "record_sha256")
            erased.append(_erase(lakehouse.rejected.table, REJECTED, gone, summary, keys, run_id, names, ages_out))
        lakehouse.runs.append([e.history for e in erased])
        staging = _remove_staging(lakehouse, streams, lookup, ids)
        derived = recompute_derived(
            lakehouse,
            {e.erased.stream: e.erased.dates for e in erased if e.erased.rows and e.erased.stream != REJECTED},
            run_id,
        )
    vacuumed = []
    if vacuum:
        rejected_table = [lakehouse.rejected.table] if lakehouse.rejected.table.exists() else []
        for cleaned in [*tables.values(), *rejected_table, *derived]:
            cleaned.vacuum(config.delta_log_retention_days)
            vacuumed.append(str(cleaned))
    lost_emails, lost_ids = lookup.found(found_emails, found_ids)
    not_found = [pseudonym(lakehouse.policy, v, salted) for v in (*lost_emails, *lost_ids)]
    return Erasure(run_id, [e.erased for e in erased], staging, not_found, vacuumed)


@dataclass(frozen=True)
class _Summary:
    """What the rows an erasure removes from one table hold: how many, whose (end-user ids and emails as the
    table holds them) and of which dates."""

    rows: int
    users: set[str]
    emails: set[str]
    dates: tuple[str, ...]


def _summary(gone: DataFrame, user: Column, email: Column, day: Column) -> _Summary:
    """One pass over the rows to remove."""
    groups = gone.groupBy(user.alias("user"), email.alias("email"), day.alias("day")).count().collect()
    return _Summary(
        sum(g["count"] for g in groups),
        {g["user"] for g in groups if g["user"] is not None},
        {g["email"] for g in groups if g["email"] is not None},
        tuple(sorted({g["day"] for g in groups if g["day"]})),
    )


@dataclass(frozen=True)
class _TableErased:
    erased: Erased
    history: RunRow


def _erase(
    table: Table,
    stream: str,
    gone: DataFrame,
    summary: _Summary,
    keys: tuple[str, ...],
    run_id: str,
    people: list[str],
    ages_out: datetime,
) -> _TableErased:
    """Delete `gone` (rows of `table`, matched on `keys`) in one commit; what it did and its run history row."""
    started, clock = datetime.now(timezone.utc), time.monotonic()
    metadata = _carried(table, run_id, people)
    if summary.rows:
        table.delete_matching(gone, keys, metadata, run_id)
        log.info("%s: erased %d rows of %d people", table, summary.rows, len(people))
    version = table.version()
    row = RunRow(
        run_id=run_id,
        stream=stream,
        table_path=str(table),
        sync_mode=FORGET,
        sync_reason=f"erasure request for {len(people)} people: {', '.join(people)}",
        status="ok",
        error=None,
        started_at=started,
        finished_at=datetime.now(timezone.utc),
        duration_seconds=time.monotonic() - clock,
        window_since=None,
        window_until=None,
        bookmark=metadata.get("bookmark"),
        records_fetched=0,
        records_rejected=0,
        api_requests=0,
        rows_inserted=0,
        rows_updated=0,
        rows_deleted=summary.rows,
        table_version=version,
        table_rows=None,
    )
    erased = Erased(stream, str(table), summary.rows, version if summary.rows else None, ages_out, summary.dates)
    return _TableErased(erased, row)


def _carried(table: Table, run_id: str, people: list[str]) -> dict:
    """The erasure's commit metadata: for a stream table, what the next run plans from (bookmark, last full sync,
    policy) carried forward from the newest commit, so the erasure changes no plan."""
    metadata: dict = {"run_id": run_id, "reason": f"forget: {len(people)} people", "people": people}
    if isinstance(table, StreamTable):
        commits = table.commits()
        newest = commits[0].metadata if commits else {}
        last_full = last_full_sync(commits)
        metadata |= {
            "stream": table.stream.name,
            "bookmark": newest.get("bookmark"),
            "last_full_sync": last_full.isoformat() if last_full else None,
            "pii": newest.get("pii"),
        }
    return metadata


def _remove_staging(lakehouse: Lakehouse, streams: list[StreamConfig], lookup: _Lookup, ids: set[str]) -> list[str]:
    """Remove the waiting staging folders whose files (listed parts or not) hold one of the people."""
    removed = []
    for stream_config in streams:
        name = stream_config.name
        for run in sorted(lakehouse.staged_runs(name)):
            staging = lakehouse.staging(run, name)
            files = lakehouse.files.names(staging.folder)
            parts = [f"{staging.folder}/{f}" for f in files if f.startswith("part-") and f.endswith(".parquet")]
            rejected = [f"{staging.folder}/{f}" for f in files if f.startswith("rejected-") and f.endswith(".parquet")]
            reader = lakehouse.spark.read
            holds = (
                bool(rejected)
                and not reader.schema(STAGED_REJECTS_SCHEMA).parquet(*rejected).where(lookup.record(ids)).isEmpty()
            )
            if parts and not holds:
                id_path, email_path = _USER_ID[name], _EMAIL.get(name)
                condition = lookup.user_id(_column(id_path), id_path, ids)
                if email_path is not None:
                    condition = condition | lookup.email(_column(email_path), email_path)
                holds = not reader.schema(table_schema(STREAMS[name])).parquet(*parts).where(condition).isEmpty()
            if holds:
                staging.cleanup()
                removed.append(staging.folder)
    return removed


def recompute_derived(lakehouse: Lakehouse, touched: dict[str, tuple[str, ...]], run_id: str) -> list[Table]:
    """The one place an erasure reaches the tables derived from the stream tables: `touched` names, per stream,
    the `created_at` dates whose rows it removed. The NPS gold tables, when configured, are refreshed from the
    change feed, which holds the erasure's deletes, so exactly the dates and months it touched are recomputed;
    they are returned, to be vacuumed with the stream tables."""
    if not touched:
        return []
    if lakehouse.config.nps is None or not set(touched) & set(GOLD_SOURCES):
        for stream, dates in touched.items():
            log.info("%s: rows of %d dates were erased (%s..%s)", stream, len(dates), dates[0], dates[-1])
        return []
    refresh(lakehouse, run_id)
    return [gold_table(lakehouse, spec.name) for spec in GOLD]
