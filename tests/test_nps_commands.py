"""`run`, `nps` and `reconcile` through `main()` against the sandbox, with managed tables (gold tables by name):
the run lands the gold layer, `nps` prints the trend Wootric's own summary gives, `reconcile` finds every month
equal, then names the month a response added since the run made differ. An account without responses gets empty
gold tables."""

from __future__ import annotations

import calendar
import time
import uuid
from datetime import date, datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from sandbox import Sandbox, SandboxOptions
from sandbox.data import ACCOUNT_ZONE
from wootric_ingest.cli import main
from wootric_ingest.cli.dashboard import dashboard
from wootric_ingest.cli.nps_report import BAR_WIDTH
from wootric_ingest.config import load_config
from wootric_ingest.lake import gold

from conftest import config_dict, lakehouse

DAY = 86_400
FIGURES = ("responses", "promoters", "passives", "detractors", "nps")


def write_config(tmp_path: Path, sandbox: Sandbox, streams: tuple[str, ...] = ("responses", "declines")) -> Path:
    own = uuid.uuid4().hex[:8]
    data = config_dict(catalog={"root": str(tmp_path / "lake"), "tables": "managed", "job_schema": f"jobs_{own}"})
    data["source"]["api"] = {
        "requests_per_minute": 6000,
        "base_url": sandbox.base_url,
        "auth": {"username": sandbox.credentials.username, "password": sandbox.credentials.password},
    }
    data["streams"] = {stream: {"layer": f"raw_{own}", "folder": "wootric"} for stream in streams}
    data["nps"] = {"layer": f"gold_{own}", "folder": "wootric", "timezone": ACCOUNT_ZONE}
    path = tmp_path / "source.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def month_bounds(day: date) -> tuple[date, date]:
    return day.replace(day=1), day.replace(day=calendar.monthrange(day.year, day.month)[1])


def test_run_then_nps_then_reconcile_equal_then_different(tmp_path, spark, capsys):
    now = int(time.time())
    options = SandboxOptions(end_users=12, responses=240, declines=20, seed=51, start=now - 330 * DAY, end=now - DAY)
    with Sandbox(options) as sb:
        config = write_config(tmp_path, sb)
        assert main(["run", "--config", str(config)]) == 0
        out = capsys.readouterr().out
        assert any(line.startswith("nps ") and line.rstrip().endswith("ok") for line in out.splitlines()), out
        house = lakehouse(spark, load_config(config))
        assert all(gold.gold_table(house, g.name).managed for g in gold.GOLD)

        assert main(["nps", "--config", str(config), "--by", "month", "--last", "3"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0] == f"NPS by month ({ACCOUNT_ZONE}), the last 3"
        rows = lines[2:]
        assert len(rows) == 3
        today = datetime.now(ZoneInfo(ACCOUNT_ZONE)).date()
        last_data_month = datetime.fromtimestamp(options.end - 1, ZoneInfo(ACCOUNT_ZONE)).date()
        summary = sb.dataset.nps_summary(*month_bounds(last_data_month))
        cells = rows[-1].split()
        assert cells[0] == last_data_month.strftime("%Y-%m")
        assert [int(c) for c in cells[1:6]] == [summary[k] for k in FIGURES]
        blocks = round(abs(summary["nps"]) * BAR_WIDTH / 100)
        assert rows[-1].endswith("|" + "█" * blocks if summary["nps"] >= 0 else "█" * blocks + "|")

        assert main(["nps", "--config", str(config), "--by", "week", "--last", "2"]) == 0
        assert [line.split()[0][4:6] for line in capsys.readouterr().out.splitlines()[2:]] == ["-W", "-W"]
        assert main(["nps", "--config", str(config), "--segment", "pricing_plan", "--last", "1"]) == 0
        segment = capsys.readouterr().out.splitlines()
        assert segment[1].split()[:2] == ["period", "value"]
        assert {line.split()[1] for line in segment[2:]} <= {"Lite", "Small", "Pro", "Enterprise"}
        assert main(["nps", "--config", str(config), "--segment", "pricing_plan", "--by", "day"]) == 2
        assert "use --by month with --segment" in capsys.readouterr().err

        # Every dataset of the dashboard runs here, on these tables, and has the columns its widgets show.
        document = dashboard(load_config(config))
        results = {d["name"]: spark.sql("".join(d["queryLines"])) for d in document["datasets"]}
        for page in document["pages"]:
            for item in page["layout"]:
                for query in item["widget"]["queries"]:
                    shown = results[query["query"]["datasetName"]].columns
                    assert {f["name"] for f in query["query"]["fields"]} <= set(shown)
        found = {name: frame.collect() for name, frame in results.items()}
        monthly = {
            r["month"]: (r["responses"], r["promoters"], r["passives"], r["detractors"], r["nps"])
            for r in found["nps_by_month"]
        }
        assert monthly[last_data_month.replace(day=1)] == tuple(summary[k] for k in FIGURES)
        assert found["nps_by_segment"] and found["detractor_tags"]
        assert {r["stream"] for r in found["last_runs"]} == {"responses", "declines", "nps"}

        assert main(["reconcile", "--config", str(config), "--months", "12"]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[-1] == "OK: the lake matches Wootric in all 12 months"
        months = out[2:-1]
        assert len(months) == 12 and all(line.endswith("equal") for line in months)
        assert months[-1].startswith(today.strftime("%Y-%m"))

        three_months_ago = datetime.fromtimestamp(now - 95 * DAY, timezone.utc)
        late = sb.dataset.add("responses", n=2, at=int(three_months_ago.timestamp()))
        sb.dataset.update("responses", ids=late, fields={"score": 10, "excluded_from_calculations": False})
        differing = three_months_ago.astimezone(ZoneInfo(ACCOUNT_ZONE)).strftime("%Y-%m")
        assert main(["reconcile", "--config", str(config), "--months", "12"]) == 1
        captured = capsys.readouterr()
        assert captured.err.strip() == f"wootric-ingest: reconcile: the lake differs from Wootric in {differing}"
        (row,) = [line for line in captured.out.splitlines() if line.startswith(differing)]
        assert row.endswith("responses -2, promoters -2")


def test_an_account_without_responses_gets_empty_gold_tables(tmp_path, spark, capsys):
    with Sandbox(SandboxOptions(end_users=1, responses=0, declines=0, seed=52)) as sb:
        config = write_config(tmp_path, sb, streams=("responses",))
        assert main(["run", "--config", str(config)]) == 0
        house = lakehouse(spark, load_config(config))
        assert [gold.gold_table(house, g.name).count() for g in gold.GOLD] == [0, 0, 0]
        capsys.readouterr()
        assert main(["nps", "--config", str(config)]) == 0
        assert capsys.readouterr().out.splitlines()[-1] == "(no responses in the gold tables yet)"
