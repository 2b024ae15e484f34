"""A record as the API sent it → the values of its stream table's row, in plain Python (no pyspark).

The one implementation of shaping: staging writes its rows, and a Spark data source reading the API must give
the same values. Per record: the typed values in the table's column order (the seed columns, a struct as a dict
of its fields, then `_extracted_at`, `_run_id`, `_raw`, `_deleted_at`), the columns whose value did not fit
their type, and why the record cannot be keyed (or None).

The semantics are those Spark gives a JSON record read with every leaf as a string and then cast (the Spark
expressions this replaced, checked against them value by value): a string column keeps a JSON number, object
or array as compact JSON text, as Spark's JSON reader writes it back (Java's `1.0E20` for a float); an integer
or boolean column takes what `try_cast` takes (`"9"`, `" 9 "`, `"yes"`, `"F"`) and anything else, out of range
or unparseable, lands as null and counts as a type mismatch; a timestamp column is normalised to ISO-8601 UTC
from every form Wootric renders. An object field that arrived as something else is null and counted once, at
the object. Floats get their shortest digits, where Java 17 writes a few with more (`4.9E-324`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from wootric_ingest import redaction
from wootric_ingest.streams import Field, Kind, Stream

NOT_AN_OBJECT = "not a JSON object"

_MAX_ID_DIGITS = 38  # the widest whole number Spark keeps exactly (DECIMAL(38)); ids are strings in the tables
_NON_BLANK = re.compile(r"[^ \t\n\x0b\f\r]")  # Java's \S: only ASCII whitespace is blank
_PACIFIC = ZoneInfo("America/Los_Angeles")  # the zone Wootric renders offset-less timestamps in
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_COMPACT_ASCII = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))


_RAW = -2  # `_raw`, before `_deleted_at` (null: a record the API sends is not deleted), as METADATA_FIELDS orders them


@dataclass(frozen=True)
class Shaped:
    """One record shaped: `values` in the table's column order, the dotted paths of the columns whose value did
    not fit (`mismatches`), and why it cannot be keyed (`problem`, None for a row)."""

    values: tuple[Any, ...]
    mismatches: tuple[str, ...]
    problem: str | None

    @property
    def raw(self) -> str:
        """The record as `_raw` holds it."""
        return self.values[_RAW]


def shape(stream: Stream, record: object, extracted_at: datetime, run_id: str) -> Shaped:
    """`record` (parsed JSON as the API sent it) as a row of `stream`'s table, fetched at `extracted_at` (see
    `fetch_time`) by run `run_id`. Secrets are masked first, so no value and no `_raw` holds one."""
    raw, record, escaped = staged_json(record)
    mismatches: list[str] = []
    if isinstance(record, dict):
        seed = [convert(record.get(name), escaped, mismatches) for name, convert in _converters(stream)]
    else:
        seed = [None] * len(stream.fields)
    return Shaped((*seed, extracted_at, run_id, raw, None), tuple(mismatches), key_problem(record, stream.key))


def fetch_time(unix_seconds: float) -> datetime:
    """A fetch's Unix time as `_extracted_at` holds it: UTC, to the microsecond (truncated, as Spark's
    `timestamp_seconds` does)."""
    return _EPOCH + timedelta(microseconds=int(unix_seconds * 1_000_000))


def staged_json(record: object) -> tuple[str, object, bool]:
    """The record's `_raw` text (compact JSON, secrets masked), the record it is the text of, and whether it is
    ASCII-escaped: JSON may escape a lone UTF-16 surrogate, UTF-8 cannot hold one, so such a record is kept
    escaped instead of failing the run."""
    text = _COMPACT.encode(record)
    if redaction.exposes(text):
        record = redaction.redact_values(record)
        text = _COMPACT.encode(record)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _COMPACT_ASCII.encode(record), record, True
    return text, record, False


def key_problem(record: object, key: str) -> str | None:
    """Why a record cannot be keyed by its field `key`, or None: the key must be a whole number of at most 38
    digits or a string with a non-blank character (keys are strings in the tables, so `12` and `"12"` are the
    same record)."""
    if not isinstance(record, dict):
        return NOT_AN_OBJECT
    value = record.get(key)
    if value is None:
        return f"no {key}"
    if isinstance(value, bool):
        return f"the {key} is a boolean"
    if isinstance(value, int):
        return (
            None if len(str(abs(value))) <= _MAX_ID_DIGITS else f"the {key} is not a whole number of at most 38 digits"
        )
    if isinstance(value, str):
        return None if _NON_BLANK.search(value) else f"the {key} is a blank string"
    if isinstance(value, dict):
        return f"the {key} is an object"
    if isinstance(value, list):
        return f"the {key} is an array"
    return f"the {key} is not a whole number of at most 38 digits"


# ----------------------------------------------------------------------------------------------- converters

#: value as parsed, whether the record holds a lone surrogate (so `_raw` is ASCII-escaped), the mismatches so far
#: → the column's value
Converter = Callable[[object, bool, list[str]], Any]


_CONVERTERS: dict[str, tuple[tuple[str, Converter], ...]] = {}


def _converters(stream: Stream) -> tuple[tuple[str, Converter], ...]:
    """Built once per stream, found by its name (hashing a stream's fields for every record would cost more
    than shaping it)."""
    converters = _CONVERTERS.get(stream.name)
    if converters is None:
        converters = _CONVERTERS[stream.name] = tuple((f.name, _converter(f, f.name)) for f in stream.fields)
    return converters


def _converter(field: Field, path: str) -> Converter:
    if field.kind is Kind.STRUCT:
        children = tuple((f.name, _converter(f, f"{path}.{f.name}")) for f in field.fields)

        def struct(value: object, escaped: bool, mismatches: list[str]) -> dict | None:
            if isinstance(value, dict):
                return {name: convert(value.get(name), escaped, mismatches) for name, convert in children}
            if value is not None:
                mismatches.append(path)
            return None

        return struct
    if field.kind is Kind.STRING and not field.iso_time:
        return _string
    cast = _as_integer if field.kind is Kind.INTEGER else _as_boolean if field.kind is Kind.BOOLEAN else _as_iso_utc

    def typed(value: object, escaped: bool, mismatches: list[str]) -> Any:
        if value is None:
            return None
        result = cast(value)
        if result is None:
            mismatches.append(path)
        return result

    return typed


def _string(value: object, escaped: bool, mismatches: list[str]) -> str | None:
    if type(value) is str:
        return _well_formed(value) if escaped else value
    return None if value is None else _text(value)


def _text(value: object) -> str:
    """A JSON value as the text a string column keeps: a string as itself, anything else as compact JSON, written
    as Spark's JSON reader (Jackson) writes a value back as text (see `_json`)."""
    if type(value) is str:
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        return str(value)
    if type(value) is float:
        return _java_double(value)
    text = _COMPACT.encode(value)
    jackson = (
        _FLOAT_IN_JSON.search(text)
        or ("\\u00" in text and _HEX_LETTER_ESCAPE.search(text))
        or (not text.isascii() and _UTF16_SURROGATES.search(text))
    )
    return _json(value) if jackson else text


