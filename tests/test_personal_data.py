"""The personal data policy end to end, in both table modes, through `main()` against the sandbox.

The sandbox gets a recognisable person, alice: `Alice@Example.com ` (as sent: capitals, a trailing space), a phone
number, a comment-free response sent from an IP address, custom properties holding another IP, another phone number
and her name, and a response without an id (rejected, with her email, IP and end-user id in it). Every response
names its user's email (`end_user.email`), as the product's field table says. The run keeps its staging (so it is
scanned too); then every file under the root and every file of the tables (managed tables live in the warehouse),
Parquet decoded as well as raw bytes, and everything printed and logged, are searched for every original value a
hashed or dropped field had in the whole data set: none is anywhere, while a custom property outside the policy is
found (the scan can find things). The joins across tables hold on the hashed values. `forget` removes alice from
every table, the rejected table and staging, leaves every other row as it was, records the erasure by her hash, and
changes no plan; a policy change does.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from sandbox import Sandbox, SandboxOptions
from tests.conftest import config_dict
from wootric_ingest.cli import main
from wootric_ingest.config import load_config
from wootric_ingest.lake.lakehouse import Lakehouse, pii_labels, table_properties
from wootric_ingest.lake.staging import StagingArea
from wootric_ingest.lake.tables import StreamTable
from wootric_ingest.privacy import Policy
from wootric_ingest.streams import STREAMS as STREAMS_BY_NAME

SALT = "pepper-for-tests-0123456789"
ALICE_EMAIL = "Alice@Example.com "
ALICE_PHONE = "+1 415-555-0199"
ALICE_IP = "198.51.100.23"
PROPERTY_IP = "203.0.113.9"
PROPERTY_PHONE = "+44 20 7946 0958"
ALICE_NAME = "Alice Liddell"
COLOUR = "ultramarine-canary"  # a custom property outside the policy: lands as sent
POLICY = {"hash": ["email", "phone_number", "external_id"], "drop": ["ip_address", "last_ip", "properties.name"]}
STREAMS = ("end_users", "responses", "declines")


def digest(text: str) -> str:
    return hmac.new(SALT.encode(), text.encode(), hashlib.sha256).hexdigest()


@pytest.fixture
def alice_sandbox():
    """A sandbox with alice in it; `originals` are the values of every hashed or dropped field it serves."""
    with Sandbox(SandboxOptions(end_users=12, responses=40, declines=8, seed=11)) as sb:
        data = sb.dataset
        users, responses = data._rows["end_users"], data._rows["responses"]
        alice_id = Counter(r["end_user_id"] for r in responses.values()).most_common(1)[0][0]
        alice = users[alice_id]
        properties = {
            **alice["properties"],
            "name": ALICE_NAME,
            "last_ip": PROPERTY_IP,
            "phone_number": PROPERTY_PHONE,
            "favourite_colour": COLOUR,
        }
        alice.update(email=ALICE_EMAIL, phone_number=ALICE_PHONE, properties=properties)
        hers = sorted(rid for rid, r in responses.items() if r["end_user_id"] == alice_id)
        for rid in hers:
            responses[rid]["end_user"] = {"properties": properties}
        responses[hers[0]].update(text=None, ip_address=ALICE_IP)
        for stream in STREAMS:
            data._changed(stream)
        render = data._render

        def with_emails(stream, rows):
            rendered = render(stream, rows)
            if stream == "responses":
                for record in rendered:
                    record["end_user"]["email"] = users[record["end_user_id"]]["email"]
                    if record["id"] == hers[1]:
                        del record["id"]  # rejected: no usable id
            return rendered

        data._render = with_emails
        sb.alice_id, sb.rejected_id = str(alice_id), hers[1]
        originals = {ALICE_EMAIL, ALICE_EMAIL.strip().lower(), PROPERTY_IP, PROPERTY_PHONE, ALICE_NAME}
        for user in users.values():
            originals |= {user["email"], user["phone_number"], user["external_id"], user["properties"]["name"]}
        for stream in ("responses", "declines"):
            originals |= {r["ip_address"] for r in data._rows[stream].values()}
        sb.originals = sorted(v for v in originals - {None} if len(v) >= 6) + [SALT]
        yield sb


def write_config(path: Path, sandbox, tables: str, pii: dict) -> Path:
    data = config_dict(catalog={"root": str(path.parent / "lakehouse"), "table_prefix": "wootric_"})
    data["source"]["api"] = {
        "requests_per_minute": 6000,
        "base_url": sandbox.base_url,
        "auth": {"username": sandbox.credentials.username, "password": sandbox.credentials.password},
    }
    data["source"]["pii"] = pii
    if tables == "managed":
        own = path.parent.name[-8:].replace("-", "_") + uuid.uuid4().hex[:6]
        data["catalog"].update(tables="managed", job_schema=f"jobs_{own}")
        for stream in data["streams"].values():
            stream["layer"] = f"{stream['layer']}_{own}"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def table_folders(spark, house: Lakehouse) -> list[Path]:
    """Where every table's files are: under the root in path mode, in the warehouse when managed."""
    tables = [house.table(s) for s in house.config.streams] + [house.runs.table, house.rejected.table]
    folders = [Path(house.layout.root)]
    for table in tables:
        if table.managed and table.exists():
            location = spark.sql(f"DESCRIBE DETAIL {table.sql}").first()["location"]
            folders.append(Path(location.removeprefix("file:")))
    return folders


