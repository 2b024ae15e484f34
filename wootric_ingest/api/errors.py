"""What can go wrong talking to Wootric, as exceptions the job can tell apart.

Messages name the endpoint, stream or principal involved and never a password, token or URL query.
"""

from __future__ import annotations

from datetime import datetime, timezone


class WootricError(RuntimeError):
    """The API answered something we cannot go on from."""


class CredentialsRejected(WootricError):
    """The token endpoint refused the configured credentials; retrying cannot help."""

    def __init__(self, principal: str):
        super().__init__(f"Wootric rejected the credentials for {principal}")


class ApiError(WootricError):
    """A 4xx other than 401/429: our request is wrong (a bug or bad input), so we stop with the API's own words."""

    def __init__(self, endpoint: str, status: int, message: str):
        self.endpoint, self.status = endpoint, status
        super().__init__(f"{endpoint} answered HTTP {status}: {message}")


class GaveUp(WootricError):
    """Transient failures (5xx, timeouts, resets, 429s) went on for longer than the retry budget."""

    def __init__(self, endpoint: str, seconds: float, attempts: int, last: str):
        self.endpoint = endpoint
        super().__init__(
            f"{endpoint} kept failing for {seconds:.0f} s over {attempts} attempts (last: {last}); giving up"
        )


class CrowdedSecond(WootricError):
    """More records share one second than the API can page through (30 pages of 50 in each sort order).

    The cursor filter has one-second resolution, so nothing narrower than a second can be asked for:
    the rest of that second is unreachable, and we stop rather than silently truncate.
    """

    def __init__(self, stream_name: str, second: int, reached: int):
        self.stream_name, self.second, self.reached = stream_name, second, reached
        instant = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        super().__init__(
            f"{stream_name}: more records share the second {instant} (Unix {second}) than the API can page "
            f"through; reached {reached} of them in both sort orders and stopped instead of truncating"
        )


class Cancelled(WootricError):
    """The extraction was closed while this request was waiting; raised only inside worker threads."""


def api_message(body: object) -> str:
    """The human part of a Wootric error body: `errors[].message`, `error_description`, `error` or `message`."""
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            return "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors)
        for key in ("error_description", "error", "message"):
            if body.get(key):
                return str(body[key])
    return "no error message in the answer"
