"""The Wootric API client: a token, one request at a time, pages of one stream between two instants."""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Iterator
from urllib.parse import urlsplit

import requests

from wootric_ingest import redaction
from wootric_ingest.config import ApiConfig
from wootric_ingest.streams import Stream

log = logging.getLogger(__name__)

PER_PAGE = 50
MAX_PAGE = 30


class WootricError(RuntimeError):
    """The API answered something we cannot go on from."""


class CredentialsRejected(WootricError):
    pass


class WootricClient:
    def __init__(self, api: ApiConfig):
        self.api = api
        parts = urlsplit(api.base_url)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.api_root = f"{self.origin}/api/v1" if parts.netloc.endswith((".eu", ".au")) else f"{self.origin}/v1"
        self.http = requests.Session()
        self.token: str | None = None
        self.requests_used = 0

    def authenticate(self) -> None:
        auth = self.api.auth
        body = ({"grant_type": "password", "username": auth.username, "password": auth.password}
                if auth.grant == "password" else
                {"grant_type": "client_credentials", "client_id": auth.client_id,
                 "client_secret": auth.client_secret})
        params = {"account_token": auth.account_token} if auth.account_token else None
        resp = self.http.post(f"{self.origin}/oauth/token", data=body, params=params,
                              timeout=self.api.timeout_seconds)
        self.requests_used += 1
        if resp.status_code in (400, 401):
            raise CredentialsRejected(f"Wootric rejected the credentials for {auth.principal}")
        resp.raise_for_status()
        self.token = resp.json()["access_token"]
        redaction.register(self.token)

    def get(self, stream: Stream, params: dict) -> list[dict]:
        if self.token is None:
            self.authenticate()
        resp = self.http.get(f"{self.api_root}/{stream.path}", params=params,
                             headers={"Authorization": f"Bearer {self.token}"}, timeout=self.api.timeout_seconds)
        self.requests_used += 1
        if resp.status_code != 200:
            raise WootricError(f"GET {stream.path} answered {resp.status_code}: {resp.text[:200]}")
        return resp.json()

    def pages(self, stream: Stream, since: datetime, until: datetime) -> Iterator[list[dict]]:
        f = stream.cursor_filter
        for page in range(1, MAX_PAGE + 1):
            records = self.get(stream, {
                f"{f}[gte]": int(since.timestamp()), f"{f}[lte]": int(until.timestamp()),
                "page": page, "per_page": PER_PAGE, "sort_key": stream.sort_key, "sort_order": "asc",
            })
            if records:
                yield records
            if len(records) < PER_PAGE:
                return
