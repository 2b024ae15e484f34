"""OAuth tokens for the Wootric API: obtained once, renewed before they expire and after a 401.

Tokens live two hours and a long sync outlives several, so a token is renewed when 90% of its life
has passed (at most five minutes early), and once more whenever the API answers 401 to it. Renewal
uses the refresh token when the grant gave one (password grant) and falls back to a new grant with
the credentials. Credentials go in the form body only; `account_token` picks the account on the token
URL. Every token is registered for redaction the moment it arrives.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from wootric_ingest import redaction
from wootric_ingest.api.errors import ApiError, CredentialsRejected, api_message
from wootric_ingest.api.stats import Stats
from wootric_ingest.api.transport import Answer, Transport
from wootric_ingest.config import Auth

log = logging.getLogger(__name__)

ENDPOINT = "POST /oauth/token"
_REJECTED_ERRORS = ("invalid_grant", "invalid_client")


class TokenProvider:
    """The current access token of one client, shared by its threads (one renewal at a time)."""

    def __init__(
        self, auth: Auth, token_url: str, transport: Transport, stats: Stats, *, clock: Callable[[], float] = time.time
    ):
        self._auth = auth
        self._token_url = token_url
        self._transport = transport
        self._stats = stats
        self._clock = clock
        self._lock = threading.Lock()
        self._access: str | None = None
        self._refresh: str | None = None
        self._renew_at = 0.0

    def bearer(self, cancel: threading.Event) -> str:
        """A token that is not about to expire."""
        with self._lock:
            if self._access is None or self._clock() >= self._renew_at:
                return self._obtain(cancel)
            return self._access

    def rejected(self, token: str, cancel: threading.Event) -> None:
        """The API answered 401 to `token`: renew it, unless another thread already has."""
        with self._lock:
            if token == self._access:
                log.info("the access token was refused; renewing it")
                self._obtain(cancel)

    def _obtain(self, cancel: threading.Event) -> str:
        """A new token (also kept for the next callers)."""
        renewing = self._access is not None
        body = self._refreshed(cancel) if self._refresh else None
        if body is None:
            body = self._grant(self._credentials_form(), cancel)
        access = str(body["access_token"])
        self._access, self._refresh = access, body.get("refresh_token")
        redaction.register(self._access)
        redaction.register(self._refresh)
        lifetime = float(body.get("expires_in") or 7200)
        issued = self._clock()
        if isinstance(body.get("created_at"), (int, float)):
            issued = min(issued, body["created_at"])
        self._renew_at = issued + lifetime - min(300.0, 0.1 * lifetime)
        if renewing:
            self._stats.add(token_refreshes=1)
        return access

    def _credentials_form(self) -> dict[str, str]:
        auth = self._auth
        if auth.grant == "password":
            return {"grant_type": "password", "username": auth.username or "", "password": auth.password or ""}
        return {
            "grant_type": "client_credentials",
            "client_id": auth.client_id or "",
            "client_secret": auth.client_secret or "",
        }

    def _refreshed(self, cancel: threading.Event) -> dict | None:
        """The token body for the refresh token, or None when it is refused (the caller then grants afresh)."""
        answer = self._send({"grant_type": "refresh_token", "refresh_token": self._refresh or ""}, cancel)
        if answer.status == 200 and answer.body.get("access_token"):
            return answer.body
        if answer.status in (400, 401):
            log.info("the refresh token was refused; signing in again")
            return None
        raise ApiError(ENDPOINT, answer.status, api_message(answer.body))

    def _grant(self, form: dict[str, str], cancel: threading.Event) -> dict:
        """The token body for the credentials."""
        answer = self._send(form, cancel)
        if answer.status == 200 and answer.body.get("access_token"):
            return answer.body
        if _rejected(answer):
            raise CredentialsRejected(self._auth.principal)
        raise ApiError(ENDPOINT, answer.status, api_message(answer.body))

    def _send(self, form: dict[str, str], cancel: threading.Event) -> Answer:
        params = {"account_token": self._auth.account_token} if self._auth.account_token else None
        return self._transport.send(
            "POST", self._token_url, endpoint=ENDPOINT, expect=dict, data=form, params=params, cancel=cancel
        )


def _rejected(answer: Answer) -> bool:
    error = answer.body.get("error") if isinstance(answer.body, dict) else None
    return answer.status == 401 or (answer.status == 400 and error in _REJECTED_ERRORS)
