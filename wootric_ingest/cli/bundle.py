"""A Databricks Asset Bundle for one source config: the wheel, a wheel task calling `main()`, the schedule.

`make bundle CONF=conf/databricks.yaml` renders into `bundle/` (git-ignored):

    bundle/databricks.yml                      the bundle: variables (runtime, node type) and targets
    bundle/resources/wootric_ingest.job.yml    the job: schedule from source.trigger, the wheel task
    bundle/resources/wootric_nps.dashboard.yml with an `nps` section: the AI/BI dashboard over the gold tables
    bundle/dashboards/wootric_nps.lvdash.json  its definition (datasets and widgets)
    bundle/conf/<config>.yaml                  the config as written (credentials are secret references)
    bundle/dist/<wheel>                        the wheel `make dist` built

and with `--pipeline` (`make bundle ... PIPELINE=1`) also a Lakeflow Declarative Pipeline over the `wootric` Spark
data source (`wootric_ingest.source.pipeline`), configured from the same config's source section:

    bundle/resources/wootric_ingest.pipeline.yml   the pipeline: serverless, triggered, the wheel as a dependency
    bundle/pipelines/wootric_pipeline.py           its source file

and `databricks bundle deploy -t prod` from `bundle/` deploys it. The job runs on the trigger only:
the additional full sync is decided by the job itself on each run, so it needs no schedule of its own.
A config deployed this way must take its credentials from a secret scope (`{{secrets/<scope>/<key>}}`):
`${ENV_VAR}` is not set on a job cluster, and a literal password would be uploaded to the workspace.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from wootric_ingest.cli.dashboard import DASHBOARD_FILE, DASHBOARD_KEY, dashboard
from wootric_ingest.config import ConfigError, parse_config
from wootric_ingest.schedule import CronError

PACKAGE = "wootric_ingest"
ENTRY_POINT = "wootric-ingest"
JOB_KEY = "wootric_ingest"
DEFAULT_SPARK_VERSION = "17.3.x-scala2.13"  # Databricks Runtime 17.3 LTS: Spark 4.0, Delta 4.0
DEFAULT_NODE_TYPE = "i3.xlarge"  # AWS; e.g. Standard_D4ds_v5 on Azure, n2-standard-4 on GCP
PIPELINE_KEY = "wootric_ingest_streams"
PIPELINE_SOURCE = Path(__file__).resolve().parents[1] / "source" / "pipeline.py"
PIPELINE_SCHEMA = "wootric_streams"  # its own schema: its tables never collide with the job's
PROD_ROOT_PATH = "/Workspace/Users/${workspace.current_user.userName}/.bundle/${bundle.name}/${bundle.target}"
_SECRET_REFERENCE = re.compile(r"^\{\{\s*secrets/[^/\s}]+/[^/\s}]+\s*\}\}$")
_ENV_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")


def _strings(node: Any, key: str = "") -> list[tuple[str, str]]:
    """Every string in the parsed YAML with its dotted key."""
    if isinstance(node, dict):
        return [item for k, v in node.items() for item in _strings(v, f"{key}.{k}" if key else str(k))]
    return [(key, node)] if isinstance(node, str) else []


def _databricks_problems(data: Any) -> list[str]:
    """What a config valid on a laptop still lacks on a job cluster."""
    problems = [
        f"{key}: {value} is not set on a Databricks job cluster; use {{{{secrets/<scope>/<key>}}}} "
        "for credentials, or write the value"
        for key, value in _strings(data)
        if _ENV_REFERENCE.search(value)
    ]
    auth = (((data or {}).get("source") or {}).get("api") or {}).get("auth") or {}
    for name in ("password", "client_secret"):
        value = auth.get(name) if isinstance(auth, dict) else None
        if isinstance(value, str) and value and not _ENV_REFERENCE.search(value) and not _SECRET_REFERENCE.match(value):
            problems.append(
                f"source.api.auth.{name}: is written in the file, which the bundle uploads to the "
                "workspace; put it in a secret scope and write {{secrets/<scope>/<key>}}"
            )
    root = ((data or {}).get("catalog") or {}).get("root")
    if isinstance(root, str) and root and not (root.startswith("/") or _URI.match(root)):
        problems.append(
            f"catalog.root: {root!r} is relative, which means nothing on a job cluster; "
            "use a Unity Catalog volume, e.g. /Volumes/main/wootric/lakehouse"
        )
    return problems


class _Unresolved(Mapping[str, str]):
    """An environment in which every variable is set to its own reference: `${VAR}` problems are reported
    once, for Databricks, and the rest of the file is still validated."""

    def __getitem__(self, name: str) -> str:
        return f"${{{name}}}"

    def __contains__(self, name: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _unread_secret(scope: str, key: str) -> str:
    """Stands in for a secret the job cluster will read: the config loader registers whatever a reader returns
    for redaction, so this must be a value that appears in no message (not the reference itself)."""
    return "secret-read-on-the-job-cluster"


def _read_config(path: Path) -> tuple[dict, Any]:
    """The raw YAML and the validated config, or a ConfigError with every problem for Databricks."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(path), ["file not found"]) from None
    problems = _databricks_problems(data)
    try:
        config = parse_config(
            data, source=str(path), secret_reader=_unread_secret, environ=_Unresolved(), base=Path("/")
        )
    except ConfigError as e:
        problems += e.problems
        config = None
    if config is not None:
        try:
            config.trigger.parsed.quartz()
        except CronError as e:
            problems.append(f"source.trigger.cron: {e}")
    if problems:
        raise ConfigError(str(path), problems)
    return data, config


