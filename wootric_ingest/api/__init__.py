"""The Wootric REST API: authentication, rate limiting and pagination past the 30-page cap."""

from wootric_ingest.api.client import Batch, WootricClient
from wootric_ingest.api.errors import ApiError, CredentialsRejected, CrowdedSecond, GaveUp, WootricError
from wootric_ingest.api.regions import endpoints
from wootric_ingest.api.transport import RetryPolicy

__all__ = [
    "ApiError",
    "Batch",
    "CredentialsRejected",
    "CrowdedSecond",
    "GaveUp",
    "RetryPolicy",
    "WootricClient",
    "WootricError",
    "endpoints",
]
