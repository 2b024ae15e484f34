"""The personal data policy without Spark: what it does to a record (names at any depth, dotted paths for their
nesting only, emails normalised, other values hashed by their JSON text), its validation (every problem naming its
key), its fingerprint, the plan it forces when it changes, what staging writes under it, and the comments, tags and
docs that say what it did. tests/test_personal_data.py runs it end to end."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import config_dict
from wootric_ingest import redaction
from wootric_ingest.cli import main
from wootric_ingest.cli.docs import catalog, markdown
from wootric_ingest.config import ConfigError, PiiConfig, parse_config
from wootric_ingest.lake.lakehouse import pii_labels
from wootric_ingest.lake.schemas import marked, table_schema
from wootric_ingest.lake.staging import StagingArea
from wootric_ingest.lake.state import SyncMode, TableState
from wootric_ingest.lake.storage import LocalStorage
from wootric_ingest.lake.tables import comment_statements, tag_statements
from wootric_ingest.privacy import Policy
from wootric_ingest.run.planning import RunOptions, plan_stream
from wootric_ingest.streams import STREAMS

SALT = "a-salt-of-twenty-chars"


def digest(text: str) -> str:
    return hmac.new(SALT.encode(), text.encode(), hashlib.sha256).hexdigest()


def policy(hash=("email", "phone_number"), drop=("ip_address", "properties.name")) -> Policy:
    return Policy(hash, drop, SALT)


RESPONSE = {
    "id": 7,
    "ip_address": "198.51.100.23",
    "text": None,
    "notes": [{"id": 1, "text": "call back", "phone_number": "+1 415-555-0100"}],
    "end_user": {
        "email": "  Alice@Example.COM ",
        "properties": {"name": "Alice Liddell", "phone_number": 4155550101, "role": "admin"},
        "survey": {"name": "Q3"},
    },
    "name": "top-level name",
}


def test_names_match_at_any_depth_and_dotted_paths_only_their_nesting():
    before = copy.deepcopy(RESPONSE)
    applied = policy().apply(RESPONSE)
    assert RESPONSE == before, "the input record is left as it was"
    assert applied == {
        "id": 7,
        "ip_address": None,
        "text": None,
        "notes": [{"id": 1, "text": "call back", "phone_number": digest("+1 415-555-0100")}],
        "end_user": {
            "email": digest("alice@example.com"),  # trimmed and lower-cased first
            "properties": {"name": None, "phone_number": digest("4155550101"), "role": "admin"},  # JSON text
            "survey": {"name": "Q3"},  # a name, but not inside properties
        },
        "name": "top-level name",
    }


def test_a_value_of_another_type_is_hashed_by_its_json_text_and_null_stays_null():
    applied = Policy(["external_id"], [], SALT).apply(
        {"a": {"external_id": {"z": 1, "a": [True, None]}}, "b": {"external_id": None}, "c": {"external_id": 1.5}}
    )
    assert applied == {
        "a": {"external_id": digest('{"a":[true,null],"z":1}')},
        "b": {"external_id": None},
        "c": {"external_id": digest("1.5")},
    }


def test_a_record_the_policy_does_not_touch_is_returned_as_it_is():
    record = {"id": 1, "properties": {"role": "x"}, "tags": ["UX"]}
    assert policy().apply(record) is record
    assert Policy([], [], None).apply(record) is record and not Policy([], [], None)


def test_the_same_email_hashes_the_same_however_it_is_written_and_only_emails_are_normalised():
    p = policy()
    assert p.digest(" ALICE@example.com") == p.digest("alice@example.com") == digest("alice@example.com")
    assert p.digest(" Some Text ") == digest(" Some Text ")
    assert Policy(["email"], [], "another-salt-of-20-chars").digest("alice@example.com") != p.digest(
        "alice@example.com"
    )


# ----------------------------------------------------------------------------------------------- validation


def parse(pii: dict, environ=None):
    return parse_config(config_dict(source={"pii": pii}), environ=environ or {}, base=Path("/tmp"))


@pytest.mark.parametrize(
    ("pii", "problem"),
    [
        ({"hash": ["email"]}, "source.pii.salt: is required when source.pii.hash lists fields"),
        ({"hash": ["email"], "salt": "short-salt"}, "source.pii.salt: is 10 characters; at least 16 are required"),
        (
            {"hash": ["email"], "drop": ["email"], "salt": SALT},
            "source.pii.drop: email is also in source.pii.hash; a field is either hashed or dropped",
        ),
        (
            {"drop": ["id"]},
            "source.pii.drop: id is the primary key of end_users, responses, declines: "
            "the job keys and walks rows by it",
        ),
        ({"hash": ["created_at"], "salt": SALT}, "source.pii.hash: created_at is the cursor of responses, declines"),
        ({"drop": ["updated_at"]}, "source.pii.drop: updated_at is the cursor of end_users"),
        (
            {"hash": ["score"], "salt": SALT},
            "source.pii.hash: score names the integer column end_users.last_response.score and a hash is text",
        ),
        ({"hash": ["properties"], "salt": SALT}, "source.pii.hash: properties names the struct column"),
        ({"hash": "email", "salt": SALT}, "source.pii.hash: must be a list of field names"),
        ({"drop": ["properties..name"]}, "source.pii.drop: 'properties..name' is not a field name or a dotted path"),
        ({"drop": ["x"], "pepper": 1}, "source.pii.pepper: unknown key; allowed: drop, hash, salt"),
    ],
)
def test_a_bad_policy_is_refused_naming_the_key(pii, problem):
    with pytest.raises(ConfigError) as raised:
        parse(pii)
    assert any(p.startswith(problem) for p in raised.value.problems), raised.value.problems


def test_nested_fields_named_like_the_key_or_a_cursor_may_be_dropped_and_the_salt_is_a_secret():
    config = parse(
        {"hash": ["email"], "drop": ["end_user.created_at", "last_response.id"], "salt": "${PII_SALT}"},
        environ={"PII_SALT": "env-salt-0123456789"},
    )
    assert config.pii == PiiConfig(("email",), ("end_user.created_at", "last_response.id"), "env-salt-0123456789")
    assert "env-salt-0123456789" not in repr(config)
    assert redaction.redact("salt env-salt-0123456789 here") == "salt *** here"


def test_the_fingerprint_names_the_lists_and_the_salt_without_holding_it():
    base = PiiConfig(("email", "phone_number"), ("ip_address",), SALT)
    assert PiiConfig().fingerprint is None
    assert PiiConfig(("phone_number", "email"), ("ip_address",), SALT).fingerprint == base.fingerprint
    others = {
        PiiConfig(("email",), ("ip_address",), SALT).fingerprint,
        PiiConfig(("email", "phone_number"), (), SALT).fingerprint,
        PiiConfig(("email", "phone_number"), ("ip_address",), SALT + "!").fingerprint,
    }
    assert base.fingerprint not in others and len(others) == 3
    assert SALT not in str(base.fingerprint) and len(str(base.fingerprint)) == 16


def test_a_policy_change_plans_a_full_sync_and_says_why(make_config):
    config = make_config(source={"pii": {"hash": ["email"], "salt": SALT}})
    now = datetime(2024, 3, 2, 12, tzinfo=timezone.utc)
    state = TableState(True, "2024-03-01T10:00:00Z", "run r1", None, pii=None)
    changed = plan_stream(config, config.stream("end_users"), state, RunOptions(), now)
    assert changed.mode is SyncMode.FULL
    assert changed.reason == (
        f"the personal data policy changed (the table's last commit: no policy, the config: {config.pii.fingerprint})"
        ": a full sync applies it to every row"
    )
    assert changed.commit_metadata("r2", None)["pii"] == config.pii.fingerprint
    same = TableState(True, "2024-03-01T10:00:00Z", "run r1", None, pii=config.pii.fingerprint)
    assert plan_stream(config, config.stream("end_users"), same, RunOptions(), now).mode is SyncMode.INCREMENTAL
    unchanged = make_config()
    assert plan_stream(unchanged, unchanged.stream("end_users"), state, RunOptions(), now).mode is SyncMode.INCREMENTAL


# ------------------------------------------------------------------------------------------ staging, catalog


def test_staging_writes_only_what_the_policy_lets_through(tmp_path):
    staging = StagingArea(LocalStorage(), str(tmp_path / "responses"), STREAMS["responses"], "run-1", policy=policy())
    unkeyed = {k: v for k, v in RESPONSE.items() if k != "id"}
    staging.write([RESPONSE, unkeyed], fetched_at=1700000000)
    staging.flush()
    written = b"".join(p.read_bytes() for p in tmp_path.rglob("*.parquet"))
    decoded = json.dumps([pq.read_table(p).to_pylist() for p in tmp_path.rglob("*.parquet")], default=str)
    for original in ("198.51.100.23", "Alice", "lice@", "415-555", "4155550101"):
        assert original.encode() not in written and original not in decoded
    row = pq.read_table(staging.parts()[0]).to_pylist()[0]
    assert row["ip_address"] is None and row["end_user"]["email"] == digest("alice@example.com")
    assert json.loads(row["end_user"]["properties"])["name"] is None
    assert "call back" in decoded, "the scan sees what it looks for"


def test_columns_the_policy_names_are_labelled_and_tagged():
    labels, tags = pii_labels(policy(), STREAMS["end_users"])
    assert labels == {
        "email": "hashed",
        "phone_number": "hashed",
        "properties.name": "dropped",
        "_raw": "dropped, hashed",
    }
    assert tags == {"email": "hashed", "phone_number": "hashed", "properties": "dropped", "_raw": "dropped, hashed"}
    assert pii_labels(Policy([], [], None), STREAMS["end_users"]) == ({}, {})

    schema = marked(table_schema(STREAMS["end_users"]), labels)
    assert schema["email"].metadata["comment"] == "User's email address (hashed)"
    assert schema["properties"].dataType["name"].metadata["comment"] == "User's name (dropped)"
    assert comment_statements("`raw`.`end_users`", table_schema(STREAMS["end_users"]), schema) == [
        "ALTER TABLE `raw`.`end_users` ALTER COLUMN `email` COMMENT 'User\\'s email address (hashed)'",
        "ALTER TABLE `raw`.`end_users` ALTER COLUMN `phone_number` COMMENT 'User\\'s phone number (hashed)'",
        "ALTER TABLE `raw`.`end_users` ALTER COLUMN `properties`.`name` COMMENT 'User\\'s name (dropped)'",
        "ALTER TABLE `raw`.`end_users` ALTER COLUMN `_raw` COMMENT "
        "'The record exactly as the API sent it (JSON): custom properties and new fields (dropped, hashed)'",
    ]
    statements = tag_statements("`main`.`raw`.`end_users`", tags, schema)
    assert statements[:2] == [
        "ALTER TABLE `main`.`raw`.`end_users` ALTER COLUMN `id` UNSET TAGS ('pii')",
        "ALTER TABLE `main`.`raw`.`end_users` ALTER COLUMN `email` SET TAGS ('pii' = 'hashed')",
    ]
    assert "ALTER TABLE `main`.`raw`.`end_users` ALTER COLUMN `properties` SET TAGS ('pii' = 'dropped')" in statements
    assert len(statements) == len(schema.fields)


def test_docs_and_discover_show_the_policy_never_the_salt(tmp_path, capsys):
    data = config_dict(source={"pii": {"hash": ["email"], "drop": ["ip_address"], "salt": SALT}})
    path = tmp_path / "source.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["docs", "--config", str(path)]) == 0
    docs = capsys.readouterr().out
    assert "| `email` | String | User's email address (hashed) |" in docs
    assert "| `ip_address` | String | IP address where the response originated (dropped) |" in docs
    assert "### Personal data policy" in docs and "Hashed (HMAC-SHA256" in docs
    assert main(["discover", "--config", str(path)]) == 0
    discovered = json.loads(capsys.readouterr().out)
    fingerprint = parse_config(data, environ={}, base=tmp_path).pii.fingerprint
    assert discovered["pii"] == {"hash": ["email"], "drop": ["ip_address"], "fingerprint": fingerprint}
    responses = next(s for s in discovered["streams"] if s["stream"] == "responses")["schema"]["properties"]
    assert responses["ip_address"]["x-pii"] == "dropped" and responses["end_user"]["properties"]["email"]["x-pii"]
    assert SALT not in docs + json.dumps(discovered)
    assert markdown() == markdown(None) and "pii" not in catalog()


def test_forget_needs_a_person(tmp_path, capsys):
    path = tmp_path / "source.yaml"
    path.write_text(yaml.safe_dump(config_dict()))
    assert main(["forget", "--config", str(path)]) == 2
    assert capsys.readouterr().err == (
        "wootric-ingest: forget: name at least one person with --email or --end-user-id\n"
    )
    assert main(["forget", "--config", str(path), "--email", " "]) == 2
    assert capsys.readouterr().err == "wootric-ingest: forget: an --email or --end-user-id is blank\n"
