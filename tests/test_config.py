"""Config validation: each mistake a user can make is named by its key, with what is allowed instead."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.conftest import config_dict
from wootric_ingest import redaction
from wootric_ingest.config import (
    ConfigError,
    Deletes,
    FullSyncWrite,
    SyncType,
    TableMode,
    load_config,
    parse_config,
)
from wootric_ingest.lake.layout import Layout

from conftest import table_path


def problems(data, **kwargs) -> list[str]:
    """The problems `parse_config` reports for `data` (fails the test if it reports none)."""
    kwargs.setdefault("environ", {})
    with pytest.raises(ConfigError) as caught:
        parse_config(data, **kwargs)
    return caught.value.problems


def with_stream(stream: str, **settings) -> dict:
    data = config_dict()
    data["streams"][stream].update(settings)
    return data


def test_a_valid_file_becomes_a_typed_config_with_defaults(tmp_path: Path):
    path = tmp_path / "source.yaml"
    path.write_text(
        "source:\n"
        "  description: NPS for the CX team\n"
        "  api: {auth: {username: ana@example.com, password: '${WOOTRIC_PASSWORD}'}}\n"
        "  start_date: 2024-01-01\n"  # unquoted: YAML reads a date, which is fine
        "  trigger: {cron: '0 6 * * *', timezone: Europe/Lisbon}\n"
        "catalog: {root: lake, table_prefix: wootric_}\n"
        "streams:\n"
        "  responses: {layer: raw, folder: wootric}\n"
        "  declines: {layer: raw, table: nps_declines, sync_type: full_table}\n"
    )
    config = load_config(path, environ={"WOOTRIC_PASSWORD": "pw-from-env"})

    assert config.api.base_url == "https://api.wootric.com"
    assert config.api.auth.grant == "password" and config.api.auth.password == "pw-from-env"
    assert config.start_date == datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert config.trigger.parsed.timezone == "Europe/Lisbon"
    assert config.additional_full_sync is None
    assert config.delta_log_retention_days == 30
    responses, declines = config.streams
    assert (responses.table, responses.sync_type, responses.lookback_days) == ("responses", SyncType.INCREMENTAL, 30)
    assert declines.sync_type is SyncType.FULL_TABLE
    assert table_path(config, "responses") == f"{Path.cwd() / 'lake'}/raw/wootric/wootric_responses"
    assert table_path(config, "declines") == f"{Path.cwd() / 'lake'}/raw/wootric_nps_declines"
    catalog = config.catalog
    assert (catalog.tables, catalog.metastore, catalog.job_schema, catalog.change_data_feed) == (
        TableMode.PATH,
        False,
        "wootric_ingest",
        True,
    )
    assert catalog.full_sync_write is FullSyncWrite.REWRITE and responses.deletes is Deletes.HARD


def test_managed_tables_take_names_from_the_catalog_and_the_layers():
    config = parse_config(
        config_dict(catalog={"tables": "managed", "name": "main", "root": "/Volumes/main/w/files"}), environ={}
    )
    layout = Layout(config.catalog)
    assert layout.metastore_name(config.stream("responses")) == "`main`.`raw`.`wootric_responses`"
    assert (layout.runs_name, layout.rejected_name) == (
        "`main`.`wootric_ingest`.`wootric_runs`",
        "`main`.`wootric_ingest`.`wootric_rejected`",
    )
    assert layout.staging_root == "/Volumes/main/w/files/_wootric_ingest/staging"


def test_table_modes_refuse_what_cannot_work_and_name_what_is_allowed():
    assert problems(config_dict(catalog={"tables": "external"})) == [
        "catalog.tables: 'external' is not allowed; use one of: path, managed"
    ]
    assert problems(config_dict(catalog={"tables": "managed", "metastore": True})) == [
        "catalog.metastore: applies to path tables only; managed tables are always registered by name"
    ]
    (volume,) = problems(config_dict(catalog={"metastore": True, "root": "/Volumes/main/wootric/lakehouse"}))
    assert volume.startswith("catalog.metastore: Unity Catalog cannot register a table on files inside a volume")
    assert "use catalog.tables: managed" in volume
    assert problems(config_dict(catalog={"change_data_feed": "yes", "full_sync_write": "upsert"})) == [
        "catalog.change_data_feed: must be true or false, got 'yes'",
        "catalog.full_sync_write: 'upsert' is not allowed; use one of: rewrite, merge",
    ]
    assert problems(with_stream("declines", deletes="archive")) == [
        "streams.declines.deletes: 'archive' is not allowed; use one of: hard, soft"
    ]


def test_a_description_over_140_characters_is_refused():
    data = config_dict(source={"description": "x" * 141})
    assert problems(data) == ["source.description: is 141 characters; at most 140 allowed"]


def test_a_misspelt_key_is_named_with_a_suggestion_and_the_allowed_keys():
    assert problems(with_stream("end_users", sync_typ="FULL_TABLE")) == [
        "streams.end_users.sync_typ: unknown key (did you mean 'sync_type'?); "
        "allowed: deletes, folder, layer, lookback_days, sync_type, table"
    ]
    data = config_dict()
    data["stream"] = data.pop("streams")
    assert "stream: unknown key (did you mean 'streams'?); allowed: catalog, nps, source, streams" in problems(data)


def test_a_sync_type_other_than_incremental_or_full_table_is_refused():
    assert problems(with_stream("end_users", sync_type="FULL")) == [
        "streams.end_users.sync_type: 'FULL' is not a sync type; use INCREMENTAL or FULL_TABLE"
    ]


def test_a_stream_that_does_not_exist_is_refused_with_the_available_ones():
    data = config_dict()
    data["streams"]["respones"] = data["streams"].pop("responses")
    data["streams"]["nps_summary"] = {"layer": "raw"}
    assert problems(data) == [
        "streams.respones: no such stream (did you mean 'responses'?); "
        "available: end_users, responses, declines, segments",
        "streams.nps_summary: no such stream; available: end_users, responses, declines, segments",
    ]


@pytest.mark.parametrize(
    "auth, expected",
    [
        (
            {"username": "u", "password": "p", "client_id": "c", "client_secret": "s"},
            "source.api.auth: give either username + password or client_id + client_secret, not both",
        ),
        ({"account_token": "NPS-1234"}, "source.api.auth: give username + password (or client_id + client_secret)"),
        ({"username": "u"}, "source.api.auth.password: is required with username"),
        ({"client_secret": "s"}, "source.api.auth.client_id: is required with client_secret"),
    ],
)
def test_credentials_need_exactly_one_complete_pair(auth, expected):
    data = config_dict()
    data["source"]["api"]["auth"] = auth
    assert problems(data) == [expected]


def test_the_client_credentials_pair_is_accepted_on_its_own():
    data = config_dict()
    data["source"]["api"]["auth"] = {"client_id": "c", "client_secret": "${SECRET}"}
    config = parse_config(data, environ={"SECRET": "client-secret-value"})
    assert config.api.auth.grant == "client_credentials" and config.api.auth.principal == "c"


def test_an_unset_environment_variable_is_named():
    data = config_dict()
    data["source"]["api"]["auth"] = {"username": "${WOOTRIC_USER}", "password": "${WOOTRIC_PASSWORD}"}
    assert problems(data, environ={"WOOTRIC_USER": "ana"}) == [
        "source.api.auth.password: environment variable WOOTRIC_PASSWORD is not set (export it, or write the value)"
    ]


def test_a_databricks_secret_reference_off_databricks_says_where_it_works():
    data = config_dict()
    data["source"]["api"]["auth"]["password"] = "{{secrets/wootric/password}}"
    assert problems(data) == [
        "source.api.auth.password: {{secrets/wootric/password}} is a Databricks secret and can only be read on "
        "Databricks; use ${ENV_VAR} elsewhere"
    ]


def test_a_databricks_secret_is_read_through_the_secret_reader_and_registered_for_redaction():
    data = config_dict()
    data["source"]["api"]["auth"]["password"] = "{{secrets/wootric/password}}"
    reads = []

    def reader(scope: str, key: str) -> str:
        reads.append((scope, key))
        return "s3cret-from-scope"

    config = parse_config(data, environ={}, secret_reader=reader)
    assert reads == [("wootric", "password")]
    assert config.api.auth.password == "s3cret-from-scope"
    assert redaction.redact("login with s3cret-from-scope") == "login with ***"
    assert "s3cret-from-scope" not in repr(config)


def test_a_secret_the_scope_does_not_hold_is_reported_with_its_reference():
    data = config_dict()
    data["source"]["api"]["auth"]["password"] = "{{secrets/wootric/pasword}}"

    def reader(scope: str, key: str) -> str:
        raise RuntimeError(f"Secret does not exist with scope: {scope} and key: {key}\n(stack trace)")

    assert problems(data, secret_reader=reader) == [
        "source.api.auth.password: cannot read the Databricks secret {{secrets/wootric/pasword}}: "
        "Secret does not exist with scope: wootric and key: pasword"
    ]


def test_an_environment_secret_is_registered_for_redaction_and_kept_out_of_repr():
    data = config_dict()
    data["source"]["api"]["auth"]["password"] = "${WOOTRIC_PASSWORD}"
    config = parse_config(data, environ={"WOOTRIC_PASSWORD": "env-pass-9f2c"})
    assert redaction.redact("password=env-pass-9f2c") == "password=***"
    assert "env-pass-9f2c" not in repr(config) and "env-pass-9f2c" not in str(config.api)


def test_an_unparseable_start_date_is_refused_with_an_example():
    assert problems(config_dict(source={"start_date": "01/02/2024"})) == [
        "source.start_date: '01/02/2024' is not an ISO-8601 date, e.g. 2024-01-01T00:00:00Z"
    ]


def test_a_cron_and_a_time_zone_that_do_not_parse_are_both_reported():
    data = config_dict(
        source={
            "trigger": {"cron": "0 6 * *", "timezone": "Mars/Olympus"},
            "additional_full_sync": {"cron": "0 25 * * 0"},
        }
    )
    assert problems(data) == [
        "source.trigger.timezone: 'Mars/Olympus' is not an IANA time zone (e.g. UTC, Europe/Lisbon, America/Sao_Paulo)",
        "source.trigger.cron: '0 6 * *' has 4 fields; expected 5: minute hour day-of-month month day-of-week; "
        "use a five-field cron expression (minute hour day-of-month month day-of-week), e.g. '0 6 * * *'",
        "source.additional_full_sync.cron: '25' is outside 0-23; "
        "use a five-field cron expression (minute hour day-of-month month day-of-week), e.g. '0 6 * * *'",
    ]


def test_a_trigger_is_required():
    data = config_dict()
    del data["source"]["trigger"]
    assert problems(data) == ["source.trigger: is required"]


@pytest.mark.parametrize("days", [0, -7, "30", 1.5, True])
def test_retention_days_must_be_a_positive_whole_number(days):
    assert problems(config_dict(source={"delta_log_retention_days": days})) == [
        f"source.delta_log_retention_days: must be a positive whole number, got {days!r}"
    ]


def test_how_long_a_failing_request_is_retried_defaults_to_15_minutes():
    assert parse_config(config_dict(), environ={}).api.retry_give_up_seconds == 900
    data = config_dict()
    data["source"]["api"]["retry_give_up_seconds"] = 120
    assert parse_config(data, environ={}).api.retry_give_up_seconds == 120


@pytest.mark.parametrize("seconds", [0, -5, "900", 2.5, True])
def test_the_retry_give_up_time_must_be_a_positive_whole_number(seconds):
    data = config_dict()
    data["source"]["api"]["retry_give_up_seconds"] = seconds
    assert problems(data) == [f"source.api.retry_give_up_seconds: must be a positive whole number, got {seconds!r}"]


def test_a_negative_look_back_is_refused():
    assert problems(with_stream("responses", lookback_days=-1)) == [
        "streams.responses.lookback_days: must be a whole number >= 0, got -1"
    ]


@pytest.mark.parametrize(
    "key, value",
    [
        ("layer", "../x"),
        ("layer", "raw/../../etc"),
        ("folder", "my folder"),
        ("table", "x'; DROP TABLE users; --"),
        ("table", "`responses`"),
        ("table", '"responses"'),
        ("table", "2024_responses"),
    ],
)
def test_layer_folder_and_table_names_must_be_safe_identifiers(key, value):
    assert problems(with_stream("responses", **{key: value})) == [
        f"streams.responses.{key}: {value!r} is not a safe name: use letters, digits and underscores, "
        "not starting with a digit (e.g. raw, wootric, end_users)"
    ]


@pytest.mark.parametrize("prefix", ["wootric-", "../", "a b_", "`x`_", "1_"])
def test_the_table_prefix_must_be_a_safe_identifier(prefix):
    assert problems(config_dict(catalog={"table_prefix": prefix})) == [
        f"catalog.table_prefix: {prefix!r} is not a safe name: use letters, digits and underscores, "
        "not starting with a digit (e.g. raw, wootric, end_users)"
    ]


def test_the_catalog_root_refuses_traversal_and_quotes():
    assert problems(config_dict(catalog={"root": "/data/../../etc"})) == [
        "catalog.root: must not contain '..' segments"
    ]
    assert problems(config_dict(catalog={"root": "/data/lake'; --"})) == [
        "catalog.root: must not contain quotes, backticks, semicolons or control characters"
    ]


def test_two_streams_writing_the_same_table_are_refused():
    data = config_dict()
    data["streams"]["declines"].update(table="responses")
    (problem,) = problems(data)
    assert problem.startswith("streams.declines.table: writes the same table as streams.responses (")
    assert problem.endswith("(raw/wootric/wootric_responses under the root)")


def test_every_problem_of_a_file_is_reported_together(tmp_path: Path):
    path = tmp_path / "broken.yaml"
    path.write_text(
        "source:\n"
        f"  description: {'d' * 150}\n"
        "  api: {auth: {username: ana, password: '${NOT_SET}'}}\n"
        "  start_date: yesterday\n"
        "  trigger: {cron: '0 6 * * *', timezone: Nowhere/City}\n"
        "  delta_log_retention_days: 0\n"
        "catalog: {root: lake}\n"
        "streams:\n"
        "  end_users: {layer: raw, sync_typ: FULL_TABLE}\n"
        "  responses: {layer: '../up', sync_type: SOMETIMES}\n"
        "  surveys: {layer: raw}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    keys = [p.split(":")[0] for p in caught.value.problems]
    assert keys == [
        "source.description",
        "source.api.auth.password",
        "source.start_date",
        "source.trigger.timezone",
        "source.delta_log_retention_days",
        "streams.end_users.sync_typ",
        "streams.responses.sync_type",
        "streams.responses.layer",
        "streams.surveys",
    ]
    assert str(caught.value).startswith(f"{path} has 9 problem(s):\n  - source.description: is 150 characters")


def test_a_missing_or_malformed_file_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError) as missing:
        load_config(tmp_path / "nope.yaml")
    assert str(missing.value) == f"{tmp_path / 'nope.yaml'} has 1 problem(s):\n  - file not found"
    bad = tmp_path / "bad.yaml"
    bad.write_text("source:\n  api: {auth: {username: ana, password: ${PW}}}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    assert caught.value.problems == [
        "is not valid YAML at line 2, column 42: expected ',' or '}', but got '{'; "
        "quote values that contain ${...} or {{...}}"
    ]
