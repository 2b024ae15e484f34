"""Keeps secrets out of logs, exceptions and tables.

Every secret the config resolves (passwords, client secrets, tokens the client obtains) is registered
here once; `redact()` scrubs any text, and the logging filter scrubs every record on its way out, so
no code path has to remember to do it. Records are scrubbed as they are staged (`redact_values`), so a
secret an API answer happens to carry never reaches a file, a table, `_raw` or a Spark plan.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

MASK = "***"

_lock = threading.Lock()
_secrets: set[str] = set()
_needles: tuple[str, ...] = ()  # every secret as written and JSON-escaped: `exposes` runs for every record


def register(secret: str | None) -> None:
    """Treat `secret` as sensitive from now on (short values are ignored: they would mask ordinary words)."""
    global _needles
    if secret and len(secret) >= 4:
        with _lock:
            _secrets.add(secret)
            _needles = tuple({n for s in _secrets for n in (s, json.dumps(s, ensure_ascii=False)[1:-1])})


def redact(text: str) -> str:
    """`text` with every registered secret replaced by the mask, longest first so overlaps are covered."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def exposes(text: str) -> bool:
    """Whether `text` (JSON, as serialised) holds a registered secret, as written or JSON-escaped."""
    return any(needle in text for needle in _needles)


def redact_values(value: Any) -> Any:
    """Parsed JSON with every registered secret masked inside its strings (keys too); numbers and structure are
    left alone, so it still serialises to valid JSON (masking the serialised text could cut into a number)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [redact_values(v) for v in value]
    if isinstance(value, dict):
        return {redact(k): redact_values(v) for k, v in value.items()}
    return value


class RedactingFilter(logging.Filter):
    """A logging filter that renders the message, redacts it and drops the arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        record.msg, record.args = redact(message), None
        return True


def install(handler: logging.Handler) -> None:
    """Attach the redacting filter to a handler (idempotent)."""
    if not any(isinstance(f, RedactingFilter) for f in handler.filters):
        handler.addFilter(RedactingFilter())
