"""OAuth tokens of the sandbox account: what `/oauth/token` issues and the list endpoints check."""

from __future__ import annotations

import secrets
import threading
import time

SCOPE = "read export"


class TokenStore:
    """Access tokens with a wall-clock expiry; refresh tokens are single-use (rotated on redeem)."""

    def __init__(self, ttl: int):
        self.ttl = ttl
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}
        self._refresh: set[str] = set()

    def grant(self, *, refreshable: bool) -> dict:
        """A token body as the doc shows it; only password-grant (refreshable) tokens carry a refresh token."""
        now = time.time()
        body = {"access_token": secrets.token_hex(32), "token_type": "Bearer", "expires_in": self.ttl}
        if refreshable:
            body["refresh_token"] = secrets.token_hex(32)
        body.update(scope=SCOPE, created_at=int(now))
        with self._lock:
            self._expiry[body["access_token"]] = now + self.ttl
            if refreshable:
                self._refresh.add(body["refresh_token"])
        return body

    def valid(self, token: str | None) -> bool:
        with self._lock:
            return token is not None and time.time() < self._expiry.get(token, 0.0)

    def expire(self, token: str | None) -> None:
        with self._lock:
            if token in self._expiry:
                self._expiry[token] = 0.0

    def redeem(self, refresh_token: str | None) -> bool:
        """Use up a refresh token: True once per token, so a client replaying an old one is caught."""
        with self._lock:
            if refresh_token in self._refresh:
                self._refresh.discard(refresh_token)
                return True
            return False
