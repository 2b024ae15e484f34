"""Tables by name (Unity Catalog's managed tables; here Spark's session catalog, the same code path as a
three-part name): every table registered with its comments, properties and change data feed; a table by our
name that is not ours is reported, never written; a missing catalog is one line; path tables registered in the
metastore keep their runs and rejected tables beside them; `plan` says what the folder does and what happens
to a path table left behind. The sync behaviours themselves run in both modes in test_delta_incremental.py."""

from __future__ import annotations

import deltalake
import pytest

from sandbox import Sandbox, SandboxOptions
from wootric_ingest.cli import main
from wootric_ingest.lake.tables import CatalogProblem
from wootric_ingest.run.job import run
from wootric_ingest.run.planning import RunOptions

from conftest import lakehouse, table_path
from test_sink import delta_rs_rows


@pytest.fixture
def sandbox():
    with Sandbox(SandboxOptions(end_users=12, responses=30, declines=6, seed=11)) as sb:
        yield sb


def described(spark, name: str) -> dict[str, str]:
    return {r["col_name"]: r["data_type"] for r in spark.sql(f"DESCRIBE TABLE EXTENDED {name}").collect()}


def properties(spark, name: str) -> dict[str, str]:
    return {r["key"]: r["value"] for r in spark.sql(f"SHOW TBLPROPERTIES {name}").collect()}


def test_every_table_is_a_managed_table_by_name_with_comments_properties_and_a_change_feed(
    spark, sandbox, make_config, tmp_path
):
    config = make_config(sandbox, tables="managed", source={"description": "NPS for the CX team"})
    results = run(config, spark)
    assert [r.status for r in results] == ["ok", "ok", "ok"]

    house = lakehouse(spark, config)
    names = [house.table(s).name for s in config.streams] + [house.layout.runs_name]
    layer = config.stream("responses").layer
    assert names[1] == f"`{layer}`.`wootric_responses`" and results[1].table == names[1]
    assert names[3] == f"`{config.catalog.job_schema}`.`wootric_runs`"
    for name in names:
        detail = described(spark, name)
        assert (detail["Type"], detail["Provider"]) == ("MANAGED", "delta")
        assert not detail["Location"].removeprefix("file:").startswith(config.catalog.root), "a table in the root"
        assert detail["Comment"].startswith("NPS for the CX team (")
        assert properties(spark, name)["delta.enableChangeDataFeed"] == "true"
        assert properties(spark, name)["delta.logRetentionDuration"] == "interval 30 days"
    assert properties(spark, names[1])["delta.dataSkippingStatsColumns"] == "id,created_at,updated_at,_deleted_at"
    assert properties(spark, names[0])["delta.dataSkippingStatsColumns"] == "id,updated_at,_deleted_at"
    assert "Survey responses and feedback." in described(spark, names[1])["Comment"]
    comments = {f.name: f.metadata.get("comment") for f in spark.table(names[1]).schema.fields}
    assert comments["score"] == "Numeric score provided in the response"
    assert spark.table(names[3]).count() == 3
    assert not (tmp_path / "lakehouse" / layer).exists(), "a managed table wrote under the root"

    changes = spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", 0).table(names[1])
    assert changes.where("_change_type = 'insert'").count() == len(sandbox.dataset.records("responses"))


def test_a_table_by_our_name_that_is_not_ours_is_reported_and_left_alone(spark, sandbox, make_config):
    config = make_config(sandbox, tables="managed")
    house = lakehouse(spark, config)
    responses, declines = house.table(config.stream("responses")), house.table(config.stream("declines"))
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {config.stream('responses').layer}")
    spark.sql(f"CREATE TABLE {responses.name} (id INT, score STRING) USING delta")
    spark.sql(f"CREATE TABLE {declines.name} USING delta LOCATION '{table_path(config, 'declines')}' AS SELECT 1 AS id")

    results = {r.stream_name: r for r in run(config, spark)}

    assert results["end_users"].status == "ok"
    assert results["responses"].status == results["declines"].status == "failed"
    assert results["responses"].error == (
        f"CatalogProblem: {responses.name} has column id of type int, where this job writes string: it is not this "
        "job's table (rename or drop it, or point the config elsewhere)"
    )
    assert "exists as an external table" in results["declines"].error
    assert [r["id"] for r in spark.table(declines.name).collect()] == [1]
    assert spark.table(responses.name).count() == 0


