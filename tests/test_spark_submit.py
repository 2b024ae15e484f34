"""The README's spark-submit command, run for real: `make dist`, then spark-submit with the wheel on
--py-files, against the sandbox, checked table by table and row by row."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

from sandbox import Sandbox, SandboxOptions

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def readme_command() -> tuple[dict[str, str], list[str]]:
    """The spark-submit command of the README's spark-submit section: its environment and its argv."""
    block = next(b for b in re.findall(r"```sh\n(.*?)```", README, flags=re.S) if "spark-submit" in b)
    line = next(line for line in block.replace("\\\n", " ").splitlines() if "spark-submit" in line)
    words = shlex.split(line)
    env = dict(w.split("=", 1) for w in words if re.match(r"^[A-Z_]+=", w))
    return env, [w for w in words if not re.match(r"^[A-Z_]+=", w)]


def test_the_readme_spark_submit_command_lands_the_sandbox_in_delta(tmp_path, spark, wheel):
    dist = wheel.parent
    env, argv = readme_command()
    assert f"dist/{wheel.name}" in argv, "the README names a wheel that make dist does not build"
    # Paths in the README are relative to the clone; the job runs from an empty folder, so its lakehouse
    # (./lakehouse in conf/local.yaml) lands there, and only the wheel can provide the package.
    argv = [
        str(dist / Path(a).name)
        if a.startswith("dist/")
        else str(REPO / a)
        if a.startswith((".venv/", "jobs/", "conf/"))
        else a
        for a in argv
    ]
    env = {k: str(REPO / v) for k, v in env.items()}
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    with Sandbox(SandboxOptions(end_users=120, responses=260, declines=30, seed=3)) as sandbox:
        process_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SPARK_HOME")}
        process_env.update(
            env,
            WOOTRIC_BASE_URL=sandbox.base_url,
            WOOTRIC_USERNAME=sandbox.credentials.username,
            WOOTRIC_PASSWORD=sandbox.credentials.password,
            WOOTRIC_PII_SALT="sandbox-demo-salt-not-a-secret",  # conf/local.yaml's personal data policy
        )
        result = subprocess.run(argv, cwd=run_dir, env=process_env, capture_output=True, text=True, timeout=900)
        expected = {
            stream: {str(i) for i in sandbox.dataset.ids(stream)} for stream in ("end_users", "responses", "declines")
        }
        password = sandbox.credentials.password

    assert result.returncode == 0, result.stderr[-4000:]
    output = result.stdout + result.stderr  # spark-submit merges the driver's stderr into its stdout
    package = next(line for line in output.splitlines() if "wootric-ingest" in line and "package at" in line)
    assert package.endswith(f"(package at {wheel}/wootric_ingest)"), package  # the wheel's code ran, not the clone's
    summary = result.stdout.splitlines()
    for stream, ids in expected.items():
        row = next(line.split() for line in summary if line.startswith(stream + " "))
        assert (row[1], row[3], row[-1]) == ("FULL", str(len(ids)), "ok")

    lake = run_dir / "lakehouse" / "raw" / "wootric"
    for stream, ids in expected.items():
        table = spark.read.format("delta").load(str(lake / f"wootric_{stream}"))
        landed = [r["id"] for r in table.select("id").collect()]
        assert sorted(landed) == sorted(ids), stream
        assert table.filter(table["_raw"].contains(password)).count() == 0
    assert password not in output
