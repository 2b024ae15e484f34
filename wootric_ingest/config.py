"""The source configuration: YAML in, a typed and validated `SourceConfig` out.

Validation happens once, here, before Spark starts. Every problem in a file is reported together,
each naming its key and what is allowed, so a user fixes the file in one go. Secrets come from
`${ENV_VAR}` or, on Databricks, `{{secrets/<scope>/<key>}}`, and are registered for redaction the
moment they are read.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from wootric_ingest import redaction
from wootric_ingest.privacy import Policy, matches
from wootric_ingest.schedule import Cron, CronError
from wootric_ingest.streams import STREAMS, Field, Kind, Stream

MAX_DESCRIPTION = 140
MIN_SALT_CHARS = 16
DEFAULT_BASE_URL = "https://api.wootric.com"

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SECRET = re.compile(r"\{\{\s*secrets/([^/\s}]+)/([^/\s}]+)\s*\}\}")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_UNSAFE_IN_PATH = re.compile(r"[\'\"`;\x00-\x1f]")
GOLD_TABLES = ("nps_daily", "nps_by_segment", "nps_by_tag")
CRON_HINT = "a five-field cron expression (minute hour day-of-month month day-of-week), e.g. '0 6 * * *'"

SecretReader = Callable[[str, str], str]
E = TypeVar("E", bound=enum.Enum)


class ConfigError(ValueError):
    """A config file with problems; `problems` lists each one as `key: what is wrong`."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        listing = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source} has {len(problems)} problem(s):\n{listing}")


class SyncType(str, enum.Enum):
    INCREMENTAL = "INCREMENTAL"
    FULL_TABLE = "FULL_TABLE"


@dataclass(frozen=True)
class Schedule:
    cron: str
    timezone: str

    @property
    def parsed(self) -> Cron:
        return Cron.parse(self.cron, self.timezone)


@dataclass(frozen=True)
class Auth:
    """Either the password grant (the product's form) or client credentials; secrets never in repr."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    account_token: str | None = None

    @property
    def grant(self) -> str:
        return "password" if self.username else "client_credentials"

    @property
    def principal(self) -> str:
        """Who is signing in, for messages: the username or the client id."""
        return self.username or self.client_id or ""


@dataclass(frozen=True)
class ApiConfig:
    base_url: str
    auth: Auth
    max_concurrency: int = 4
    requests_per_minute: int = 100
    timeout_seconds: float = 60.0
    retry_give_up_seconds: int = 900


class TableMode(str, enum.Enum):
    """Where the tables live: at paths under `root` (optionally registered by name), or as managed tables
    addressed only by name (Unity Catalog), with `root` keeping the job's files."""

    PATH = "path"
    MANAGED = "managed"


class FullSyncWrite(str, enum.Enum):
    """How a full sync writes: one overwrite commit, or one MERGE that changes only the rows that changed."""

    REWRITE = "rewrite"
    MERGE = "merge"


class Deletes(str, enum.Enum):
    """What a full sync does with a row whose record the source no longer has: remove it, or mark it."""

    HARD = "hard"
    SOFT = "soft"


DEFAULT_JOB_SCHEMA = "wootric_ingest"


@dataclass(frozen=True)
class CatalogConfig:
    root: str
    table_prefix: str = ""
    tables: TableMode = TableMode.PATH
    metastore: bool = False
    name: str | None = None
    job_schema: str = DEFAULT_JOB_SCHEMA
    change_data_feed: bool = True
    full_sync_write: FullSyncWrite = FullSyncWrite.REWRITE

    @property
    def registered(self) -> bool:
        """Whether tables have metastore names: managed tables always do; path tables with `metastore`."""
        return self.tables is TableMode.MANAGED or self.metastore


@dataclass(frozen=True)
class StreamConfig:
    """Where one stream lands (`Layout` turns layer, folder and table into paths and names) and how it syncs."""

    stream: Stream
    layer: str
    table: str
    sync_type: SyncType
    folder: str = ""
    lookback_days: int = 0
    deletes: Deletes = Deletes.HARD

    @property
    def name(self) -> str:
        return self.stream.name