def job_resource(config: Any, config_name: str, wheel_name: str) -> dict:
    """The job: a single-node cluster running the wheel's `wootric-ingest run` on the trigger's schedule."""
    trigger = config.trigger
    return {
        "resources": {
            "jobs": {
                JOB_KEY: {
                    "name": f"wootric-ingest {Path(config_name).stem}",
                    "description": config.description,
                    "schedule": {
                        "quartz_cron_expression": trigger.parsed.quartz(),
                        "timezone_id": trigger.timezone,
                        "pause_status": "UNPAUSED",
                    },
                    "max_concurrent_runs": 1,  # two runs would race for the same tables and bookmarks
                    "tasks": [
                        {
                            "task_key": "wootric_to_delta",
                            "job_cluster_key": JOB_KEY,
                            "python_wheel_task": {
                                "package_name": PACKAGE,
                                "entry_point": ENTRY_POINT,
                                "parameters": ["run", "--config", f"${{workspace.file_path}}/conf/{config_name}"],
                            },
                            "libraries": [{"whl": f"../dist/{wheel_name}"}],
                        }
                    ],
                    "job_clusters": [
                        {
                            "job_cluster_key": JOB_KEY,
                            "new_cluster": {
                                "spark_version": "${var.spark_version}",
                                "node_type_id": "${var.node_type_id}",
                                "num_workers": 0,
                                "data_security_mode": "SINGLE_USER",
                                "spark_conf": {
                                    "spark.master": "local[*, 4]",
                                    "spark.databricks.cluster.profile": "singleNode",
                                },
                                "custom_tags": {"ResourceClass": "SingleNode"},
                            },
                        }
                    ],
                }
            }
        }
    }


def pipeline_resource(data: dict, config: Any, wheel_name: str) -> dict:
    """The pipeline: one feed and one current table per stream of the config, read with the config's API settings
    (credentials as the secret references the config holds; the pipeline reads them on the driver)."""
    api = data["source"]["api"]
    settings = {
        "streams": ",".join(s.name for s in config.streams),
        "base_url": config.api.base_url,
        **{k: str(v) for k, v in (api.get("auth") or {}).items() if v},
        "start_date": config.start_date.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "requests_per_minute": str(config.api.requests_per_minute),
        "max_concurrency": str(config.api.max_concurrency),
    }
    return {
        "resources": {
            "pipelines": {
                PIPELINE_KEY: {
                    "name": f"wootric-ingest streams {config.description}"[:100],
                    "catalog": config.catalog.name or "main",
                    "schema": "${var.pipeline_schema}",
                    "serverless": True,
                    "continuous": False,
                    "libraries": [{"file": {"path": "../pipelines/wootric_pipeline.py"}}],
                    "environment": {"dependencies": [f"${{workspace.file_path}}/dist/{wheel_name}"]},
                    "configuration": {f"wootric.{k}": v for k, v in settings.items()},
                }
            }
        }
    }


def dashboard_resource(config: Any) -> dict:
    """The AI/BI dashboard: its `.lvdash.json`, run on the SQL warehouse given as `warehouse_id`."""
    return {
        "resources": {
            "dashboards": {
                DASHBOARD_KEY: {
                    "display_name": f"Wootric NPS: {config.description}"[:100],
                    "file_path": f"../dashboards/{DASHBOARD_FILE}",
                    "warehouse_id": "${var.warehouse_id}",
                }
            }
        }
    }


