"""Keeps secrets out of logs, exceptions and tables.

Every secret the config resolves (passwords, client secrets, tokens the client obtains) is registered
here once; `redact()` scrubs any text, and the logging filter scrubs every record on its way out, so
no code path has to remember to do it.
"""
from __future__ import annotations

import logging
import threading

MASK = "***"

_lock = threading.Lock()
_secrets: set[str] = set()


def register(secret: str | None) -> None:
    """Treat `secret` as sensitive from now on (short values are ignored: they would mask ordinary words)."""
    if secret and len(secret) >= 4:
        with _lock:
            _secrets.add(secret)


def redact(text: str) -> str:
    """`text` with every registered secret replaced by the mask, longest first so overlaps are covered."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


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