@dataclass(frozen=True)
class PiiConfig:
    """The personal data policy (see privacy.py): fields to hash, fields to drop, and the hash's key, a secret
    never in repr, logs or table metadata."""

    hash: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    salt: str | None = field(default=None, repr=False)

    def __bool__(self) -> bool:
        return bool(self.hash or self.drop)

    @property
    def policy(self) -> Policy:
        return Policy(self.hash, self.drop, self.salt)

    @property
    def fingerprint(self) -> str | None:
        """What the tables' commits record of the policy, None without one: a SHA-256 of the sorted lists and of
        a keyed digest of the salt (so a new salt, which changes every hash, counts as a change; the salt itself
        cannot be read back from it)."""
        if not self:
            return None
        salt_check = hmac.new((self.salt or "").encode("utf-8"), b"wootric-ingest pii", hashlib.sha256).hexdigest()
        text = json.dumps({"hash": sorted(self.hash), "drop": sorted(self.drop), "salt": salt_check}, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class NpsConfig:
    """Where the NPS gold tables land (`{layer}/{folder}/{prefix}nps_daily`, ...) and the account's time zone,
    in which a response's local date, week and month are cut (Wootric's own NPS figures are)."""

    layer: str
    folder: str = ""
    timezone: str = "UTC"


@dataclass(frozen=True)
class SourceConfig:
    description: str
    api: ApiConfig
    start_date: datetime
    trigger: Schedule
    delta_log_retention_days: int
    catalog: CatalogConfig
    streams: tuple[StreamConfig, ...]
    additional_full_sync: Schedule | None = None
    pii: PiiConfig = PiiConfig()
    nps: NpsConfig | None = None

    def stream(self, name: str) -> StreamConfig:
        return next(s for s in self.streams if s.name == name)

    def has_stream(self, name: str) -> bool:
        return any(s.name == name for s in self.streams)


_KEYS: dict[str, set[str]] = {
    "": {"source", "catalog", "streams", "nps"},
    "source": {
        "description",
        "api",
        "start_date",
        "trigger",
        "delta_log_retention_days",
        "additional_full_sync",
        "pii",
    },
    "source.pii": {"hash", "drop", "salt"},
    "source.api": {
        "base_url",
        "auth",
        "max_concurrency",
        "requests_per_minute",
        "timeout_seconds",
        "retry_give_up_seconds",
    },
    "source.api.auth": {"username", "password", "client_id", "client_secret", "account_token"},
    "schedule": {"cron", "timezone"},
    "catalog": {
        "root",
        "table_prefix",
        "tables",
        "metastore",
        "name",
        "job_schema",
        "change_data_feed",
        "full_sync_write",
    },
    "stream": {"layer", "folder", "table", "sync_type", "lookback_days", "deletes"},
    "nps": {"layer", "folder", "timezone"},
}
_SECRET_KEYS = {"password", "client_secret"}


class _Reader:
    """Walks the parsed YAML, collecting every problem instead of stopping at the first."""

    def __init__(self, secret_reader: SecretReader | None, environ: Mapping[str, str]):
        self.problems: list[str] = []
        self.secret_reader = secret_reader
        self.environ = environ

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{key}: {message}")

    def mapping(self, value: Any, key: str, allowed: set[str], *, required: bool = True) -> dict:
        if value is None:
            if required:
                self.problem(key or "(top level)", "is required")
            return {}
        if not isinstance(value, dict):
            self.problem(key or "(top level)", f"must be a mapping, got {type(value).__name__}")
            return {}
        for unknown in sorted(set(map(str, value)) - allowed):
            hint = _closest(unknown, allowed)
            self.problem(
                f"{key}.{unknown}" if key else unknown,
                f"unknown key{f' (did you mean {hint!r}?)' if hint else ''}; allowed: {', '.join(sorted(allowed))}",
            )
        return value

    def text(self, value: Any, key: str, *, required: bool = True, secret: bool = False) -> str | None:
        if value is None or value == "":
            if required:
                self.problem(key, "is required")
            return None
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            self.problem(key, f"must be a string, got {type(value).__name__}")
            return None
        return self.interpolate(str(value), key, secret)

    def interpolate(self, value: str, key: str, secret: bool) -> str | None:
        missing: list[str] = []
        unreadable: list[str] = []

        def env(match: re.Match) -> str:
            name = match.group(1)
            if name not in self.environ:
                missing.append(name)
                return ""
            return self.environ[name]

        def databricks(match: re.Match) -> str:
            scope, name = match.groups()
            if self.secret_reader is None:
                missing.append(f"{{{{secrets/{scope}/{name}}}}}")
                return ""
            try:
                value = self.secret_reader(scope, name)
            except Exception as e:  # dbutils raises its own types; the user needs the scope, key and reason
                reason = redaction.redact(str(e)).splitlines()[0] if str(e) else type(e).__name__
                unreadable.append(f"cannot read the Databricks secret {{{{secrets/{scope}/{name}}}}}: {reason}")
                return ""
            redaction.register(value)
            return value

        resolved = _SECRET.sub(databricks, _ENV.sub(env, value))
        for name in missing:
            if name.startswith("{{"):
                self.problem(
                    key, f"{name} is a Databricks secret and can only be read on Databricks; use ${{ENV_VAR}} elsewhere"
                )
            else:
                self.problem(key, f"environment variable {name} is not set (export it, or write the value)")
        for message in unreadable:
            self.problem(key, message)
        if missing or unreadable:
            return None
        if secret:
            redaction.register(resolved)
        return resolved

    def integer(self, value: Any, key: str, default: int, *, minimum: int) -> int:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            allowed = "a positive whole number" if minimum == 1 else f"a whole number >= {minimum}"
            self.problem(key, f"must be {allowed}, got {value!r}")
            return default
        return value

    def boolean(self, value: Any, key: str, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(key, f"must be true or false, got {value!r}")
            return default
        return value

    def choice(self, value: Any, key: str, options: type[E], default: E) -> E:
        """One of an enum's values, written as its value (case-insensitive)."""
        if value is None:
            return default
        text = str(value).lower() if isinstance(value, str) else None
        allowed = [o.value for o in options]
        if text not in allowed:
            self.problem(key, f"{value!r} is not allowed; use one of: {', '.join(allowed)}")
            return default
        return options(text)

    def schedule(self, value: Any, key: str, *, required: bool) -> Schedule | None:
        raw = self.mapping(value, key, _KEYS["schedule"], required=required)
        if not raw:
            return None
        cron = self.text(raw.get("cron"), f"{key}.cron")
        tz = self.text(raw.get("timezone"), f"{key}.timezone", required=False) or "UTC"
        tz_ok = cron_ok = True
        try:
            Cron.parse("* * * * *", tz)
        except CronError as e:
            self.problem(f"{key}.timezone", str(e))
            tz_ok = False
        if cron is not None:
            try:
                Cron.parse(cron, "UTC")
            except CronError as e:
                self.problem(f"{key}.cron", f"{e}; use {CRON_HINT}")
                cron_ok = False
        if cron is None or not (tz_ok and cron_ok):
            return None
        return Schedule(cron, tz)

    def identifier(self, value: Any, key: str, *, required: bool) -> str:
        """A name that becomes a path segment and a SQL identifier: no `..`, spaces, quotes or backticks."""
        text = self.text(value, key, required=required)
        if text is None:
            return ""
        if not _IDENTIFIER.fullmatch(text):  # `$` alone would let a trailing newline through
            self.problem(
                key,
                f"{text!r} is not a safe name: use letters, digits and underscores, "
                "not starting with a digit (e.g. raw, wootric, end_users)",
            )
            return ""
        return text


def _closest(word: str, options: set[str]) -> str | None:
    import difflib

    match = difflib.get_close_matches(word, sorted(options), n=1, cutoff=0.75)
    return match[0] if match else None


def parse_start_date(text: str) -> datetime:
    """ISO-8601 date or date-time; a naive value is taken as UTC."""
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        parsed = datetime.combine(date.fromisoformat(text), datetime.min.time())
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def _in_volume(root: str) -> bool:
    """A Unity Catalog volume path (`/Volumes/...`, also as `dbfs:/Volumes/...`)."""
    return re.match(r"^(dbfs:)?/Volumes/", root) is not None


def _resolve_root(root: str, base: Path) -> str:
    """A local root becomes absolute (relative to the working directory); URIs stay as written."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:/", root):
        return root.rstrip("/")
    return str((base / root).resolve())


def parse_config(
    data: Any,
    *,
    source: str = "config",
    secret_reader: SecretReader | None = None,
    environ: Mapping[str, str] | None = None,
    base: Path | None = None,
) -> SourceConfig:
    """Validate parsed YAML into a `SourceConfig`, or raise `ConfigError` listing every problem."""
    r = _Reader(secret_reader, os.environ if environ is None else environ)
    top = r.mapping(data, "", _KEYS[""])
    src = r.mapping(top.get("source"), "source", _KEYS["source"])
    api_raw = r.mapping(src.get("api"), "source.api", _KEYS["source.api"])
    auth_raw = r.mapping(api_raw.get("auth"), "source.api.auth", _KEYS["source.api.auth"])

    description = r.text(src.get("description"), "source.description")
    if description and len(description) > MAX_DESCRIPTION:
        r.problem("source.description", f"is {len(description)} characters; at most {MAX_DESCRIPTION} allowed")

    auth = _auth(r, auth_raw)
    base_url = r.text(api_raw.get("base_url"), "source.api.base_url", required=False) or DEFAULT_BASE_URL
    if not re.match(r"^https?://[^\s/]+", base_url):
        r.problem("source.api.base_url", f"{base_url!r} is not an http(s) URL, e.g. {DEFAULT_BASE_URL}")
    api = ApiConfig(
        base_url=base_url.rstrip("/"),
        auth=auth,
        max_concurrency=r.integer(api_raw.get("max_concurrency"), "source.api.max_concurrency", 4, minimum=1),
        requests_per_minute=r.integer(
            api_raw.get("requests_per_minute"), "source.api.requests_per_minute", 100, minimum=1
        ),
        timeout_seconds=float(r.integer(api_raw.get("timeout_seconds"), "source.api.timeout_seconds", 60, minimum=1)),
        retry_give_up_seconds=r.integer(
            api_raw.get("retry_give_up_seconds"), "source.api.retry_give_up_seconds", 900, minimum=1
        ),
    )

    start_date = datetime(1970, 1, 1, tzinfo=timezone.utc)
    raw_start = src.get("start_date")
    if isinstance(raw_start, date):  # YAML reads an unquoted 2024-01-01 as a date, not a string
        raw_start = raw_start.isoformat()
    start_text = r.text(raw_start, "source.start_date")
    if start_text:
        try:
            start_date = parse_start_date(start_text)
        except ValueError:
            r.problem("source.start_date", f"{start_text!r} is not an ISO-8601 date, e.g. 2024-01-01T00:00:00Z")

    trigger = r.schedule(src.get("trigger"), "source.trigger", required=True)
    full_sync = r.schedule(src.get("additional_full_sync"), "source.additional_full_sync", required=False)
    retention = r.integer(src.get("delta_log_retention_days"), "source.delta_log_retention_days", 30, minimum=1)
    pii = _pii(r, r.mapping(src.get("pii"), "source.pii", _KEYS["source.pii"], required=False))

    cat_raw = r.mapping(top.get("catalog"), "catalog", _KEYS["catalog"])
    root = r.text(cat_raw.get("root"), "catalog.root") or ""
    if ".." in root.replace("\\", "/").split("/"):
        r.problem("catalog.root", "must not contain '..' segments")
    if _UNSAFE_IN_PATH.search(root):
        r.problem("catalog.root", "must not contain quotes, backticks, semicolons or control characters")
    tables = r.choice(cat_raw.get("tables"), "catalog.tables", TableMode, TableMode.PATH)
    metastore = r.boolean(cat_raw.get("metastore"), "catalog.metastore", False)
    if metastore and tables is TableMode.MANAGED:
        r.problem("catalog.metastore", "applies to path tables only; managed tables are always registered by name")
    if metastore and tables is TableMode.PATH and _in_volume(root):
        r.problem(
            "catalog.metastore",
            f"Unity Catalog cannot register a table on files inside a volume ({root}); "
            "use catalog.tables: managed (tables by name, the job's files in the "
            "volume), or leave metastore off",
        )
    catalog = CatalogConfig(
        root=_resolve_root(root, base or Path.cwd()) if root else "",
        table_prefix=r.identifier(cat_raw.get("table_prefix"), "catalog.table_prefix", required=False),
        tables=tables,
        metastore=metastore,
        name=r.identifier(cat_raw.get("name"), "catalog.name", required=False) or None,
        job_schema=r.identifier(cat_raw.get("job_schema"), "catalog.job_schema", required=False) or DEFAULT_JOB_SCHEMA,
        change_data_feed=r.boolean(cat_raw.get("change_data_feed"), "catalog.change_data_feed", True),
        full_sync_write=r.choice(
            cat_raw.get("full_sync_write"), "catalog.full_sync_write", FullSyncWrite, FullSyncWrite.REWRITE
        ),
    )
    streams = _streams(r, top.get("streams"), catalog.table_prefix)
    nps = _nps(r, top.get("nps"), streams)

    if r.problems:
        raise ConfigError(source, r.problems)
    return SourceConfig(
        description=description or "",
        api=api,
        start_date=start_date,
        trigger=trigger,  # type: ignore[arg-type]  # a missing trigger is a reported problem above
        delta_log_retention_days=retention,
        catalog=catalog,
        streams=streams,
        additional_full_sync=full_sync,
        pii=pii,
        nps=nps,
    )


#: Fields the job keys and walks rows by, in the streams the personal data policy applies to: their keys and
#: cursors (top level only).
_PERSONAL = [s for s in STREAMS.values() if s.personal_data]
_KEY_FIELDS = {
    s.key: f"the primary key of {', '.join(t.name for t in _PERSONAL if t.key == s.key)}" for s in _PERSONAL
} | {
    s.cursor_field: f"the cursor of {', '.join(t.name for t in _PERSONAL if t.cursor_field == s.cursor_field)}"
    for s in _PERSONAL
}


def _pii(r: _Reader, raw: dict) -> PiiConfig:
    """The policy; every field named once, never the key or a cursor, hashed only where a text column can hold
    the hash, and with a salt long enough to resist guessing whenever something is hashed."""
    lists = {action: _field_list(r, raw.get(action), f"source.pii.{action}") for action in ("hash", "drop")}
    salt = r.text(raw.get("salt"), "source.pii.salt", required=False, secret=True)
    for entry in sorted(set(lists["hash"]) & set(lists["drop"])):
        r.problem("source.pii.drop", f"{entry} is also in source.pii.hash; a field is either hashed or dropped")
    for action, entries in lists.items():
        for entry in entries:
            for name, what in _KEY_FIELDS.items():
                if matches(entry, (name,)):
                    r.problem(
                        f"source.pii.{action}",
                        f"{entry} is {what}: the job keys and walks rows by it, so it cannot be {action}ed "
                        "(a dotted path such as end_user.created_at names a nested field instead)",
                    )
    for entry in lists["hash"]:
        for stream in _PERSONAL:
            column = _column_named(stream.fields, entry, ())
            if column is not None:
                kind, path = column
                r.problem(
                    "source.pii.hash",
                    f"{entry} names the {kind} column {stream.name}.{path} and a hash is text that cannot land "
                    "there; drop it instead, or hash the text fields inside it",
                )
                break
    if lists["hash"] and salt is None and not any(p.startswith("source.pii.salt:") for p in r.problems):
        r.problem(
            "source.pii.salt", "is required when source.pii.hash lists fields (a secret of at least 16 characters)"
        )
    if salt is not None and len(salt) < MIN_SALT_CHARS:
        r.problem(
            "source.pii.salt", f"is {len(salt)} characters; at least {MIN_SALT_CHARS} are required (a random secret)"
        )
    return PiiConfig(tuple(sorted(set(lists["hash"]))), tuple(sorted(set(lists["drop"]))), salt)


def _field_list(r: _Reader, value: Any, key: str) -> list[str]:
    """A list of field names or dotted paths."""
    if value is None:
        return []
    if not isinstance(value, list):
        r.problem(key, f"must be a list of field names (e.g. [email, phone_number]), got {type(value).__name__}")
        return []
    entries = []
    for item in value:
        if not isinstance(item, str) or not all(part.strip() for part in item.split(".")):
            r.problem(key, f"{item!r} is not a field name or a dotted path such as properties.name")
        else:
            entries.append(item)
    return entries


def _column_named(fields: tuple[Field, ...], entry: str, prefix: tuple[str, ...]) -> tuple[str, str] | None:
    """The kind and path of a column among `fields` that `entry` names and that is not plain text (a struct, a
    number, a boolean or a normalised time), or None."""
    for f in fields:
        path = (*prefix, f.name)
        if matches(entry, path) and (f.kind is not Kind.STRING or f.iso_time):
            return "time" if f.iso_time else f.kind.value.lower(), ".".join(path)
        if f.kind is Kind.STRUCT:
            found = _column_named(f.fields, entry, path)
            if found:
                return found
    return None


def _nps(r: _Reader, raw: Any, streams: tuple[StreamConfig, ...]) -> NpsConfig | None:
    """The optional gold layer: it needs the responses stream, and its tables must not be a stream's."""
    if raw is None:
        return None
    settings = r.mapping(raw, "nps", _KEYS["nps"])
    if not isinstance(raw, dict):
        return None
    layer = r.identifier(settings.get("layer"), "nps.layer", required=True)
    folder = r.identifier(settings.get("folder"), "nps.folder", required=False)
    tz = r.text(settings.get("timezone"), "nps.timezone", required=False) or "UTC"
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        r.problem("nps.timezone", f"{tz!r} is not an IANA time zone, e.g. UTC or America/Los_Angeles")
    if not any(s.name == "responses" for s in streams):
        r.problem("nps", "the NPS gold layer is computed from responses: configure streams.responses too")
    for s in streams:
        if (s.layer, s.folder) == (layer, folder) and s.table in GOLD_TABLES:
            r.problem(f"streams.{s.name}.table", f"{s.table!r} is the name of an NPS gold table in {layer}")
    return NpsConfig(layer=layer, folder=folder, timezone=tz)


def _auth(r: _Reader, raw: dict) -> Auth:
    values = {
        k: r.text(raw.get(k), f"source.api.auth.{k}", required=False, secret=k in _SECRET_KEYS)
        for k in _KEYS["source.api.auth"]
    }
    has_password = bool(values["username"] or values["password"])
    has_client = bool(values["client_id"] or values["client_secret"])
    if has_password and has_client:
        r.problem("source.api.auth", "give either username + password or client_id + client_secret, not both")
    elif not has_password and not has_client:
        if not any(f"source.api.auth.{k}:" in p for p in r.problems for k in _KEYS["source.api.auth"]):
            r.problem("source.api.auth", "give username + password (or client_id + client_secret)")
    else:
        pair = ("username", "password") if has_password else ("client_id", "client_secret")
        for k in pair:
            if not values[k] and not any(p.startswith(f"source.api.auth.{k}:") for p in r.problems):
                r.problem(f"source.api.auth.{k}", f"is required with {pair[0] if k == pair[1] else pair[1]}")
    return Auth(**values)


def _streams(r: _Reader, raw: Any, prefix: str) -> tuple[StreamConfig, ...]:
    if raw is None or raw == {}:
        r.problem("streams", f"list at least one stream: {', '.join(STREAMS)}")
        return ()
    if not isinstance(raw, dict):
        r.problem("streams", "must be a mapping of stream name to its settings")
        return ()
    result: list[StreamConfig] = []
    seen_tables: dict[tuple[str, str, str], str] = {}
    for name, settings in raw.items():
        key = f"streams.{name}"
        if name not in STREAMS:
            hint = _closest(str(name), set(STREAMS))
            r.problem(
                key, f"no such stream{f' (did you mean {hint!r}?)' if hint else ''}; available: {', '.join(STREAMS)}"
            )
            continue
        s = r.mapping(settings, key, _KEYS["stream"])
        sync_type = _sync_type(r, s.get("sync_type"), key, STREAMS[name])
        stream = StreamConfig(
            stream=STREAMS[name],
            layer=r.identifier(s.get("layer"), f"{key}.layer", required=True),
            folder=r.identifier(s.get("folder"), f"{key}.folder", required=False),
            table=r.identifier(s.get("table", name), f"{key}.table", required=True),
            sync_type=sync_type,
            deletes=r.choice(s.get("deletes"), f"{key}.deletes", Deletes, Deletes.HARD),
            lookback_days=r.integer(
                s.get("lookback_days"), f"{key}.lookback_days", STREAMS[name].default_lookback_days, minimum=0
            ),
        )
        if stream.layer and stream.table:
            where = (stream.layer, stream.folder, prefix + stream.table)
            if where in seen_tables:
                r.problem(
                    f"{key}.table",
                    f"writes the same table as streams.{seen_tables[where]} "
                    f"({'/'.join(p for p in where if p)} under the root)",
                )
            seen_tables[where] = name
        result.append(stream)
    return tuple(result)


def _sync_type(r: _Reader, value: Any, key: str, stream: Stream) -> SyncType:
    """The stream's sync type: INCREMENTAL by default; a stream the API sends whole (segments) is FULL_TABLE only."""
    if stream.read_whole:
        text = r.text(value, f"{key}.sync_type", required=False) or SyncType.FULL_TABLE.value
        if text.upper() != SyncType.FULL_TABLE.value:
            r.problem(
                f"{key}.sync_type",
                f"{text!r}: {stream.name} is read whole (the API has no filter for it), so only FULL_TABLE syncs it",
            )
        return SyncType.FULL_TABLE
    text = r.text(value, f"{key}.sync_type", required=False) or SyncType.INCREMENTAL.value
    try:
        return SyncType(text.upper())
    except ValueError:
        r.problem(f"{key}.sync_type", f"{text!r} is not a sync type; use INCREMENTAL or FULL_TABLE")
        return SyncType.INCREMENTAL


def _yaml_problem(error: yaml.YAMLError) -> str:
    """Where and what, without PyYAML's excerpt of the file: the excerpt could show a literal password."""
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    what = getattr(error, "problem", None) or type(error).__name__
    hint = "; quote values that contain ${...} or {{...}}" if "{" in what or "}" in what else ""
    return f"is not valid YAML{where}: {what}{hint}"


def load_config(
    path: str | os.PathLike, *, secret_reader: SecretReader | None = None, environ: Mapping[str, str] | None = None
) -> SourceConfig:
    """Read and validate a YAML config file."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(path), ["file not found"]) from None
    except yaml.YAMLError as e:
        raise ConfigError(str(path), [_yaml_problem(e)]) from None
    return parse_config(data, source=str(path), secret_reader=secret_reader, environ=environ)
