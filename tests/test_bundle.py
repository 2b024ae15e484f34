"""The Databricks Asset Bundle `make bundle` renders: its structure, since no workspace is reachable here.

Checked: a python_wheel_task on the wheel `make dist` built, calling the wheel's `wootric-ingest` entry
point (the same `main()`), with `run --config` on the config the bundle uploads; the trigger as a Quartz
cron in its time zone; and the configs that cannot work on a job cluster refused with the reason.
"""

from __future__ import annotations

import configparser
import json
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml
from databricks.bundles.dashboards import Dashboard
from databricks.bundles.jobs import Job, PauseStatus

from tests.conftest import config_dict
from wootric_ingest import redaction
from wootric_ingest.cli.bundle import main as bundle_main
from wootric_ingest.cli.bundle import render
from wootric_ingest.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]


def wheel_metadata(wheel: Path) -> tuple[configparser.ConfigParser, list[str]]:
    with zipfile.ZipFile(wheel) as archive:
        info = next(n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt"))
        entry_points = configparser.ConfigParser()
        entry_points.read_string(archive.read(info).decode())
        metadata = archive.read(info.replace("entry_points.txt", "METADATA")).decode()
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    return entry_points, requires


def write(tmp_path: Path, data: dict, name: str = "source.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_the_shipped_databricks_config_renders_a_wheel_task_on_its_trigger(tmp_path, wheel):
    out = tmp_path / "bundle"
    assert (
        bundle_main(["--config", str(REPO / "conf/databricks.yaml"), "--dist", str(wheel.parent), "--out", str(out)])
        == 0
    )

    definition = yaml.safe_load((out / "databricks.yml").read_text())
    assert definition["include"] == ["resources/*.yml"]
    assert definition["sync"] == {"include": ["conf/*.yaml"]}  # bundle/ is git-ignored
    assert definition["targets"]["dev"] == {"mode": "development", "default": True}
    assert definition["targets"]["prod"]["mode"] == "production"
    assert definition["variables"]["spark_version"]["default"].startswith("17.")

    (job_file,) = (out / "resources").glob("*.job.yml")
    (resource,) = yaml.safe_load(job_file.read_text())["resources"]["jobs"].values()
    job = Job.from_dict(resource)  # Databricks' own bundle model: an unknown or misplaced key is refused
    assert (job.schedule.quartz_cron_expression, job.schedule.timezone_id, job.schedule.pause_status) == (
        "0 0 6 * * ?",
        "Europe/Lisbon",
        PauseStatus.UNPAUSED,
    )
    assert job.max_concurrent_runs == 1
    (task,) = job.tasks
    assert task.python_wheel_task.package_name == "wootric_ingest"
    assert task.python_wheel_task.entry_point == "wootric-ingest"
    assert task.python_wheel_task.parameters == ["run", "--config", "${workspace.file_path}/conf/databricks.yaml"]
    assert task.notebook_task is None and task.spark_python_task is None
    (cluster,) = job.job_clusters
    assert cluster.job_cluster_key == task.job_cluster_key
    assert cluster.new_cluster.num_workers == 0
    assert resource["job_clusters"][0]["new_cluster"]["spark_version"] == "${var.spark_version}"

    # The library path (relative to the resource file) is the wheel make dist built, copied into the bundle.
    library = (job_file.parent / task.libraries[0].whl).resolve()
    assert library.read_bytes() == wheel.read_bytes()
    # The wheel's `wootric-ingest` entry point is the one main() every other entry point calls.
    entry_points, requires = wheel_metadata(library)
    assert entry_points["console_scripts"]["wootric-ingest"] == "wootric_ingest.cli:main"
    # The runtime brings Spark and Delta; a wheel requiring them would replace the runtime's pyspark.
    installed = [r for r in requires if "extra ==" not in r]
    assert installed and not [r for r in installed if r.startswith(("pyspark", "delta-spark"))], installed

    # With the nps section, the AI/BI dashboard over the gold tables, on the warehouse given at deploy time.
    assert "warehouse_id" in definition["variables"]
    (dashboard_file,) = (out / "resources").glob("*.dashboard.yml")
    (board,) = yaml.safe_load(dashboard_file.read_text())["resources"]["dashboards"].values()
    assert board["warehouse_id"] == "${var.warehouse_id}"
    document = json.loads((dashboard_file.parent / Dashboard.from_dict(board).file_path).read_text())
    datasets = {d["name"] for d in document["datasets"]}
    widgets = [item["widget"] for page in document["pages"] for item in page["layout"]]
    assert {q["query"]["datasetName"] for w in widgets for q in w["queries"]} == datasets
    assert {w["spec"]["frame"]["title"] for w in widgets} >= {"NPS by month", "Responses per month", "The last runs"}
    assert all(
        "`main`.`gold`.`wootric_nps_" in " ".join(d["queryLines"]) for d in document["datasets"] if "nps" in d["name"]
    )

    # Rendering reads no secret, so no secret reference is mistaken for a secret and masked in later messages.
    assert redaction.redact("{{secrets/wootric/password}}") == "{{secrets/wootric/password}}"

    # The uploaded config is the source config as written, and loads on Databricks through the secret scope.
    uploaded = out / "conf" / "databricks.yaml"
    assert uploaded.read_text() == (REPO / "conf/databricks.yaml").read_text()
    scope = {("wootric", "username"): "ana@example.com", ("wootric", "password"): "scope-password-1"}
    config = load_config(uploaded, secret_reader=lambda s, k: scope[(s, k)])
    assert (config.api.auth.username, config.api.auth.password) == ("ana@example.com", "scope-password-1")
    # It writes Unity Catalog managed tables by name and keeps only the job's files in the volume.
    assert (config.catalog.tables.value, config.catalog.name, config.catalog.root) == (
        "managed",
        "main",
        "/Volumes/main/wootric/lakehouse",
    )


def test_a_weekday_trigger_becomes_quartz_with_day_names(tmp_path, wheel):
    data = config_dict(
        source={"trigger": {"cron": "30 5 * * 1-5", "timezone": "America/Sao_Paulo"}},
        catalog={"root": "/Volumes/main/wootric/lakehouse"},
    )
    data["source"]["api"]["auth"] = {"client_id": "nps-client", "client_secret": "{{secrets/wootric/client_secret}}"}
    render(write(tmp_path, data), wheel, tmp_path / "bundle")
    (resource,) = yaml.safe_load((tmp_path / "bundle/resources/wootric_ingest.job.yml").read_text())["resources"][
        "jobs"
    ].values()
    schedule = Job.from_dict(resource).schedule
    assert (schedule.quartz_cron_expression, schedule.timezone_id) == ("0 30 5 ? * MON-FRI", "America/Sao_Paulo")


def test_configs_that_cannot_work_on_a_job_cluster_are_refused_with_every_reason(tmp_path, wheel):
    data = config_dict(source={"trigger": {"cron": "0 6 1 * 1"}}, catalog={"root": "./lakehouse"})
    data["source"]["api"]["auth"] = {"username": "${WOOTRIC_USERNAME}", "password": "hunter22-literal"}
    with pytest.raises(ConfigError) as caught:
        render(write(tmp_path, data), wheel, tmp_path / "bundle")
    assert caught.value.problems == [
        "source.api.auth.username: ${WOOTRIC_USERNAME} is not set on a Databricks job cluster; "
        "use {{secrets/<scope>/<key>}} for credentials, or write the value",
        "source.api.auth.password: is written in the file, which the bundle uploads to the workspace; "
        "put it in a secret scope and write {{secrets/<scope>/<key>}}",
        "catalog.root: './lakehouse' is relative, which means nothing on a job cluster; "
        "use a Unity Catalog volume, e.g. /Volumes/main/wootric/lakehouse",
        "source.trigger.cron: '0 6 1 * 1' restricts both day-of-month and day-of-week; Quartz allows only one",
    ]
    assert not (tmp_path / "bundle").exists()


def test_make_bundle_without_a_config_says_how_to_call_it():
    result = subprocess.run(
        ["make", "--no-print-directory", "-s", "bundle", "DIST=/nonexistent"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "make bundle: name the config, e.g. make bundle CONF=conf/databricks.yaml" in result.stderr


def test_with_pipeline_the_bundle_adds_a_lakeflow_pipeline_over_the_wootric_data_source(tmp_path, wheel):
    from databricks.bundles.pipelines import Pipeline

    from wootric_ingest.source.options import OPTIONS

    out = tmp_path / "bundle"
    args = ["--config", str(REPO / "conf/databricks.yaml"), "--dist", str(wheel.parent), "--out", str(out)]
    assert bundle_main([*args, "--pipeline"]) == 0

    definition = yaml.safe_load((out / "databricks.yml").read_text())
    assert definition["sync"] == {"include": ["conf/*.yaml", "pipelines/*.py", "dist/*.whl"]}
    assert (out / "resources" / "wootric_ingest.job.yml").is_file()
    (resource,) = yaml.safe_load((out / "resources" / "wootric_ingest.pipeline.yml").read_text())["resources"][
        "pipelines"
    ].values()
    pipeline = Pipeline.from_dict(resource)  # Databricks' own bundle model: an unknown or misplaced key is refused
    assert pipeline.serverless and not pipeline.continuous
    assert (pipeline.catalog, resource["schema"]) == ("main", "${var.pipeline_schema}")
    assert definition["variables"]["pipeline_schema"]["default"] == "wootric_streams"
    (library,) = pipeline.libraries
    source = (out / "resources" / library.file.path).resolve()
    assert source.read_text() == (REPO / "wootric_ingest/source/pipeline.py").read_text()
    compile(source.read_text(), str(source), "exec")
    assert resource["environment"]["dependencies"] == [f"${{workspace.file_path}}/dist/{wheel.name}"]
    assert (out / "dist" / wheel.name).is_file()

    settings = resource["configuration"]
    assert settings["wootric.streams"] == "end_users,responses,declines"
    assert {key.removeprefix("wootric.") for key in settings} - {"streams"} <= set(OPTIONS)
    # The credentials stay secret references: the pipeline reads them from the scope on the driver.
    assert settings["wootric.password"] == "{{secrets/wootric/password}}"
    assert (settings["wootric.start_date"], settings["wootric.base_url"]) == (
        "2024-01-01T00:00:00Z",
        "https://api.wootric.com",
    )