#: What tells Python's compact JSON from Jackson's: a float (Java writes `1.0E20`, Python `1e+20`), a control
#: character escaped with hex letters (`\u001F`, not `\u001f`), a character beyond the BMP or a surrogate (Jackson
#: escapes each UTF-16 unit). A false alarm (the same text inside a string) only costs the slower, exact path.
_FLOAT_IN_JSON = re.compile(r"[\[,:]-?(?:[0-9]+[.eE]|Infinity|NaN)")
_HEX_LETTER_ESCAPE = re.compile(r"\\u00(?:0[b-f]|1[a-f])")
_UTF16_SURROGATES = re.compile(r"[\ud800-\udfff\U00010000-\U0010ffff]")
_JACKSON_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
_JACKSON_ESCAPED = re.compile(r'["\\\x00-\x1f\ud800-\udfff\U00010000-\U0010ffff]')


def _json(value: object) -> str:
    """Compact JSON as Jackson's UTF-8 generator writes it: floats as Java's `Double.toString`, other non-ASCII
    characters as they are except UTF-16 surrogates, which are escaped one by one in upper-case hex, as are
    control characters without a short escape."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{_json_string(k)}:{_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(map(_json, value)) + "]"
    if type(value) is str:
        return _json_string(value)
    return "null" if value is None else _text(value)


def _json_string(text: str) -> str:
    return '"' + _JACKSON_ESCAPED.sub(_jackson_escape, text) + '"'


def _jackson_escape(match: re.Match[str]) -> str:
    char = match.group()
    short = _JACKSON_ESCAPES.get(char)
    if short is not None:
        return short
    code = ord(char)
    if code > 0xFFFF:
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04X}\\u{0xDC00 + (code & 0x3FF):04X}"
    return f"\\u{code:04X}"


def _java_double(number: float) -> str:
    """A double as Java's `Double.toString` writes it (the shortest digits that read back the same number: Java
    17 writes a handful of values with more digits), and a non-finite one as Jackson does, as a string."""
    if not math.isfinite(number):
        return '"NaN"' if math.isnan(number) else '"Infinity"' if number > 0 else '"-Infinity"'
    if number == 0:
        return "-0.0" if math.copysign(1.0, number) < 0 else "0.0"
    if 1e-3 <= abs(number) < 1e7:
        return repr(number)  # plain notation with a fraction, like Java's in this range
    sign, digits, exponent = Decimal(repr(number)).normalize().as_tuple()
    assert isinstance(exponent, int)
    mantissa = "".join(map(str, digits))
    return f"{'-' if sign else ''}{mantissa[0]}.{mantissa[1:] or '0'}E{exponent + len(mantissa) - 1}"


def _well_formed(text: str) -> str:
    """A lone surrogate as `?`, as the JVM encodes it in UTF-8 (Parquet and Delta hold UTF-8)."""
    return text.encode("utf-8", "replace").decode("utf-8")


# ------------------------------------------------------------------------------------------ integers, booleans

_INT32 = range(-(2**31), 2**31)
_TRIMMED = "".join(map(chr, range(0x21))) + "\x7f"  # what Spark's casts trim: whitespace and ISO controls
_DIGITS = re.compile(r"[+-]?[0-9]+")
_TRUE = frozenset({"t", "true", "y", "yes", "1"})
_FALSE = frozenset({"f", "false", "n", "no", "0"})


def _as_integer(value: object) -> int | None:
    """A 32-bit integer as `try_cast(text AS INT)` reads the value's text: optional sign, ASCII digits, no
    fraction."""
    if type(value) is int:
        return value if value in _INT32 else None
    trimmed = _text(value).strip(_TRIMMED)
    if not _DIGITS.fullmatch(trimmed):
        return None
    number = int(trimmed)
    return number if number in _INT32 else None


def _as_boolean(value: object) -> bool | None:
    """A boolean as `try_cast(text AS BOOLEAN)` reads the value's text: t/true/y/yes/1 and f/false/n/no/0, any
    case."""
    if value is True or value is False:
        return value
    word = _text(value).strip(_TRIMMED).lower()
    return True if word in _TRUE else False if word in _FALSE else None


# ------------------------------------------------------------------------------------------------ timestamps

_D = "([0-9]{4})-([0-9]{2})-([0-9]{2})"
_T = "([0-9]{2}):([0-9]{2}):([0-9]{2})"
_RUBY = re.compile(f"{_D} {_T} ([+-])([0-9]{{2}})([0-9]{{2}})")  # Time#to_s: 2018-01-02 23:03:41 -0800
_ISO = re.compile(f"{_D}[Tt]{_T}(?:\\.[0-9]{{1,3}})?(?:[Zz]|([+-])([0-9]{{2}}):([0-9]{{2}}))")
_LOCAL = re.compile(f"{_D} {_T}")  # no offset: Pacific time
_SECONDS = re.compile(r"(-?[0-9]{1,12})(?:\r\n|\r|\n)?")  # Unix seconds (external_created_at)


def _as_iso_utc(value: object) -> str | None:
    return iso_utc(_text(value))


def iso_utc(text: str) -> str | None:
    """Any Wootric timestamp form as ISO-8601 UTC (`2018-01-03T07:03:41Z`), or None if it is none of them:
    Ruby's `Time#to_s` with its offset, ISO-8601 with or without millis, offset-less (Pacific time), Unix
    seconds. Millis are dropped: string order is time order, to the second."""
    match = _RUBY.fullmatch(text) or _ISO.fullmatch(text)
    if match:
        y, mo, d, h, mi, s, sign, oh, om = match.groups()
        offset = 0 if sign is None else _offset(sign, oh, om)
        return None if offset is None else _utc(int(y), int(mo), int(d), int(h), int(mi), int(s), offset)
    match = _LOCAL.fullmatch(text)
    if match:
        return _pacific(*map(int, match.groups()))
    match = _SECONDS.fullmatch(text)
    if match:
        return _format(int(match.group(1)))
    return None


def _offset(sign: str, hours: str, minutes: str) -> int | None:
    """An offset in seconds; None beyond what a zone offset can be (±18:00)."""
    seconds = int(hours) * 3600 + int(minutes) * 60
    if int(minutes) > 59 or seconds > 18 * 3600:
        return None
    return -seconds if sign == "-" else seconds


def _utc(y: int, mo: int, d: int, h: int, mi: int, s: int, offset: int) -> str | None:
    seconds = _local_seconds(y, mo, d, h, mi, s)
    return None if seconds is None else _format(seconds - offset)


def _pacific(y: int, mo: int, d: int, h: int, mi: int, s: int) -> str | None:
    """Wall-clock time in Pacific time. In the hour that a change to summer time skips, the offset before it
    applies (the instant Java's `ZonedDateTime.of` gives); in the hour repeated in autumn, summer time."""
    seconds = _local_seconds(y, mo, d, h, mi, s)
    if seconds is None:
        return None
    offset = _PACIFIC.utcoffset(datetime(y or 400, mo, d, h, mi, s))  # year 0: as 400, also before time zones
    assert offset is not None
    return _format(seconds - offset.days * 86400 - offset.seconds)


def _local_seconds(y: int, mo: int, d: int, h: int, mi: int, s: int) -> int | None:
    """A wall-clock time in seconds since 1970-01-01 00:00 on the same clock; None when it is no date or time of
    day. Year 0 (1 BC) is a year too, as in Spark's proleptic calendar: a datetime cannot hold it, so it is
    counted from the year 400 of the same 400-year cycle."""
    cycle = 1 if y == 0 else 0
    try:
        local = datetime(y + 400 * cycle, mo, d, h, mi, s)
    except ValueError:
        return None
    since = local - _NAIVE_EPOCH
    return since.days * 86400 + since.seconds - cycle * _CYCLE_SECONDS


_CYCLE_SECONDS = 146097 * 86400  # 400 Gregorian years


def _format(seconds: int) -> str:
    """Unix seconds as `yyyy-MM-ddTHH:mm:ssZ`; a year beyond 9999 or before 0 is signed, as Java writes it."""
    if _DATETIME_SECONDS[0] <= seconds < _DATETIME_SECONDS[1]:
        return (_NAIVE_EPOCH + timedelta(seconds=seconds)).isoformat() + "Z"
    days, second = divmod(seconds, 86400)
    y, mo, d = _civil(days)
    h, rest = divmod(second, 3600)
    year = f"{'+' if y > 9999 else '-' if y < 0 else ''}{abs(y):04d}"
    return f"{year}-{mo:02d}-{d:02d}T{h:02d}:{rest // 60:02d}:{rest % 60:02d}Z"


_DATETIME_SECONDS = (-62135596800, 253402300800)  # 0001-01-01 and 10000-01-01


def _civil(days: int) -> tuple[int, int, int]:
    """Days since 1970-01-01 as a proleptic Gregorian (year, month, day), for any year (H. Hinnant)."""
    days += 719468
    era = days // 146097
    doe = days - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    mo = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (mo <= 2), mo, d