def bundle_definition(spark_version: str, node_type: str, *, pipeline: bool = False, dashboard: bool = False) -> dict:
    """`databricks.yml`: the resources, the files to sync, the variables and the targets."""
    synced = ["conf/*.yaml", *(["pipelines/*.py", "dist/*.whl"] if pipeline else [])]
    variables = {
        "spark_version": {
            "description": "Databricks Runtime of the job cluster (Spark 4.0, Delta 4.0)",
            "default": spark_version,
        },
        "node_type_id": {"description": "Node type of the single-node job cluster", "default": node_type},
    }
    if pipeline:
        variables["pipeline_schema"] = {"description": "Schema of the pipeline's tables", "default": PIPELINE_SCHEMA}
    if dashboard:
        variables["warehouse_id"] = {
            "description": "The SQL warehouse the NPS dashboard runs on (bundle deploy --var warehouse_id=...)"
        }
    return {
        "bundle": {"name": JOB_KEY},
        "include": ["resources/*.yml"],
        "sync": {"include": synced},  # bundle/ is git-ignored, and sync honours .gitignore
        "variables": variables,
        "targets": {
            "dev": {"mode": "development", "default": True},
            "prod": {
                "mode": "production",
                "workspace": {"root_path": PROD_ROOT_PATH},
            },
        },
    }


def _dump(data: dict, header: str) -> str:
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=120)


def render(
    config_path: Path,
    wheel: Path,
    out: Path,
    *,
    spark_version: str = DEFAULT_SPARK_VERSION,
    node_type: str = DEFAULT_NODE_TYPE,
    pipeline: bool = False,
) -> list[Path]:
    """Write the bundle for `config_path` into `out` (replacing an earlier rendering), with the pipeline when
    asked; returns the files."""
    data, config = _read_config(config_path)
    if not wheel.is_file() or wheel.suffix != ".whl":
        raise FileNotFoundError(f"{wheel} is not a wheel; build it with `make dist`")
    if out.exists():
        shutil.rmtree(out)
    (out / "resources").mkdir(parents=True)
    (out / "conf").mkdir()
    (out / "dist").mkdir()
    header = f"# Rendered from {config_path} by `make bundle`; edit the config and render again.\n"
    files = {
        out / "databricks.yml": _dump(
            bundle_definition(spark_version, node_type, pipeline=pipeline, dashboard=config.nps is not None), header
        ),
        out / "resources" / f"{JOB_KEY}.job.yml": _dump(job_resource(config, config_path.name, wheel.name), header),
    }
    if pipeline:
        (out / "pipelines").mkdir()
        files[out / "resources" / f"{JOB_KEY}.pipeline.yml"] = _dump(
            pipeline_resource(data, config, wheel.name), header
        )
        files[out / "pipelines" / "wootric_pipeline.py"] = PIPELINE_SOURCE.read_text(encoding="utf-8")
    if config.nps is not None:
        (out / "dashboards").mkdir()
        files[out / "resources" / f"{DASHBOARD_KEY}.dashboard.yml"] = _dump(dashboard_resource(config), header)
        files[out / "dashboards" / DASHBOARD_FILE] = json.dumps(dashboard(config), indent=2) + "\n"
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    shutil.copyfile(config_path, out / "conf" / config_path.name)
    shutil.copyfile(wheel, out / "dist" / wheel.name)
    return [*files, out / "conf" / config_path.name, out / "dist" / wheel.name]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wootric_ingest.cli.bundle",
        description="Render the Databricks Asset Bundle for one source config.",
    )
    parser.add_argument("--config", required=True, type=Path, help="the source's YAML config")
    parser.add_argument("--dist", required=True, type=Path, help="the folder `make dist` wrote the wheel to")
    parser.add_argument("--out", default=Path("bundle"), type=Path, help="where to render (default: bundle)")
    parser.add_argument("--spark-version", default=DEFAULT_SPARK_VERSION)
    parser.add_argument("--node-type", default=DEFAULT_NODE_TYPE)
    parser.add_argument(
        "--pipeline", action="store_true", help="also a Lakeflow Declarative Pipeline over the wootric data source"
    )
    args = parser.parse_args(argv)
    wheels = sorted(args.dist.glob(f"{PACKAGE}-*.whl"))
    if len(wheels) != 1:
        print(
            f"bundle: expected one {PACKAGE} wheel in {args.dist}, found {len(wheels)}; run `make dist`",
            file=sys.stderr,
        )
        return 2
    try:
        files = render(
            args.config,
            wheels[0],
            args.out,
            spark_version=args.spark_version,
            node_type=args.node_type,
            pipeline=args.pipeline,
        )
    except ConfigError as e:
        print(f"bundle: {e}", file=sys.stderr)
        return 2
    print("\n".join(f"wrote {f}" for f in files))
    print(
        f"deploy: cd {args.out} && databricks bundle deploy -t prod   "
        f"(run now: databricks bundle run {JOB_KEY} -t prod)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
