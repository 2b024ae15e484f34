"""What `make dist` ships to clusters: the job's package and nothing else (no sandbox, no tests), with the
files a local session needs; and `check`, the client and the docs run where pyspark cannot be imported."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import yaml

from sandbox import Sandbox, SandboxOptions

from conftest import config_dict

REPO = Path(__file__).resolve().parents[1]


def test_the_wheel_ships_the_job_only(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    packaged = {n.split("/")[0] for n in names if not n.startswith("wootric_ingest-")}
    assert packaged == {"wootric_ingest"}
    assert not [n for n in names if "sandbox" in n or n.startswith("tests/")]
    sources = {str(p.relative_to(REPO)) for p in (REPO / "wootric_ingest").rglob("*.py")}
    assert {n for n in names if n.endswith(".py")} == sources
    assert "wootric_ingest/lake/log4j2.properties" in names


WITHOUT_PYSPARK = """
import sys
sys.modules["pyspark"] = None  # any import of pyspark now fails
sys.modules["delta"] = None
from wootric_ingest.cli import main
status = main(sys.argv[1:])
assert not [m for m in sys.modules if m.startswith(("pyspark.", "delta.", "py4j"))]
sys.exit(status)
"""


def test_check_docs_and_discover_run_without_pyspark(tmp_path):
    with Sandbox(SandboxOptions(end_users=5, responses=7, declines=3, seed=2)) as sb:
        data = config_dict()
        data["source"]["api"] = {
            "base_url": sb.base_url,
            "auth": {"username": sb.credentials.username, "password": sb.credentials.password},
        }
        config = tmp_path / "source.yaml"
        config.write_text(yaml.safe_dump(data, sort_keys=False))

        def cli(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                [sys.executable, "-c", WITHOUT_PYSPARK, *args], cwd=REPO, capture_output=True, text=True, timeout=120
            )

        check = cli("check", "--config", str(config))
    assert check.returncode == 0, check.stderr
    assert check.stdout.splitlines()[-4:] == [
        "end_users: OK (5 records on the first page since 2024-01-01T00:00:00Z)",
        "responses: OK (7 records on the first page since 2024-01-01T00:00:00Z)",
        "declines: OK (3 records on the first page since 2024-01-01T00:00:00Z)",
        "OK",
    ]
    assert cli("docs").stdout.startswith("## Tables written")
    assert '"stream": "responses"' in cli("discover").stdout
