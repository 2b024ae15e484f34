"""Where a Wootric account's API lives, from the configured base URL."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

_API_ROOT_PATH = {"wootric.eu": "/api/v1", "wootric.au": "/api/v1"}


@dataclass(frozen=True)
class Endpoints:
    api_root: str
    token_url: str


def endpoints(base_url: str) -> Endpoints:
    """The REST API root and the OAuth token URL for a base URL.

    - US `https://api.wootric.com` serves the API under `/v1/`;
    - EU `https://app.wootric.eu` and AU `https://app.wootric.au` serve it under `/api/v1/`;
    - a base URL that carries a path (e.g. `http://127.0.0.1:8765/api`) serves it under that path
      plus `/v1` (a path that already ends in `/v1` is used as it is);
    - the token URL is always `{origin}/oauth/token`, whatever the path.
    """
    parts = urlsplit(base_url.strip())
    origin = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    if not path:
        host = (parts.hostname or "").lower()
        path = next((p for domain, p in _API_ROOT_PATH.items() if host == domain or host.endswith("." + domain)), "")
        return Endpoints(f"{origin}{path or '/v1'}", f"{origin}/oauth/token")
    return Endpoints(f"{origin}{path if path.endswith('/v1') else path + '/v1'}", f"{origin}/oauth/token")
