"""The command line without Spark: help, usage errors, config errors, `check`, `discover`, Databricks secrets."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import yaml

from sandbox import Sandbox, SandboxOptions
from tests.conftest import config_dict
from wootric_ingest.cli import main
from wootric_ingest.streams import STREAMS


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(SandboxOptions(end_users=600, responses=1200, declines=120, seed=11)) as sb:
        yield sb


def write_config(tmp_path: Path, data: dict) -> str:
    path = tmp_path / "source.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def sandbox_config(
    tmp_path: Path, sandbox, *, password: str = "${WOOTRIC_PASSWORD}", base_url: str | None = None, **sections
) -> str:
    data = config_dict(**sections)
    data["source"]["api"] = {
        "requests_per_minute": 6000,
        "base_url": base_url or sandbox.base_url,
        "auth": {"username": sandbox.credentials.username, "password": password},
    }
    data["catalog"]["root"] = str(tmp_path / "lakehouse")
    return write_config(tmp_path, data)


def test_help_lists_every_command_with_examples(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("run", "check", "plan", "discover", "docs"):
        assert f"    {command} " in out
    assert "examples:\n  wootric-ingest check --config conf/example.yaml" in out
    assert "{{secrets/<scope>/<key>}}" in out


def test_bad_usage_exits_2_with_one_line(capsys):
    assert main(["sync", "--config", "x.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'sync'" in err and "see wootric-ingest --help" in err
    assert main(["run"]) == 2
    assert "the following arguments are required: --config" in capsys.readouterr().err


def test_an_invalid_config_exits_2_listing_every_problem_without_secrets(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WOOTRIC_PASSWORD", "pw-never-printed-7731")
    data = config_dict(source={"description": "d" * 141})
    data["source"]["api"]["auth"]["password"] = "${WOOTRIC_PASSWORD}"
    data["streams"]["end_users"]["sync_typ"] = "FULL_TABLE"
    path = write_config(tmp_path, data)

    assert main(["check", "--config", path]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines()[:3] == [
        f"{path} has 2 problem(s):",
        "  - source.description: is 141 characters; at most 140 allowed",
        "  - streams.end_users.sync_typ: unknown key (did you mean 'sync_type'?); "
        "allowed: deletes, folder, layer, lookback_days, sync_type, table",
    ]
    assert "pw-never-printed-7731" not in captured.out + captured.err


def test_check_obtains_a_token_and_reads_one_page_per_stream(tmp_path, sandbox, capsys, monkeypatch):
    monkeypatch.setenv("WOOTRIC_PASSWORD", sandbox.credentials.password)
    path = sandbox_config(tmp_path, sandbox)
    sandbox.stats.reset()

    assert main(["check", "--config", path]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        f"config {path}: OK (3 streams: end_users, responses, declines)",
        f"token: OK (password grant for demo@example.com at {sandbox.base_url})",
        "end_users: OK (50 records on the first page since 2024-01-01T00:00:00Z)",
        "responses: OK (50 records on the first page since 2024-01-01T00:00:00Z)",
        "declines: OK (50 records on the first page since 2024-01-01T00:00:00Z)",
        "OK",
    ]
    assert sandbox.credentials.password not in captured.out + captured.err
    assert not (tmp_path / "lakehouse").exists()  # check writes nothing
    served = sandbox.stats.snapshot()
    assert served["token_grants"] == 1
    assert all(served["by_endpoint"][stream] >= 1 for stream in ("end_users", "responses", "declines"))
    assert served["records_served"] < (600 + 1200 + 120) / 4  # a first page each, not the streams


def test_check_with_a_wrong_password_says_what_to_fix_and_never_prints_it(tmp_path, sandbox, capsys, monkeypatch):
    monkeypatch.setenv("WOOTRIC_PASSWORD", "wrong-password-5521")
    path = sandbox_config(tmp_path, sandbox)

    assert main(["check", "--config", path, "--log-level", "DEBUG"]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines()[1:] == [
        "token: FAILED: Wootric rejected the credentials for demo@example.com",
        "  check username and password, and that base_url is your account's region (US https://api.wootric.com, "
        "EU https://app.wootric.eu, AU https://app.wootric.au)",
    ]
    assert captured.err.splitlines()[-1] == f"check failed: no token for demo@example.com at {sandbox.base_url}"
    assert "wrong-password-5521" not in captured.out + captured.err


def test_check_names_each_stream_the_api_does_not_serve(tmp_path, sandbox, capsys, monkeypatch):
    monkeypatch.setenv("WOOTRIC_PASSWORD", sandbox.credentials.password)
    path = sandbox_config(tmp_path, sandbox, base_url=f"{sandbox.base_url}/wrong-region")

    assert main(["check", "--config", path, "--log-level", "ERROR"]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[1].startswith("token: OK")
    assert [line.split(":")[0] for line in lines[2:]] == ["end_users", "responses", "declines"]
    assert all(": FAILED: " in line and "404" in line for line in lines[2:])
    assert captured.err.splitlines()[-1] == "check failed: 3 of 3 streams could not be read"


def test_on_databricks_secret_references_are_read_with_dbutils(tmp_path, sandbox, capsys, monkeypatch):
    reads = []

    class Secrets:
        def get(self, scope: str, key: str) -> str:
            reads.append((scope, key))
            return {("wootric", "password"): sandbox.credentials.password}[(scope, key)]

    shell = types.SimpleNamespace(user_ns={"dbutils": types.SimpleNamespace(secrets=Secrets())})
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    path = sandbox_config(tmp_path, sandbox, password="{{secrets/wootric/password}}")

    assert main(["check", "--config", path]) == 0
    captured = capsys.readouterr()
    assert reads == [("wootric", "password")]
    assert captured.out.splitlines()[-1] == "OK"
    assert sandbox.credentials.password not in captured.out + captured.err


def test_off_databricks_a_secret_reference_is_a_config_error(tmp_path, sandbox, capsys, monkeypatch):
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    path = sandbox_config(tmp_path, sandbox, password="{{secrets/wootric/password}}")
    assert main(["check", "--config", path]) == 2
    assert (
        "{{secrets/wootric/password}} is a Databricks secret and can only be read on Databricks"
        in capsys.readouterr().err
    )


def test_streams_that_are_not_configured_are_refused(tmp_path, capsys):
    data = config_dict()
    del data["streams"]["declines"]
    path = write_config(tmp_path, data)
    assert main(["plan", "--config", path, "--streams", "responses,declines"]) == 2
    assert capsys.readouterr().err.strip() == (
        "wootric-ingest: --streams: declines is not a configured stream; configured: end_users, responses"
    )


def test_called_as_a_process_entry_point_a_failure_raises_system_exit(tmp_path, monkeypatch):
    """A Databricks wheel task ignores a returned status, so `main()` without argv must raise on failure."""
    monkeypatch.setattr(sys, "argv", ["wootric-ingest", "check", "--config", str(tmp_path / "missing.yaml")])
    with pytest.raises(SystemExit) as caught:
        main()
    assert caught.value.code == 2
    monkeypatch.setattr(sys, "argv", ["wootric-ingest", "discover"])
    assert main() == 0


def test_discover_prints_every_stream_with_key_cursor_and_schema(capsys):
    assert main(["discover"]) == 0
    catalog = json.loads(capsys.readouterr().out)
    assert [s["stream"] for s in catalog["streams"]] == list(STREAMS)
    for entry in catalog["streams"]:
        stream = STREAMS[entry["stream"]]
        assert entry["key_properties"] == [stream.key]
        assert entry["replication_key"] == stream.cursor_field
        assert entry["cursor_filter"] == stream.cursor_filter
        assert list(entry["schema"]["properties"]) == [f.name for f in stream.table_fields]
    responses = catalog["streams"][1]["schema"]["properties"]
    assert responses["score"] == {"type": ["null", "integer"], "description": "Numeric score provided in the response"}
    assert responses["created_at"]["format"] == "date-time"
    assert responses["end_user"]["properties"]["email"] == {
        "type": ["null", "string"],
        "description": "Email address of the responding user",
    }
    end_users = catalog["streams"][0]["schema"]["properties"]
    assert end_users["settings"]["properties"]["web_nps"]["type"] == ["null", "boolean"]
    assert (
        end_users["last_response"]["properties"]["survey"]["properties"]["channel"]["description"]
        == "Survey channel used"
    )
