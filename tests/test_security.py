"""Security, pinned: TLS is always verified, credentials travel only in request bodies, the sandbox listens
on loopback only, and names from the config cannot escape the catalog root or break out of SQL quoting."""

from __future__ import annotations

import http.server
import json
import os
import re
import ssl
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import parse_qsl

import pyarrow.parquet as pq
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox import Sandbox, SandboxOptions
from sandbox.process import SandboxProcess
from wootric_ingest.api import GaveUp, RetryPolicy, WootricClient
from wootric_ingest.config import ConfigError, parse_config
from wootric_ingest.lake.layout import Layout
from wootric_ingest.streams import STREAMS

from conftest import config_dict, table_path

PACKAGE = Path(__file__).resolve().parents[1] / "wootric_ingest"
FAST_GIVE_UP = RetryPolicy(first_delay=0.01, max_delay=0.05, give_up_after=0.5)


# ------------------------------------------------------------------------------------------------ TLS


def test_no_code_turns_certificate_verification_off():
    disabling = re.compile(
        r"verify\s*=\s*False|CERT_NONE|check_hostname\s*=\s*False|disable_warnings|"
        r"_create_unverified_context|\.verify\s*=\s*False"
    )
    offenders = [
        f"{path.relative_to(PACKAGE)}:{n}"
        for path in PACKAGE.rglob("*.py")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if disabling.search(line)
    ]
    assert offenders == []


class _CountingHandler(http.server.BaseHTTPRequestHandler):
    requests_seen = 0

    def do_POST(self):
        type(self).requests_seen += 1
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def https_server_with_a_self_signed_certificate(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CountingHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    _CountingHandler.requests_seen = 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_server_whose_certificate_does_not_verify_never_receives_the_credentials(
    https_server_with_a_self_signed_certificate, make_config
):
    config = make_config(
        source={
            "api": {
                "base_url": https_server_with_a_self_signed_certificate,
                "auth": {"username": "ana@example.com", "password": "tls-secret-pw"},
            }
        }
    )
    client = WootricClient(config.api, retry=FAST_GIVE_UP)
    with pytest.raises(GaveUp, match=r"POST /oauth/token kept failing .*SSLError"):
        client.authenticate()
    client.close()
    assert _CountingHandler.requests_seen == 0, "a request got through an unverified TLS connection"


# ------------------------------------------------------------------------------- credentials on the wire


@pytest.fixture
def wire(monkeypatch):
    """Every request the client puts on the wire: method, URL (path and query), headers, body."""
    sent = []
    original = requests.Session.send

    def record(session, prepared, **kwargs):
        sent.append(prepared)
        return original(session, prepared, **kwargs)

    monkeypatch.setattr(requests.Session, "send", record)
    return sent


@pytest.mark.parametrize("grant", ["password", "client_credentials"])
def test_credentials_and_tokens_travel_only_in_bodies_and_the_authorization_header(grant, wire, make_config):
    with Sandbox(SandboxOptions(end_users=60, responses=120, declines=10, seed=3, token_ttl=2)) as sb:
        creds = sb.credentials
        auth = (
            {"username": creds.username, "password": creds.password}
            if grant == "password"
            else {"client_id": creds.client_id, "client_secret": creds.client_secret}
        )
        config = make_config(source={"api": {"base_url": sb.base_url, "auth": auth}})
        sb.faults.script("expire_token", 1)  # a 401 mid-walk: the token is renewed
        with WootricClient(config.api) as client:
            client.authenticate()
            records = [
                r for batch in client.pages(STREAMS["responses"], config.start_date, _now()) for r in batch.records
            ]
        assert len(records) == 120

    secrets = [v for v in auth.values()]
    token_posts = [r for r in wire if r.method == "POST"]
    lists = [r for r in wire if r.method == "GET"]
    assert token_posts and lists
    tokens = {r.headers["Authorization"].removeprefix("Bearer ") for r in lists}
    issued = {t for t in tokens if t}
    assert issued, "list requests carried no bearer token"
    for request in wire:
        for secret in [*secrets, *issued]:
            assert secret not in request.url, f"a credential or token in the URL of {request.method}"
    for request in token_posts:
        assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert "Authorization" not in request.headers
    forms = [dict(parse_qsl(request.body)) for request in token_posts]
    assert any(set(auth.items()) <= set(form.items()) for form in forms)
    for request in lists:
        assert request.body is None


def _now():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


# ------------------------------------------------------------------------------------------- loopback


def test_the_sandbox_listens_on_loopback_only():
    with Sandbox(SandboxOptions(end_users=5, responses=5, declines=1)) as sb:
        assert sb._server.socket.getsockname()[0] == "127.0.0.1"
        assert sb.base_url.startswith("http://127.0.0.1:")
    assert "host" not in SandboxOptions.__dataclass_fields__ and "bind" not in SandboxOptions.__dataclass_fields__


def test_the_out_of_process_sandbox_listens_on_loopback_only(tmp_path):
    with SandboxProcess(tmp_path, end_users=5, responses=5, declines=1) as sandbox:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", sandbox.url)
        port = int(sandbox.url.rsplit(":", 1)[1])
        sockets = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True).stdout
        assert [line.split()[3] for line in sockets.splitlines()] == [f"127.0.0.1:{port}"]
        assert len(sandbox.get("records/responses")) == 5
    assert sandbox.process.returncode is not None  # stopped on leaving
    help_text = subprocess.run([sys.executable, "-m", "sandbox", "--help"], capture_output=True, text=True).stdout
    assert "--host" not in help_text and "--bind" not in help_text


