"""A faithful Wootric API sandbox on loopback: tests, demos, chaos and benchmarks, no account needed."""

from .data import Dataset
from .options import Credentials, SandboxOptions
from .server import Sandbox

__all__ = ["Credentials", "Dataset", "Sandbox", "SandboxOptions"]
