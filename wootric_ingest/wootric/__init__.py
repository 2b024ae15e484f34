"""The Wootric REST API: authentication, rate limiting and pagination past the 30-page cap."""
from wootric_ingest.wootric.client import CredentialsRejected, WootricClient, WootricError

__all__ = ["CredentialsRejected", "WootricClient", "WootricError"]