# ------------------------------------------------------------------------------------- names from config

SAFE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@pytest.mark.parametrize(
    "key, value",
    [
        ("table", "responses\n"),
        ("layer", "raw\n"),
        ("table", "re\x00sponses"),
        ("table", "rеsponses"),  # a Cyrillic 'е'
        ("folder", "/etc"),
        ("table", "responses`; DROP TABLE x; --"),
    ],
)
def test_names_with_control_characters_lookalikes_or_separators_are_refused(key, value):
    data = config_dict()
    data["streams"]["responses"][key] = value
    with pytest.raises(ConfigError, match=f"streams.responses.{key}: .* is not a safe name"):
        parse_config(data, environ={})


@pytest.mark.parametrize("name", ["main`; DROP SCHEMA raw; --", "main\n", "a.b"])
def test_the_metastore_catalog_name_is_a_safe_identifier(name):
    with pytest.raises(ConfigError, match="catalog.name: .* is not a safe name"):
        parse_config(config_dict(catalog={"name": name, "metastore": True}), environ={})


names = st.text(alphabet=st.characters(codec="utf-8"), min_size=0, max_size=12) | st.sampled_from(
    ["..", ".", "raw/..", "a b", "x'", "`", "a;b", "ok\n", "\x00", "_", "raw", "wootric"]
)


@settings(max_examples=300, deadline=None)
@given(layer=names, folder=names, table=names, prefix=names, catalog=names)
def test_any_accepted_config_writes_only_below_its_root_under_quoted_names(layer, folder, table, prefix, catalog):
    data = config_dict(catalog={"root": "/lake", "table_prefix": prefix, "name": catalog, "metastore": True})
    data["streams"] = {"responses": {"layer": layer, "folder": folder, "table": table}}
    try:
        config = parse_config(data, environ={})
    except ConfigError:
        return
    stream = config.stream("responses")
    for part in (stream.layer, stream.table, config.catalog.table_prefix + stream.table):
        assert SAFE.fullmatch(part)
    assert stream.folder == "" or SAFE.fullmatch(stream.folder)
    layout = Layout(config.catalog)
    path = layout.table_path(stream)
    assert os.path.normpath(path) == path and path.startswith("/lake/")
    name = layout.metastore_name(stream)
    assert name is not None and name.count("`") == 2 * len(name.split("."))


# ------------------------------------------------------------------------- secrets through a whole run


def test_a_secret_inside_api_data_or_an_api_error_is_masked_in_tables_history_and_spark_plans(
    spark, make_config, monkeypatch
):
    from sandbox import server
    from wootric_ingest import redaction
    from wootric_ingest.run.job import run

    with Sandbox(SandboxOptions(end_users=30, responses=60, declines=5, seed=61)) as sb:
        password = sb.credentials.password
        config = make_config(sb)  # registers the password for redaction, as loading any config does
        leaked = sb.dataset.records("responses")[0]["id"]
        render = sb.dataset._render

        def careless_render(stream, rows):  # a customer pasted the account password into a comment
            rendered = render(stream, rows)
            for r in rendered:
                if stream == "responses" and r["id"] == leaked:
                    r["text"] = f"my login is {password}, please call"
                    r["end_user"]["properties"][f"note {password}"] = [password, 7]
            return rendered

        sb.dataset._render = careless_render
        echoing = server._list_query

        def echoing_list_query(stream, params, options):  # an API error that quotes the password back
            if stream == "declines":
                raise server._BadRequest(f"page (for {password})")
            return echoing(stream, params, options)

        monkeypatch.setattr(server, "_list_query", echoing_list_query)
        results = {r.stream_name: r for r in run(config, spark)}

    assert results["responses"].status == "ok" and results["declines"].status == "failed"
    assert "GET /v1/declines" in results["declines"].error and password not in results["declines"].error
    root = config.catalog.root
    row = spark.read.format("delta").load(table_path(config, "responses")).where(f"id = '{leaked}'").first()
    assert row["text"] == f"my login is {redaction.MASK}, please call"
    raw = json.loads(row["_raw"])
    assert raw["end_user"]["properties"][f"note {redaction.MASK}"] == [redaction.MASK, 7]
    history = spark.read.format("delta").load(f"{root}/_wootric_ingest/runs").collect()
    assert all(password not in json.dumps(r.asDict(), default=str) for r in history)

    for path in Path(root).rglob("*"):
        if path.is_file() and path.suffix in (".json", ".crc", ".lock", ".beat"):
            assert password not in path.read_text(errors="replace"), path
        if path.is_file() and path.suffix == ".parquet":  # table files, compressed: read what they hold
            assert password not in json.dumps(pq.read_table(path).to_pylist(), default=str), path
    store = spark._jsparkSession.sharedState().statusStore()
    executions = store.executionsList()
    plans = [
        executions.apply(i).physicalPlanDescription() + executions.apply(i).description()
        for i in range(executions.size())
    ]
    assert plans and not [p for p in plans if password in p]
    assert not [kv for kv in spark.sparkContext.getConf().getAll() if password in kv[1]]
