"""The sandbox in a process of its own (`python -m sandbox` on a free loopback port), for the benchmarks and the
chaos harness: its data set is never the caller's memory, and killing a job worker leaves it serving."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[1]


class SandboxProcess:
    """Started on construction, stopped by `close()` (or leaving its `with`). Every option is a flag of
    `python -m sandbox` (`rate_limit=100000` is `--rate-limit 100000`); `url` is its base URL once it listens,
    `ready_s` how long that took (mostly generating the data set)."""

    def __init__(self, workdir: Path, **options: object):
        ready = workdir / "sandbox.url"
        ready.unlink(missing_ok=True)
        flags = [part for name, value in options.items() for part in (f"--{name.replace('_', '-')}", str(value))]
        started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "--port", "0", "--ready-file", str(ready), *flags],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
        )
        while not ready.exists():
            if self.process.poll() is not None:
                raise RuntimeError(f"the sandbox exited with status {self.process.returncode}")
            time.sleep(0.1)
        self.url = ready.read_text().strip()
        self.ready_s = time.monotonic() - started

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def credentials(self) -> dict[str, str]:
        return self.get("credentials")

    def get(self, what: str) -> Any:
        """An admin endpoint's answer (`/_sandbox/{what}`)."""
        response = requests.get(f"{self.url}/_sandbox/{what}", timeout=30)
        response.raise_for_status()
        return response.json()

    def post(self, what: str, body: object) -> Any:
        response = requests.post(f"{self.url}/_sandbox/{what}", json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
