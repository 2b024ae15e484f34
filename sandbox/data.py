"""The sandbox's ground truth: one seeded, deterministic Wootric account.

Records are plain dicts keyed by id with every timestamp an epoch-second int, so filters and sorts
are exact integer comparisons; the API's Ruby-style strings exist only when a record is rendered.
Keys starting with "_" are hidden and never rendered: "_tie" orders records that share a second
(a seeded hash of the id, so neither id order nor insertion order leaks through), "_channel" is
the survey channel that only shows up in an end user's `last_response`, and "_unreadable" holds the
text some timestamps of a record are rendered as instead of a time (see `Dataset.garble`).

Modelling choices where the API doc is silent (stricter reading first):
- a new response or decline is a survey of its end user: it sets the user's `last_surveyed` and
  moves the user's `updated_at` (the column write a real server does);
- deleting a response does NOT touch its end user, whose `last_response` silently falls back to the
  next newest one (only a full sync sees that, as the doc says of deletes);
- deleting an end user removes its responses and declines, so every record keeps an existing user;
- the nested `end_user.properties` of a response or decline is the user's properties when it was
  created (updates to the user replace, never mutate, its properties dict).
"""

from __future__ import annotations

import bisect
import calendar
import hashlib
import random
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable
from datetime import date, datetime
from zoneinfo import ZoneInfo

STREAMS = ("end_users", "responses", "declines")
ACCOUNT_ZONE = "America/Los_Angeles"  # the account's time zone setting: NPS days are cut there
SORT_KEYS = {
    "end_users": ("email", "created_at", "updated_at"),
    "responses": ("created_at",),
    "declines": ("created_at",),
}
FILTER_FIELDS = {"created": "created_at", "updated": "updated_at"}
# The field each stream is walked by: end users by `updated`, responses and declines by `created`.
CURSOR_FIELDS = {"end_users": "updated_at", "responses": "created_at", "declines": "created_at"}
UNREADABLE_TIME = "yesterday-ish"
OPERATORS = ("eq", "lt", "lte", "gt", "gte")
TIMESTAMP_FORMS = ("ruby", "mixed")
PACIFIC = ZoneInfo(ACCOUNT_ZONE)
DEFAULT_START = calendar.timegm((2024, 6, 1, 0, 0, 0))
DEFAULT_END = calendar.timegm((2026, 6, 1, 0, 0, 0))

_FIRST_ID = {"end_users": 1_000_001, "responses": 500_000_001, "declines": 70_000_001}
_DAY = 86_400

FIRST_NAMES = (
    "Ana",
    "Bruno",
    "Chen",
    "Dara",
    "Émile",
    "Fatima",
    "Görkem",
    "Hiro",
    "Ingrid",
    "José",
    "Kwame",
    "Léa",
    "Mia",
    "Nikolai",
    "Olu",
    "Priya",
    "Quinn",
    "Rafael",
    "Saoirse",
    "Tomasz",
    "Uma",
    "Wen",
    "Yara",
    "Zoë",
)
LAST_NAMES = (
    "Almeida",
    "Brown",
    "Cohen",
    "Dubois",
    "Eriksen",
    "García",
    "Haddad",
    "Ivanova",
    "Jensen",
    "Kowalski",
    "Li",
    "Müller",
    "Nakamura",
    "O'Brien",
    "Patel",
    "Rossi",
    "Silva",
    "Tanaka",
    "Van Dijk",
    "Wright",
)
DOMAINS = ("example.com", "acme.io", "globex.net", "initech.co", "umbrella-corp.org", "hooli.xyz")
ROLES = ("admin", "member", "owner", "viewer", "billing")
LANGUAGES = ("en", "pt", "es", "fr", "de", "ja", "zh-TW")
PLANS = ("Lite", "Small Business", "Pro", "Enterprise")
CITIES = ("São Paulo", "Zürich", "東京", "Kraków", "Austin", "Reykjavík")
SURVEY_IDS = (101, 102, 205)
CHANNELS = ("web", "email", "mobile:ios", "mobile:android")
ORIGIN_URLS = (
    "https://app.example.com/dashboard",
    "https://app.example.com/settings/billing",
    "https://www.example.com/pricing?ref=nps&utm_source=in-app",
)
#: The account's segments (the end-user properties it declared): name, data type, when declared (days after start).
SEGMENTS = (
    ("pricing_plan", "string", 0),
    ("purchase_date", "date", 0),
    ("revenue amount", "string", 3),
    ("seat count", "integer", 30),
    ("city", "string", 45),
)
TAGS = ("PERFORMANCE", "PRICING", "SUPPORT", "UX", "BUGS", "ONBOARDING", "FEATURE REQUEST")
# NPS-shaped: many promoters, a tail of detractors.
SCORE_WEIGHTS = (4, 2, 2, 3, 3, 5, 6, 10, 16, 20, 29)
TEXTS = {
    "detractor": (
        "Site is often slow.",
        "Too expensive for what it does, honestly.",
        "Support never answered my ticket 😡",
        "Lento demais, trava o tempo todo.",
        'Export broke again.\nPlease fix the CSV "date" column, it\'s wrong.',
    ),
    "passive": (
        "It's OK.",
        "Fine, but the mobile app needs work",
        "C'est correct, sans plus.",
        "まあまあです。",
        "Good; would be great with SSO, SCIM, and audit logs",
    ),
    "promoter": (
        "Great service.",
        "Love it! 🚀🚀",
        "Ótimo serviço, recomendo!",
        "最高です 👍",
        "Best tool we've used — period.",
        "Ausgezeichnet, danke!",
    ),
}
NOTE_TEXTS = (
    "Followed up by email.",
    "Escalated to support — ticket #4411",
    "Customer is on the legacy plan",
    "Llamada programada 📞",
)


