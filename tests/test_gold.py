"""The NPS gold layer kept current by every run: after each sync of a sequence (edits, exclusions, score changes,
late arrivals, deletes, a full sync, bad scores), the incrementally kept gold tables equal a from-scratch
recompute, row by row, and `nps_daily` equals the sandbox's own records counted in plain Python."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from sandbox import Sandbox, SandboxOptions
from sandbox.data import DEFAULT_END
from wootric_ingest import nps
from wootric_ingest.lake import gold
from wootric_ingest.run.erasure import People, forget
from wootric_ingest.run.job import run
from wootric_ingest.run.planning import RunOptions

from conftest import lakehouse

TZ = "America/Los_Angeles"
NOW = datetime.fromtimestamp(DEFAULT_END, timezone.utc) + timedelta(days=1)
RECENT = DEFAULT_END - 3 * 86400  # inside the responses' 30-day look-back
EDIT = DEFAULT_END - 60  # after every generated record's updated_at, so an edit is always the newer version
STREAMS = {
    "responses": {"layer": "raw", "folder": "wootric", "table": "responses"},
    "declines": {"layer": "raw", "folder": "wootric", "table": "declines", "deletes": "soft"},
}


def rows(frame) -> list[dict]:
    return sorted((r.asDict() for r in frame.collect()), key=lambda r: [str(v) for v in r.values()])


def recomputed(house) -> dict[str, list[dict]]:
    """Every gold table computed from scratch from the stream tables as they are now, in the account's zone."""
    session = house.spark.newSession()
    session.conf.set("spark.sql.session.timeZone", TZ)
    responses = house.table(house.config.stream("responses")).read(session)
    declines = house.table(house.config.stream("declines")).read(session)
    return {
        "nps_daily": rows(gold.daily(responses, declines)),
        "nps_by_segment": rows(gold.by_segment(responses)),
        "nps_by_tag": rows(gold.by_tag(responses)),
    }


def kept(house) -> dict[str, list[dict]]:
    return {spec.name: rows(gold.gold_table(house, spec.name).read()) for spec in gold.GOLD}


def truth_daily(sb) -> dict:
    """nps_daily from the sandbox's records, in plain Python with the definition's functions."""
    zone = ZoneInfo(TZ)
    days: dict = {}

    def day(record: dict):
        parsed = datetime.strptime(record["created_at"], "%Y-%m-%d %H:%M:%S %z")
        return days.setdefault(parsed.astimezone(zone).date(), Counter())

    for r in sb.dataset.records("responses"):
        score = r["score"]
        if r["excluded_from_calculations"]:
            day(r)["excluded"] += 1
        elif isinstance(score, int) and 0 <= score <= 10:
            counts = day(r)
            counts["responses"] += 1
            counts[nps.category(score) + "s"] += 1
    for r in sb.dataset.records("declines"):
        day(r)["declines"] += 1
    return {
        d: (
            c["responses"],
            c["promoters"],
            c["passives"],
            c["detractors"],
            nps.nps(c["promoters"], c["detractors"], c["responses"]),
            c["excluded"],
            c["declines"],
        )
        for d, c in days.items()
    }


def lake_daily(house) -> dict:
    table = gold.gold_table(house, "nps_daily").read().collect()
    columns = ("responses", "promoters", "passives", "detractors", "nps", "excluded", "declines")
    return {r["date"]: tuple(r[c] for c in columns) for r in table}