def test_a_missing_catalog_is_reported_in_one_line_naming_it(spark, sandbox, make_config, caplog):
    config = make_config(sandbox, tables="managed", catalog={"name": "finance"})
    with pytest.raises(CatalogProblem) as raised:  # not even the run history can be written
        run(config, spark, RunOptions(streams=("declines",)))
    assert str(raised.value).startswith("catalog finance (of `finance`.`jobs_")
    assert str(raised.value).endswith("does not exist, or the job's user lacks USE CATALOG on it")
    (failed,) = [r for r in caplog.records if r.getMessage() == "declines: sync failed"]
    assert str(failed.exc_info[1]).startswith("catalog finance (of `finance`.`raw_")


def test_path_tables_registered_in_the_metastore_keep_the_runs_table_beside_them(spark, sandbox, make_config):
    schema = f"jobs_{abs(hash(sandbox.base_url)) % 10**8}"
    config = make_config(
        sandbox,
        catalog={"metastore": True, "job_schema": schema},
        streams={"declines": {"layer": schema, "table": "declines"}},
    )
    (result,) = run(config, spark, RunOptions(streams=("declines",)))
    assert result.status == "ok"
    runs = described(spark, f"{schema}.wootric_runs")
    assert (runs["Type"], runs["Location"]) == ("EXTERNAL", f"file:{config.catalog.root}/_wootric_ingest/runs")
    declines = table_path(config, "declines")
    assert described(spark, f"{schema}.wootric_declines")["Location"] == f"file:{declines}"
    # delta-rs reads the path table and its change feed.
    assert len(delta_rs_rows(declines)) == len(sandbox.dataset.records("declines"))
    feed = deltalake.DeltaTable(declines).load_cdf(starting_version=0).read_all()
    assert set(feed.column("_change_type").to_pylist()) == {"insert"}


def test_plan_names_managed_tables_says_what_the_folder_does_and_notes_a_path_table_left_behind(
    spark, sandbox, make_config, capsys, tmp_path
):
    path_config = make_config(sandbox, streams={"declines": {"layer": "raw", "folder": "nps", "table": "declines"}})
    run(path_config, spark)  # the source, on path tables, before it moves to managed ones
    managed = tmp_path / "managed.yaml"
    managed.write_text(f"""
source:
  description: moved to Unity Catalog
  api: {{base_url: "{sandbox.base_url}", auth: {{username: u, password: p}}}}
  start_date: "2024-01-01T00:00:00Z"
  trigger: {{cron: "0 6 * * *"}}
catalog: {{tables: managed, root: "{path_config.catalog.root}", table_prefix: wootric_}}
streams:
  declines: {{layer: raw, folder: nps, table: declines}}
""")
    assert main(["plan", "--config", str(managed)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "declines: FULL sync, first run: the table does not exist yet"
    assert lines[3].startswith(
        "  writes  `raw`.`wootric_declines` (a managed table; full_sync_write rewrite: one overwrite commit"
    )
    assert lines[4] == (
        "  folder  'nps' is not part of a managed table's three-level name; it only names this table's lock file"
    )
    assert lines[5] == "  deletes hard: a record gone from the source loses its row at a full sync"
    assert lines[6] == (
        f"  note    a path table of this stream exists at {table_path(path_config, 'declines')}: "
        "the managed table is new and a full sync fills it (README: moving a source to managed tables)"
    )
