"""The Databricks AI/BI dashboard over the NPS gold tables and the runs table, as a `.lvdash.json` document.

`make bundle` writes it beside the job as a bundle `dashboards` resource. Its datasets are SQL over the
source's own tables (names from `Layout`, so path tables are read by path and managed ones by name), and NPS
is computed with the definition's own SQL (`wootric_ingest.nps`); a test runs every dataset's query in local
Spark against a lakehouse the job wrote.
"""

from __future__ import annotations

from wootric_ingest import nps
from wootric_ingest.config import SourceConfig
from wootric_ingest.lake.layout import Layout, quote

DASHBOARD_KEY = "wootric_nps"
DASHBOARD_FILE = f"{DASHBOARD_KEY}.lvdash.json"
MONTHS = 24  # how far back the trend datasets reach
TAG_MONTHS = 3
TOP_TAGS = 10
RUNS = 50


def _table(name: str | None, path: str) -> str:
    """A table in a dataset's SQL: its metastore name when it has one, else its Delta path."""
    return name if name else f"delta.{quote(path)}"


def dataset_queries(config: SourceConfig) -> dict[str, str]:
    """Each dataset's SQL, by dataset name."""
    assert config.nps is not None, "the dashboard needs the nps section"
    layout = Layout(config.catalog)

    def gold(table: str) -> str:
        return _table(layout.gold_name(config.nps, table), layout.gold_path(config.nps, table))  # type: ignore[arg-type]

    runs = _table(layout.runs_name, layout.runs_path)
    counts = "sum(responses) AS responses, sum(promoters) AS promoters, sum(passives) AS passives, " + (
        "sum(detractors) AS detractors"
    )
    score = nps.nps_sql("promoters", "detractors", "responses")
    return {
        "nps_by_month": (
            f"SELECT month, responses, promoters, passives, detractors, {score} AS nps, declines FROM ("
            f"SELECT trunc(date, 'MM') AS month, {counts}, sum(declines) AS declines FROM {gold('nps_daily')} "
            f"WHERE date >= add_months(trunc(current_date(), 'MM'), -{MONTHS - 1}) GROUP BY trunc(date, 'MM')) "
            "ORDER BY month"
        ),
        "nps_by_segment": (
            f"SELECT segment, value, responses, promoters, passives, detractors, {score} AS nps FROM ("
            f"SELECT segment, value, {counts} FROM {gold('nps_by_segment')} "
            "WHERE month >= add_months(trunc(current_date(), 'MM'), -11) GROUP BY segment, value) "
            "ORDER BY segment, responses DESC"
        ),
        "detractor_tags": (
            f"SELECT tag, sum(detractors) AS detractors, sum(responses) AS responses FROM {gold('nps_by_tag')} "
            f"WHERE month >= add_months(trunc(current_date(), 'MM'), -{TAG_MONTHS - 1}) GROUP BY tag "
            f"HAVING sum(detractors) > 0 ORDER BY detractors DESC, tag LIMIT {TOP_TAGS}"
        ),
        "last_runs": (
            "SELECT run_id, stream, status, sync_mode, started_at, duration_seconds, records_fetched, "
            f"rows_inserted, rows_updated, rows_deleted, error FROM {runs} ORDER BY started_at DESC, stream "
            f"LIMIT {RUNS}"
        ),
    }


def _field(name: str, expression: str | None = None) -> dict:
    return {"name": name, "expression": expression or f"`{name}`"}


def _chart(name: str, dataset: str, kind: str, x: tuple[str, str], y: tuple[str, str], title: str) -> dict:
    """A bar or line chart of one dataset's rows as they are (no aggregation in the widget)."""
    return {
        "name": name,
        "queries": [
            {
                "name": "main",
                "query": {"datasetName": dataset, "fields": [_field(x[0]), _field(y[0])], "disaggregated": True},
            }
        ],
        "spec": {
            "version": 3,
            "widgetType": kind,
            "encodings": {
                "x": {"fieldName": x[0], "scale": {"type": x[1]}, "displayName": x[0]},
                "y": {"fieldName": y[0], "scale": {"type": y[1]}, "displayName": y[0]},
            },
            "frame": {"title": title, "showTitle": True},
        },
    }


def _table_widget(name: str, dataset: str, columns: list[str], title: str) -> dict:
    return {
        "name": name,
        "queries": [
            {
                "name": "main",
                "query": {"datasetName": dataset, "fields": [_field(c) for c in columns], "disaggregated": True},
            }
        ],
        "spec": {
            "version": 1,
            "widgetType": "table",
            "encodings": {"columns": [{"fieldName": c, "displayName": c} for c in columns]},
            "frame": {"title": title, "showTitle": True},
        },
    }


def dashboard(config: SourceConfig) -> dict:
    """The `.lvdash.json` document: the datasets and one page of widgets (NPS by month, responses per month,
    NPS by segment, top tags among detractors, the last runs' status)."""
    queries = dataset_queries(config)
    datasets = [{"name": name, "displayName": name, "queryLines": [sql]} for name, sql in queries.items()]
    widgets = [
        (
            _chart("nps_trend", "nps_by_month", "line", ("month", "temporal"), ("nps", "quantitative"), "NPS by month"),
            0,
            0,
        ),
        (
            _chart(
                "responses_trend",
                "nps_by_month",
                "bar",
                ("month", "temporal"),
                ("responses", "quantitative"),
                "Responses per month",
            ),
            3,
            0,
        ),
        (
            _table_widget(
                "segments",
                "nps_by_segment",
                ["segment", "value", "responses", "promoters", "passives", "detractors", "nps"],
                "NPS by segment (the last 12 months)",
            ),
            0,
            6,
        ),
        (
            _chart(
                "tags",
                "detractor_tags",
                "bar",
                ("tag", "categorical"),
                ("detractors", "quantitative"),
                "Top tags among detractors (the last 3 months)",
            ),
            3,
            6,
        ),
        (
            _table_widget(
                "runs",
                "last_runs",
                ["started_at", "stream", "status", "sync_mode", "records_fetched", "rows_inserted", "error"],
                "The last runs",
            ),
            0,
            12,
        ),
    ]
    layout = [
        {"widget": widget, "position": {"x": x, "y": y, "width": 6 if widget["name"] == "runs" else 3, "height": 6}}
        for widget, x, y in widgets
    ]
    return {
        "datasets": datasets,
        "pages": [{"name": "nps", "displayName": f"NPS: {config.description}"[:100], "layout": layout}],
    }
