"""The personal data policy applied to a record before anything is written (`source.pii` in the config).

Staging applies it to every record the client hands over, before shaping, so the staged Parquet, the typed
columns, `_raw`, the rejected table, the run history and log lines only ever see what the policy lets through.
A field to hash becomes HMAC-SHA256 of its value keyed with the salt (hex); an email is trimmed and lower-cased
first, so one person hashes the same in every table and run (`end_users.email` joins `responses.end_user.email`),
and a value that is not a string is hashed by its JSON text, never left in clear. A field to drop becomes null.

An entry without a dot names a field at any depth (inside lists too, so custom properties in `_raw` are covered);
a dotted entry matches that nesting only (`properties.name` is a `name` right inside a `properties` object,
wherever that object sits, not any other `name`). Plain Python: no pyspark.
"""

from __future__ import annotations

import enum
import hmac
import json
import re
from collections.abc import Iterable, Iterator
from functools import lru_cache

from wootric_ingest.streams import Field, Kind

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_CANONICAL = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)


class Action(str, enum.Enum):
    """What the policy does to a field, as column comments and tags say it."""

    HASHED = "hashed"
    DROPPED = "dropped"


Path = tuple[str, ...]


def matches(entry: str, path: Path) -> bool:
    """Whether a policy entry names the field at `path` (its keys from the record's top): a bare name any field of
    that name, a dotted entry a field whose nearest enclosing keys are that nesting."""
    parts = tuple(entry.split("."))
    return len(path) >= len(parts) and path[len(path) - len(parts) :] == parts


def normalised(value: str) -> str:
    """The text an email is hashed as: trimmed and lower-cased; any other text as it is."""
    stripped = value.strip()
    return stripped.lower() if _EMAIL.fullmatch(stripped) else value


@lru_cache(maxsize=65_536)
def _keyed_hash(key: bytes, text: str) -> str:
    """HMAC-SHA256 in hex; cached, since one person's email or id comes back in record after record."""
    return hmac.digest(key, text.encode("utf-8", "surrogatepass"), "sha256").hex()


class Policy:
    """One source's policy, ready to apply to records (built once per run; matching is a set lookup per key)."""

    def __init__(self, hash: Iterable[str], drop: Iterable[str], salt: str | None):
        self._entries = {tuple(e.split(".")): Action.HASHED for e in hash}
        self._entries.update({tuple(e.split(".")): Action.DROPPED for e in drop})
        self._by_name: dict[str, list[tuple[Path, Action]]] = {}
        for parts, action in self._entries.items():
            self._by_name.setdefault(parts[-1], []).append((parts, action))
        self._names = frozenset(self._by_name)
        self._key = (salt or "").encode("utf-8")

    def __bool__(self) -> bool:
        return bool(self._entries)

    @property
    def actions(self) -> list[str]:
        """The actions the policy takes, as labels, sorted."""
        return sorted({action.value for action in self._entries.values()})

    def action(self, path: Path) -> Action | None:
        """What the policy does to the field at `path`, or None."""
        for parts, action in self._by_name.get(path[-1], ()) if path else ():
            if len(parts) == 1 or path[-len(parts) :] == parts:
                return action
        return None

    def apply(self, record: object) -> object:
        """The record with every field the policy names hashed or nulled; the input is left as it was (a record
        nothing matches is returned as is, without a copy)."""
        return self._walk(record, ())

    def digest(self, value: object) -> str:
        """The keyed hash a hashed field holds for `value` (the one `forget` looks a person up by)."""
        text = normalised(value) if isinstance(value, str) else _CANONICAL.encode(value)
        return _keyed_hash(self._key, text)

    def stored(self, path: Path, value: str) -> str | None:
        """`value` of the field at `path` as the tables hold it: its hash, None when dropped, else itself."""
        action = self.action(path)
        return self.digest(value) if action is Action.HASHED else None if action is Action.DROPPED else value

    def marks(self, fields: tuple[Field, ...], prefix: Path = ()) -> Iterator[tuple[str, Action]]:
        """The columns among `fields` the policy names, as (dotted.name, action), structs included."""
        for f in fields:
            path = (*prefix, f.name)
            action = self.action(path)
            if action is not None:
                yield ".".join(path), action
            elif f.kind is Kind.STRUCT:
                yield from self.marks(f.fields, path)

    def _walk(self, value: object, path: Path) -> object:
        """`value` with the policy applied below it (`path`: its keys from the record's top); a part nothing
        matched is returned as the same object, so an untouched record costs no copy. Only a key the policy
        names can change, and only a nested object or list can hold one, so scalars are passed over."""
        if isinstance(value, dict):
            changed: dict | None = None
            for key, item in value.items():
                action = self.action((*path, key)) if key in self._names else None
                new: object
                if action is not None:
                    new = None if action is Action.DROPPED or item is None else self.digest(item)
                elif isinstance(item, (dict, list)):
                    new = self._walk(item, (*path, key))
                else:
                    continue
                if new is not item:
                    changed = changed if changed is not None else dict(value)
                    changed[key] = new
            return value if changed is None else changed
        if isinstance(value, list):
            items = [self._walk(item, path) if isinstance(item, (dict, list)) else item for item in value]
            return value if all(a is b for a, b in zip(items, value)) else items
        return value