def scan(folders: list[Path], needles: list[str]) -> dict[str, list[str]]:
    """Per needle, the files holding it: raw bytes (as written and JSON-escaped), and a Parquet file's decoded
    values too (compression can hide a string from a byte search)."""
    found: dict[str, list[str]] = {}
    forms = {n: (n.encode(), json.dumps(n)[1:-1].encode()) for n in needles}
    for folder in folders:
        for file in (f for f in folder.rglob("*") if f.is_file()):
            content = file.read_bytes()
            if content[:4] == b"PAR1":
                decoded = json.dumps(pq.read_table(file).to_pylist(), default=str, ensure_ascii=False)
                content += decoded.encode()
            for needle, encodings in forms.items():
                if any(e in content for e in encodings):
                    found.setdefault(needle, []).append(str(file))
    return found


def test_hashed_and_dropped_values_are_nowhere_joins_hold_and_forget_erases_a_person(
    spark, alice_sandbox, table_mode, tmp_path, capfd, caplog, monkeypatch
):
    sb = alice_sandbox
    monkeypatch.setenv("WOOTRIC_PII_SALT", SALT)
    config_file = write_config(tmp_path / "source.yaml", sb, table_mode, {**POLICY, "salt": "${WOOTRIC_PII_SALT}"})
    config = load_config(config_file)
    house = Lakehouse(config, spark)

    with caplog.at_level(logging.DEBUG, logger="wootric_ingest"), monkeypatch.context() as kept:
        kept.setattr(StagingArea, "cleanup", lambda self: None)  # keep the staging, to scan it
        assert main(["run", "--config", str(config_file), "--log-level", "DEBUG"]) == 0
    ran = capfd.readouterr()
    staged = {s: house.staged_runs(s) for s in STREAMS}
    assert all(len(runs) == 1 for runs in staged.values()), staged

    # Nothing of a hashed or dropped field is anywhere; a value outside the policy is found.
    logged = "\n".join(r.getMessage() for r in caplog.records) + ran.out + ran.err
    folders = table_folders(spark, house)
    assert scan(folders, sb.originals) == {}
    assert [n for n in sb.originals if n in logged] == []
    colour = scan(folders, [COLOUR])[COLOUR]  # in staged parts (pyarrow) and table files (Spark) alike
    assert any("/staging/" in f for f in colour) and any(
        "/staging/" not in f and f.endswith(".parquet") for f in colour
    )

    rows = {s: {r["id"]: r for r in house.table(config.stream(s)).read().collect()} for s in STREAMS}
    alice = rows["end_users"][sb.alice_id]
    assert (alice["email"], alice["phone_number"]) == (digest("alice@example.com"), digest(ALICE_PHONE))
    assert alice["properties"]["name"] is None and alice["properties"]["role"] is not None
    raw = json.loads(alice["_raw"])
    assert raw["properties"]["last_ip"] is None and raw["properties"]["name"] is None
    assert raw["properties"]["phone_number"] == digest(PROPERTY_PHONE)
    assert raw["properties"]["favourite_colour"] == COLOUR
    comment_free = next(r for r in rows["responses"].values() if r["end_user_id"] == sb.alice_id and r["text"] is None)
    assert comment_free["ip_address"] is None and json.loads(comment_free["_raw"])["ip_address"] is None
    assert json.loads(comment_free["end_user"]["properties"])["name"] is None
    rejected = house.rejected.table.read().collect()
    assert len(rejected) == 1 and json.loads(rejected[0]["record"])["end_user"]["email"] == digest("alice@example.com")

    # Joins hold on the hashes: every response's end_user.email finds its own end user.
    by_email = {u["email"]: u["id"] for u in rows["end_users"].values() if u["email"]}
    with_email = [r for r in rows["responses"].values() if r["end_user"]["email"]]
    assert len(with_email) > 20
    assert all(by_email[r["end_user"]["email"]] == r["end_user_id"] for r in with_email)

    # The catalog says what the policy did; the commit records its fingerprint, never the salt.
    table = house.table(config.stream("responses"))
    comments = {f.name: f.metadata.get("comment", "") for f in table.read().schema.fields}
    assert comments["ip_address"].endswith(" (dropped)") and comments["_raw"].endswith(" (dropped, hashed)")
    email_comment = table.read().schema["end_user"].dataType["email"].metadata["comment"]
    assert email_comment == "Email address of the responding user (hashed)"
    assert table.commits()[0].metadata["pii"] == config.pii.fingerprint

    # forget: alice (as she might be typed) and an id nobody has.
    forget = ["forget", "--config", str(config_file), "--email", " ALICE@example.COM", "--end-user-id", "no-1"]
    assert main([*forget, "--vacuum"]) == 0
    forgot = capfd.readouterr().out.splitlines()
    after = {s: {r["id"]: r for r in house.table(config.stream(s)).read().collect()} for s in STREAMS}
    for stream in STREAMS:
        hers = {
            i for i, r in rows[stream].items() if sb.alice_id == r["id" if stream == "end_users" else "end_user_id"]
        }
        assert stream == "declines" or hers
        assert after[stream] == {i: r for i, r in rows[stream].items() if i not in hers}
        removed = f"{stream}: {len(hers)} rows removed in version "
        assert any(line.startswith(removed) for line in forgot) or not hers, forgot
    assert house.rejected.table.read().count() == 0
    assert f"not found: the person with hash {digest('no-1')} is in no table (nothing to erase)" in forgot
    assert all(house.staged_runs(s) == set() for s in ("end_users", "responses"))
    assert any("older versions hold them until " in line for line in forgot)
    assert forgot[-1].startswith("vacuumed 4 tables: files unused for more than 30 days are gone; ")
    history = house.runs.table.read().where("sync_mode = 'FORGET'").collect()
    assert {r["stream"] for r in history} == {"end_users", "responses", "declines", "rejected"}
    assert all(digest("alice@example.com") in r["sync_reason"] for r in history)
    assert scan(table_folders(spark, house), sb.originals) == {}

    # The erasure changes no plan; a policy change plans a full sync, and says why.
    assert main(["plan", "--config", str(config_file)]) == 0
    planned = [line for line in capfd.readouterr().out.splitlines() if line.startswith(STREAMS)]
    assert planned[0].startswith("end_users: INCREMENTAL sync, bookmark ")
    changed = tmp_path / "changed.yaml"
    changed.write_text(config_file.read_text().replace("last_ip", "city"))
    assert main(["plan", "--config", str(changed)]) == 0
    planned = [line for line in capfd.readouterr().out.splitlines() if line.startswith(STREAMS)]
    assert planned[0].startswith("end_users: FULL sync, the personal data policy changed (the table's last commit: ")


def test_a_policy_change_updates_the_column_comments_of_an_existing_table(spark, tmp_path):
    stream, path = STREAMS_BY_NAME["end_users"], str(tmp_path / "end_users")
    properties = table_properties(30, False)

    def comments() -> tuple[str, str, str]:
        schema = spark.read.format("delta").load(path).schema
        name = schema["properties"].dataType["name"].metadata["comment"]
        return schema["email"].metadata["comment"], name, schema["_raw"].metadata["comment"]

    StreamTable(spark, stream, properties, path=path).ensure()
    labels, _ = pii_labels(Policy(["email"], ["properties.name"], SALT), stream)
    StreamTable(spark, stream, properties, path=path, labels=labels).ensure()
    email, name, raw = comments()
    assert (email, name) == ("User's email address (hashed)", "User's name (dropped)")
    assert raw.endswith("custom properties and new fields (dropped, hashed)")
    StreamTable(spark, stream, properties, path=path).ensure()  # the policy removed
    assert comments()[:2] == ("User's email address", "User's name")