def test_incremental_gold_equals_a_recompute_after_every_kind_of_sync(spark, make_config, tmp_path):
    options = SandboxOptions(
        end_users=15, responses=160, declines=30, seed=41, start=DEFAULT_END - 90 * 86400, end=DEFAULT_END
    )
    with Sandbox(options) as sb:
        config = make_config(sb, streams=STREAMS, nps={"layer": f"gold_{uuid.uuid4().hex[:6]}", "timezone": TZ})
        house = lakehouse(spark, config)
        refreshes: list[dict] = []

        def synced(step: int, **run_options) -> None:
            options = RunOptions(streams=tuple(STREAMS), **run_options)
            results = run(config, spark, options, now=NOW + timedelta(hours=step))
            assert [r.stream_name for r in results] == ["responses", "declines", "nps"]
            assert [r.status for r in results] == ["ok"] * 3, [r.error for r in results]
            refreshes.append({"mode": results[-1].mode.value, "reason": results[-1].reason, **results[-1].left_out})
            now = kept(house)
            assert now == recomputed(house), f"step {step}: {refreshes[-1]}"
            daily_table = gold.gold_table(house, "nps_daily")  # the nps row tells the table after the refresh
            assert (results[-1].table_version, results[-1].table_rows) == (daily_table.version(), len(now["nps_daily"]))

        synced(0)  # the first run: everything computed
        assert refreshes[0]["reason"].startswith("recomputed from scratch")
        assert lake_daily(house) == truth_daily(sb)

        responses = sorted(sb.dataset.ids("responses"))  # by creation: the last ones are recent
        sb.dataset.delete("responses", ids=responses[:4])
        sb.dataset.delete("declines", n=3)
        sb.dataset.garble("responses", ids=responses[4:5], field="score", text="ten")
        sb.dataset.garble("responses", ids=responses[5:6], field="score", text="11")
        sb.dataset.garble("responses", ids=responses[6:7], field="score", text=None)
        sb.dataset.update("responses", ids=responses[4:7], fields={"excluded_from_calculations": False}, at=EDIT)
        synced(1, full_sync=True)  # removed and soft-deleted rows, bad scores: all recomputed
        assert refreshes[1]["reason"] == "recomputed from scratch: a full sync of responses"
        bad_scores = {nps.SCORE_NOT_A_NUMBER: 1, nps.SCORE_OUT_OF_RANGE: 1, nps.NO_SCORE: 1}
        assert {k: refreshes[1].get(k) for k in bad_scores} == bad_scores
        history = house.runs.table.read().where("stream = 'nps'").orderBy("started_at").collect()
        assert [r["status"] for r in history] == ["ok"] * 2
        assert {k: history[-1]["left_out"].get(k) for k in bad_scores} == bad_scores  # the run history counts them
        assert lake_daily(house) == truth_daily(sb)

        added = sb.dataset.add("responses", n=3, at=RECENT)
        sb.dataset.update("responses", ids=added[:1], fields={"excluded_from_calculations": True}, at=EDIT)
        sb.dataset.update("responses", ids=added[1:2], fields={"score": 0}, at=EDIT)  # a promoter no more, maybe
        sb.dataset.update("responses", ids=responses[-2:], at=EDIT)  # tags edited
        sb.dataset.update("responses", ids=responses[-5:-2], fields={"score": 10}, at=EDIT)  # scores changed
        sb.dataset.add("responses", n=2, at=RECENT - 10 * 86400)  # late arrivals, inside the look-back
        sb.dataset.add("declines", n=2, at=RECENT)
        synced(2)  # incremental after a full sync: only the dates and months these touched
        assert refreshes[2]["mode"] == "INCREMENTAL" and "local date(s)" in refreshes[2]["reason"]
        assert lake_daily(house) == truth_daily(sb)

        synced(3)  # nothing new: no gold commit
        assert refreshes[3]["reason"] == "no source commit since the last refresh"

        responses_table = house.table(house.config.stream("responses")).read()
        counting = "score BETWEEN 0 AND 10 AND NOT excluded_from_calculations AND _deleted_at IS NULL"
        person = responses_table.where(counting).first()["end_user_id"]
        theirs = responses_table.where(counting).where(f"end_user_id = '{person}'").count()
        counted = sum(day[0] for day in lake_daily(house).values())
        forget(house, People(end_user_ids=(person,)))  # an erasure is commits the gold layer follows
        assert kept(house) == recomputed(house)
        assert sum(day[0] for day in lake_daily(house).values()) == counted - theirs


def test_bad_responses_are_left_out_and_counted_per_reason(spark):
    """Scores missing, not whole numbers, outside 0-10, no created_at, properties that are not a JSON object:
    each left out (the last only of the segments) and counted under its reason; an excluded one only as excluded."""
    rows = [  # id, score, _raw score, excluded, created_at, properties, tags
        ("1", "9", "9", "false", "'2026-05-01T12:00:00Z'", """'{"plan":"Pro","seats":3}'""", """'["UX"]'"""),
        ("2", "NULL", "null", "false", "'2026-05-01T12:00:00Z'", "NULL", "NULL"),
        ("3", "NULL", '"ten"', "false", "'2026-05-01T12:00:00Z'", "NULL", "NULL"),
        ("4", "11", "11", "false", "'2026-05-01T12:00:00Z'", "NULL", "NULL"),
        ("5", "3", "3", "false", "NULL", "NULL", "NULL"),
        ("6", "2", "2", "false", "'2026-05-02T03:00:00Z'", "'not json'", """'["UX","UX","PRICING"]'"""),
        ("7", "NULL", "null", "true", "'2026-05-02T03:00:00Z'", """'{"plan":"Lite"}'""", "NULL"),
    ]
    values = ", ".join(
        f"('{i}', CAST({s} AS INT), '{{\"score\":{raw}}}', {x}, {c}, {p}, {t})" for i, s, raw, x, c, p, t in rows
    )
    responses = spark.sql(
        f"SELECT id, score, _raw, excluded_from_calculations, created_at, tags, "
        f"named_struct('properties', properties) AS end_user, CAST(NULL AS TIMESTAMP) AS _deleted_at "
        f"FROM VALUES {values} AS t(id, score, _raw, excluded_from_calculations, created_at, properties, tags)"
    )
    # the test session's zone is UTC: these dates are UTC dates
    assert gold.left_out(responses) == {
        nps.NO_SCORE: 1,
        nps.SCORE_NOT_A_NUMBER: 1,
        nps.SCORE_OUT_OF_RANGE: 1,
        nps.NO_CREATED_AT: 1,
        nps.UNPARSEABLE_PROPERTIES: 1,
    }
    daily = {r["date"].isoformat(): r.asDict() for r in gold.daily(responses, None).collect()}
    assert {
        d: (r["responses"], r["promoters"], r["detractors"], r["excluded"], r["nps"]) for d, r in daily.items()
    } == {
        "2026-05-01": (1, 1, 0, 0, 100),
        "2026-05-02": (1, 0, 1, 1, -100),
    }
    segments = {
        (r["segment"], r["value"]): (r["responses"], r["excluded"]) for r in gold.by_segment(responses).collect()
    }
    assert segments == {("plan", "Pro"): (1, 0), ("seats", "3"): (1, 0), ("plan", "Lite"): (0, 1)}
    tags = {r["tag"]: (r["responses"], r["detractors"]) for r in gold.by_tag(responses).collect()}
    assert tags == {"UX": (2, 1), "PRICING": (1, 1)}