def _digest(*parts: object) -> bytes:
    return hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in ascii_text.lower() if ch.isalnum())


def _bounds(filters: Iterable[tuple[str, str, int]]) -> dict[str, tuple[float, float]]:
    """AND-ed (field, op, value) filters as one half-open [lo, hi) interval per field."""
    bounds: dict[str, tuple[float, float]] = {}
    for field, op, value in filters:
        lo, hi = bounds.get(field, (float("-inf"), float("inf")))
        if op in ("eq", "gte", "gt"):
            lo = max(lo, value + 1 if op == "gt" else value)
        if op in ("eq", "lte", "lt"):
            hi = min(hi, value if op == "lt" else value + 1)
        bounds[field] = (lo, hi)
    return bounds


class Dataset:
    """The records of one account, their mutations, and their API rendering; thread-safe (one lock)."""

    def __init__(
        self,
        *,
        end_users: int = 2000,
        responses: int = 5000,
        declines: int = 500,
        seed: int = 7,
        start: int = DEFAULT_START,
        end: int = DEFAULT_END,
        burst_hour: int = 0,
        burst_second: int = 0,
        timestamp_forms: str = "ruby",
    ):
        if min(end_users, responses, declines, burst_hour, burst_second) < 0:
            raise ValueError("record counts must be >= 0")
        if end_users == 0 and responses + declines + burst_hour + burst_second > 0:
            raise ValueError("responses and declines need at least one end user")
        if end - start < 6 * 3600:
            raise ValueError("the data range must span at least six hours")
        if timestamp_forms not in TIMESTAMP_FORMS:
            raise ValueError(f"timestamp_forms must be one of {TIMESTAMP_FORMS}")
        self.seed, self.start, self.end = seed, start, end
        self.timestamp_forms = timestamp_forms
        # Where the bursts landed (None when off), so tests and demos can find them.
        self.burst_second_at: int | None = None
        self.burst_hour_start: int | None = None
        self._lock = threading.RLock()
        self._rows: dict[str, dict[int, dict]] = {stream: {} for stream in STREAMS}
        self._next_id = dict(_FIRST_ID)
        self._next_note_id = 9_000_001
        self._emails: set[str] = set()
        self._versions = dict.fromkeys(STREAMS, 0)
        self._cache: dict[tuple, tuple] = {}
        self._mutation_rng = random.Random(f"{seed}:mutations")
        self._segments: dict[str, tuple[str, int]] = {
            name: (kind, start + days * _DAY) for name, kind, days in SEGMENTS
        }
        self._generate(random.Random(seed), end_users, responses, declines, burst_hour, burst_second)

    # ----------------------------------------------------------------- reading

    def records(self, stream: str) -> list[dict]:
        """Every record of `stream` as the API would render it now, in id order."""
        with self._lock:
            return self._render(stream, list(self._table(stream).values()))

    def ids(self, stream: str) -> set[int]:
        with self._lock:
            return set(self._table(stream))

    def query(
        self,
        stream: str,
        *,
        filters: Iterable[tuple[str, str, int]] = (),
        email: str | None = None,
        sort_key: str,
        descending: bool,
        page: int,
        per_page: int,
    ) -> list[dict]:
        """One rendered page: `filters` are AND-ed (field, op, unix seconds); desc is exactly asc reversed."""
        if sort_key not in SORT_KEYS[stream]:
            raise ValueError(f"{stream} cannot be sorted by {sort_key}")
        with self._lock:
            rows, keys = self._ordered(stream, sort_key)
            bounds = _bounds(filters)
            if sort_key in bounds:  # the sort key's own filter is a slice of the ordered list
                lo, hi = bounds.pop(sort_key)
                rows = rows[bisect.bisect_left(keys, lo) : bisect.bisect_left(keys, hi)]
            if descending:
                rows = rows[::-1]
            if bounds or email is not None:
                rows = [
                    r
                    for r in rows
                    if all(lo <= r[field] < hi for field, (lo, hi) in bounds.items())
                    and (email is None or r["email"] == email)
                ]
            return self._render(stream, rows[(page - 1) * per_page : page * per_page])

    def segments(self) -> list[dict]:
        """`GET /v1/segments`: the account's segments, rendered as the API renders timestamps."""
        render = self._timestamp
        with self._lock:
            return [
                {"name": name, "data_type": kind, "created_at": render(at, "segments", 0, name)}
                for name, (kind, at) in self._segments.items()
            ]

    def nps_summary(self, first: date, last: date) -> dict:
        """`GET /v1/nps_summary` for the local dates `first`..`last` (inclusive, in the account's zone): responses
        not excluded from calculations, by score class; NPS rounded half away from zero (the doc's 46/5/75 is 55).
        The response rate is responses over responses and declines, in percent (our reading); no email surveys."""
        zone = ZoneInfo(ACCOUNT_ZONE)

        def within(row: dict) -> bool:
            return first <= datetime.fromtimestamp(row["created_at"], zone).date() <= last

        with self._lock:
            answered = [r for r in self._rows["responses"].values() if within(r)]
            declined = sum(1 for r in self._rows["declines"].values() if within(r))
        scores = [r["score"] for r in answered if not r["excluded_from_calculations"]]
        promoters = sum(1 for s in scores if s >= 9)
        detractors = sum(1 for s in scores if s <= 6)
        total = len(scores)
        swing = 100 * (promoters - detractors)
        nps = 0 if not total else (1 if swing >= 0 else -1) * ((2 * abs(swing) + total) // (2 * total))
        surveyed = len(answered) + declined
        return {
            "nps": nps,
            "responses": total,
            "detractors": detractors,
            "passives": total - promoters - detractors,
            "promoters": promoters,
            "response_rate": round(100 * len(answered) / surveyed) if surveyed else 0,
            "email_response_rate": 0,
        }

    # --------------------------------------------------------------- mutations

    def add(self, stream: str, n: int = 10, at: int | None = None) -> list[int]:
        """Create `n` records at `at` (epoch seconds, default now): all share that second on purpose."""
        at = int(time.time()) if at is None else int(at)
        with self._lock:
            rng = self._mutation_rng
            self._table(stream)  # refuses an unknown stream before anything changes
            if stream == "end_users":
                rows = [self._new_end_user(rng, at) for _ in range(n)]
            else:
                users = self._rows["end_users"]
                if not users:
                    raise ValueError(f"no end users to attach new {stream} to")
                eligible = [u for u in users.values() if u["created_at"] <= at] or list(users.values())
                make = self._new_response if stream == "responses" else self._new_decline
                rows = []
                for _ in range(n):
                    user = rng.choice(eligible)
                    rows.append(make(rng, user, at, edited=False))
                    self._surveyed(user, at)
                self._changed("end_users")
            ids = [self._store(stream, row, rng) for row in rows]
            self._changed(stream)
            return ids

    def update(
        self,
        stream: str,
        ids: Iterable[int] | None = None,
        n: int = 5,
        at: int | None = None,
        fields: dict | None = None,
    ) -> list[int]:
        """Edit records (given `ids`, else `n` random ones) and move their `updated_at` to `at`: set `fields`
        (e.g. a response's score or `excluded_from_calculations`) when given, else the stream's usual edit."""
        at = int(time.time()) if at is None else int(at)
        with self._lock:
            rng = self._mutation_rng
            rows = self._pick(stream, ids, n)
            for row in rows:
                row["updated_at"] = max(row["created_at"], at)
                if fields:
                    row.update(fields)
                elif stream == "end_users":
                    plan = row["properties"].get("pricing_plan")
                    # A new dict, never an in-place edit: responses keep the properties they were given.
                    row["properties"] = {
                        **row["properties"],
                        "pricing_plan": rng.choice([p for p in PLANS if p != plan]),
                    }
                elif stream == "responses":
                    tag = rng.choice(TAGS)
                    row["tags"] = [t for t in row["tags"] if t != tag] if tag in row["tags"] else [*row["tags"], tag]
                    if rng.random() < 0.3:
                        row["notes"] = [*row["notes"], self._new_note(rng, row["updated_at"])]
            self._changed(stream)
            return [row["id"] for row in rows]

    def declare_segment(self, name: str, data_type: str, at: int | None = None) -> None:
        """The account declares a segment (or changes its data type) at `at` (epoch seconds, default now)."""
        if data_type not in ("string", "date", "integer"):
            raise ValueError("a segment's data_type is one of string, date, integer")
        with self._lock:
            self._segments[name] = (data_type, int(time.time()) if at is None else int(at))

    def remove_segment(self, name: str) -> None:
        """The account removes a segment; end users keep the property."""
        with self._lock:
            del self._segments[name]

    def delete(self, stream: str, ids: Iterable[int] | None = None, n: int = 3) -> list[int]:
        """Remove records (given `ids`, else `n` random ones); an end user takes its responses and declines."""
        with self._lock:
            rows = self._pick(stream, ids, n)
            table = self._table(stream)
            for row in rows:
                del table[row["id"]]
            self._changed(stream)
            if stream == "end_users":
                gone = {row["id"] for row in rows}
                for child in ("responses", "declines"):
                    kept = {rid: r for rid, r in self._rows[child].items() if r["end_user_id"] not in gone}
                    if len(kept) != len(self._rows[child]):
                        self._rows[child] = kept
                        self._changed(child)
            return [row["id"] for row in rows]

    def garble(
        self,
        stream: str,
        ids: Iterable[int] | None = None,
        n: int = 1,
        field: str | None = None,
        text: str = UNREADABLE_TIME,
    ) -> list[int]:
        """Render `field` (default: the stream's cursor) of some records (given `ids`, else `n` random ones) as
        `text` from now on. The records keep their real time, by which the API still filters and sorts them:
        the conservative reading of a server that knows when a record happened and only renders it wrong."""
        field = field or CURSOR_FIELDS.get(stream, "")
        with self._lock:
            rows = self._pick(stream, ids, n)
            if rows and field not in rows[0]:
                raise ValueError(f"{stream} records have no field {field!r}")
            for row in rows:
                row["_unreadable"] = {**row.get("_unreadable", {}), field: text}
            self._changed(stream)
            return [row["id"] for row in rows]

    # -------------------------------------------------------------- generation

    def _generate(
        self, rng: random.Random, n_users: int, n_responses: int, n_declines: int, burst_hour: int, burst_second: int
    ) -> None:
        start, end = self.start, self.end
        users = sorted(
            (self._new_end_user(rng, rng.randrange(start, end)) for _ in range(n_users)), key=lambda u: u["created_at"]
        )
        for user in users:
            self._store("end_users", user, rng)

        # Each burst pairs extra responses with end users updated at the same instant; a burst user's
        # ordinary activity stays before its burst, so the burst is its newest survey and update.
        # Only users created before a burst can be in it: late in the range, so most are.
        burst_rng = random.Random(f"{self.seed}:bursts")
        span, events, taken = end - start, [], set()
        if burst_second:
            self.burst_second_at = start + burst_rng.randrange(span * 60 // 100, span * 75 // 100)
            events += self._burst(
                burst_rng, users, taken, burst_second, self.burst_second_at, lambda: self.burst_second_at
            )
        if burst_hour:
            hour = -(-(start + burst_rng.randrange(span * 75 // 100, span * 90 // 100)) // 3600) * 3600
            self.burst_hour_start = hour
            events += self._burst(burst_rng, users, taken, burst_hour, hour, lambda: hour + burst_rng.randrange(3600))
        cap: dict[int, int] = {}
        for user, t in events:
            cap[user["id"]] = min(cap.get(user["id"], end), t)

        def off_burst(t: int) -> int:
            return t + 1 if t == self.burst_second_at else t

        def activity_time(user: dict) -> int:
            lo, hi = user["created_at"], cap.get(user["id"], end)
            return off_burst(lo + rng.randrange(hi - lo) if hi > lo else lo)

        for stream, count, make, extra in (
            ("responses", n_responses, self._new_response, events),
            ("declines", n_declines, self._new_decline, ()),
        ):
            drafts = []
            for _ in range(count):
                user = rng.choice(users)
                drafts.append(make(rng, user, activity_time(user), edited=True))
            drafts += [make(rng, user, t, edited=True) for user, t in extra]
            drafts.sort(key=lambda r: r["created_at"])  # ids grow with creation time, as in Rails
            for draft in drafts:
                self._store(stream, draft, rng)

        surveyed: dict[int, int] = {}
        for stream in ("responses", "declines"):
            for row in self._rows[stream].values():
                uid = row["end_user_id"]
                surveyed[uid] = max(surveyed.get(uid, row["created_at"]), row["created_at"])
        for user in users:
            user["last_surveyed"] = surveyed.get(user["id"])
            if user["id"] in cap:
                user["updated_at"] = user["last_surveyed"]
                continue
            base = max(user["created_at"], user["last_surveyed"] or 0)
            if rng.random() < 0.3 and end - base > 1:
                base += rng.randrange(1, end - base)
            user["updated_at"] = off_burst(base)

    @staticmethod
    def _burst(
        rng: random.Random, users: list[dict], taken: set[int], count: int, before: int, when: Callable[[], int]
    ) -> list[tuple[dict, int]]:
        eligible = [u for u in users if u["created_at"] < before and u["id"] not in taken]
        if not eligible:
            raise ValueError("a burst needs end users created before it; add end users")
        chosen = rng.sample(eligible, min(count, len(eligible)))
        taken.update(u["id"] for u in chosen)
        return [(chosen[i % len(chosen)], when()) for i in range(count)]

    def _new_end_user(self, rng: random.Random, created: int) -> dict:
        first, last, domain = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES), rng.choice(DOMAINS)
        email = None
        if rng.random() >= 0.05:
            while email is None or email in self._emails:
                email = f"{_slug(first)}.{_slug(last)}{rng.randrange(100_000)}@{domain}"
            self._emails.add(email)
        properties: dict = {
            "name": f"{first} {last}",
            "role": rng.choice(ROLES),
            "domain": domain,
            "language": rng.choice(LANGUAGES),
        }
        if rng.random() < 0.8:
            properties["pricing_plan"] = rng.choice(PLANS)
        if rng.random() < 0.6:
            properties["purchase_date"] = created - rng.randrange(400 * _DAY)
        if rng.random() < 0.5:
            properties["revenue amount"] = str(rng.randrange(1, 200) * 250)
        if rng.random() < 0.4:
            properties["seat count"] = rng.randrange(1, 500)
        if rng.random() < 0.2:
            properties["health score"] = round(rng.random(), 2)
        if rng.random() < 0.3:
            properties["city"] = rng.choice(CITIES)
        seen = rng.random() < 0.25 and created < self.end
        return {
            "created_at": created,
            "updated_at": created,
            "email": email,
            "last_surveyed": None,
            "external_created_at": created - rng.randrange(3 * 365 * _DAY) if rng.random() < 0.7 else None,
            "last_seen_at": rng.randrange(created, self.end) if seen else None,
            "phone_number": f"+1 415-555-{rng.randrange(10_000):04d}" if rng.random() < 0.15 else None,
            "external_id": f"{rng.getrandbits(64):016x}" if rng.random() < 0.9 else None,
            "properties": properties,
            "settings": {
                "email_nps": rng.choice((True, True, False, None)),
                "mobile_nps": rng.choice((True, False, None)),
                "web_nps": rng.choice((True, True, False)),
                "force_mobile_survey": rng.choice((None, None, True, False)),
                "force_web_survey": rng.choice((None, None, True, False)),
                "surveys_disabled_by_end_user": rng.choice((None, None, None, True)),
            },
        }

    def _new_response(self, rng: random.Random, user: dict, created: int, *, edited: bool) -> dict:
        score = rng.choices(range(11), weights=SCORE_WEIGHTS)[0]
        band = "detractor" if score <= 6 else "passive" if score <= 8 else "promoter"
        roll = rng.random()
        text = None if roll < 0.12 else "" if roll < 0.2 else rng.choice(TEXTS[band])
        channel = rng.choice(CHANNELS)
        updated = self._edited_at(rng, created, 0.25) if edited else created
        tags = rng.sample(TAGS, rng.randint(1, 2)) if rng.random() < 0.4 else []
        notes = []
        if edited and rng.random() < 0.15:
            notes = [self._new_note(rng, rng.randint(created, updated)) for _ in range(rng.randint(1, 2))]
            notes.sort(key=lambda note: note["created_at"])
        return {
            "end_user_id": user["id"],
            "survey_id": rng.choice(SURVEY_IDS),
            "score": score,
            "text": text,
            "completed": rng.random() < 0.9,
            "excluded_from_calculations": rng.random() < 0.05,
            "ip_address": self._ip(rng),
            "origin_url": rng.choice(ORIGIN_URLS) if channel == "web" else None,
            "created_at": created,
            "updated_at": updated,
            "tags": tags,
            "notes": notes,
            "end_user": {"properties": user["properties"]},
            "_channel": channel,
        }

    def _new_decline(self, rng: random.Random, user: dict, created: int, *, edited: bool) -> dict:
        return {
            "end_user_id": user["id"],
            "survey_id": rng.choice(SURVEY_IDS),
            "ip_address": self._ip(rng),
            "origin_url": rng.choice(ORIGIN_URLS) if rng.random() < 0.7 else None,
            "created_at": created,
            "updated_at": self._edited_at(rng, created, 0.1) if edited else created,
            "end_user": {"properties": user["properties"]},
        }

    def _new_note(self, rng: random.Random, created: int) -> dict:
        note_id, self._next_note_id = self._next_note_id, self._next_note_id + 1
        return {"id": note_id, "text": rng.choice(NOTE_TEXTS), "created_at": created}

    def _edited_at(self, rng: random.Random, created: int, chance: float) -> int:
        """`updated_at` of a generated record: usually its creation, sometimes a later edit."""
        if rng.random() < chance and self.end - created > 1:
            return created + rng.randrange(1, min(30 * _DAY, self.end - created))
        return created

    @staticmethod
    def _ip(rng: random.Random) -> str:
        if rng.random() < 0.1:
            return f"2001:db8::{rng.getrandbits(16):x}:{rng.getrandbits(16):x}"
        return f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"

    # --------------------------------------------------------------- internals

    def _table(self, stream: str) -> dict[int, dict]:
        try:
            return self._rows[stream]
        except KeyError:
            raise ValueError(f"unknown stream {stream!r}; one of {STREAMS}") from None

    def _store(self, stream: str, row: dict, rng: random.Random) -> int:
        """Give `row` the next id (gaps, as ids are shared across accounts) and its hidden tie key."""
        rid = self._next_id[stream]
        self._next_id[stream] = rid + rng.randint(1, 3)
        row["id"] = rid
        row["_tie"] = int.from_bytes(_digest(self.seed, stream, rid), "big")
        self._rows[stream][rid] = row
        return rid

    def _pick(self, stream: str, ids: Iterable[int] | None, n: int) -> list[dict]:
        table = self._table(stream)
        if ids is None:
            return self._mutation_rng.sample(list(table.values()), min(n, len(table)))
        ids = list(ids)
        missing = [i for i in ids if i not in table]
        if missing:
            raise KeyError(f"unknown {stream} ids: {missing[:10]}")
        return [table[i] for i in ids]

    def _surveyed(self, user: dict, at: int) -> None:
        user["last_surveyed"] = max(user["last_surveyed"] or at, at)
        user["updated_at"] = max(user["updated_at"], at)

    def _changed(self, stream: str) -> None:
        self._versions[stream] += 1

    def _cached(self, key: tuple, streams: tuple[str, ...], build: Callable[[], object]):
        version = tuple(self._versions[s] for s in streams)
        hit = self._cache.get(key)
        if hit is None or hit[0] != version:
            hit = self._cache[key] = (version, build())
        return hit[1]

    def _ordered(self, stream: str, sort_key: str) -> tuple[list[dict], list]:
        """Rows in ascending order (ties by the hidden key) and their sort-key values, for bisecting."""

        def build():
            if sort_key == "email":  # SQL order: NULLs last ascending, so first descending
                rows = sorted(
                    self._rows[stream].values(), key=lambda r: (r["email"] is None, r["email"] or "", r["_tie"])
                )
                return rows, []
            rows = sorted(self._rows[stream].values(), key=lambda r: (r[sort_key], r["_tie"]))
            return rows, [r[sort_key] for r in rows]

        return self._cached(("ordered", stream, sort_key), (stream,), build)

    def _newest_responses(self) -> dict[int, dict]:
        def build():
            newest: dict[int, dict] = {}
            for row in self._rows["responses"].values():
                best = newest.get(row["end_user_id"])
                if best is None or (row["created_at"], row["_tie"]) > (best["created_at"], best["_tie"]):
                    newest[row["end_user_id"]] = row
            return newest

        return self._cached(("newest",), ("responses",), build)

    def _render(self, stream: str, rows: list[dict]) -> list[dict]:
        rendered = self._render_fields(stream, rows)
        for row, record in zip(rows, rendered):
            record.update(row.get("_unreadable", ()))
        return rendered

    def _render_fields(self, stream: str, rows: list[dict]) -> list[dict]:
        if stream == "end_users":
            newest = self._newest_responses()
            return [self._render_end_user(row, newest.get(row["id"])) for row in rows]
        ts = self._timestamp
        if stream == "responses":
            return [
                {
                    "id": r["id"],
                    "end_user_id": r["end_user_id"],
                    "survey_id": r["survey_id"],
                    "score": r["score"],
                    "text": r["text"],
                    "completed": r["completed"],
                    "excluded_from_calculations": r["excluded_from_calculations"],
                    "ip_address": r["ip_address"],
                    "origin_url": r["origin_url"],
                    "created_at": ts(r["created_at"], stream, r["id"], "created_at"),
                    "updated_at": ts(r["updated_at"], stream, r["id"], "updated_at"),
                    "tags": list(r["tags"]),
                    "notes": [
                        {
                            "id": n["id"],
                            "text": n["text"],
                            "created_at": ts(n["created_at"], "notes", n["id"], "created_at"),
                        }
                        for n in r["notes"]
                    ],
                    "end_user": {"properties": dict(r["end_user"]["properties"])},
                }
                for r in rows
            ]
        return [
            {
                "id": r["id"],
                "end_user_id": r["end_user_id"],
                "survey_id": r["survey_id"],
                "ip_address": r["ip_address"],
                "origin_url": r["origin_url"],
                "created_at": ts(r["created_at"], stream, r["id"], "created_at"),
                "updated_at": ts(r["updated_at"], stream, r["id"], "updated_at"),
                "end_user": {"properties": dict(r["end_user"]["properties"])},
            }
            for r in rows
        ]

    def _render_end_user(self, u: dict, last: dict | None) -> dict:
        ts, uid = self._timestamp, u["id"]
        return {
            "id": uid,
            "created_at": ts(u["created_at"], "end_users", uid, "created_at"),
            "updated_at": ts(u["updated_at"], "end_users", uid, "updated_at"),
            "email": u["email"],
            "last_surveyed": ts(u["last_surveyed"], "end_users", uid, "last_surveyed"),
            "external_created_at": u["external_created_at"],
            "last_seen_at": ts(u["last_seen_at"], "end_users", uid, "last_seen_at"),
            "phone_number": u["phone_number"],
            "external_id": u["external_id"],
            "properties": dict(u["properties"]),
            "last_response": None
            if last is None
            else {
                "id": last["id"],
                "score": last["score"],
                "text": last["text"],
                "survey": {"channel": last["_channel"]},
            },
            "settings": dict(u["settings"]),
        }

    def _timestamp(self, ts: int | None, stream: str, rid: int, field: str) -> str | None:
        """Ruby `Time#to_s` in Pacific time; "mixed" renders ~10% each in the doc's two other forms."""
        if ts is None:
            return None
        local = datetime.fromtimestamp(ts, PACIFIC)
        form = _digest(self.seed, stream, rid, field)[0] % 10 if self.timestamp_forms == "mixed" else 9
        if form == 0:
            return local.strftime("%Y-%m-%d %H:%M:%S")  # no offset: Pacific local time
        if form == 1:
            return local.isoformat(timespec="milliseconds")
        return local.strftime("%Y-%m-%d %H:%M:%S %z")
