"""The NPS definition, table-driven: classes of scores, which responses count, NPS and its rounding (half away
from zero, as Wootric's own example 46/5/75 -> 55), in plain Python and in the Spark SQL the gold tables use;
and the `nps` config section's validation."""

from __future__ import annotations

from decimal import Decimal

import pytest

from wootric_ingest import nps
from wootric_ingest.config import ConfigError, NpsConfig, parse_config

from conftest import config_dict

#: promoters, detractors, responses -> nps, nps_exact
NPS_CASES = [
    ((46, 5, 75), 55, "54.6667"),  # Wootric's /v1/nps_summary example
    ((1, 0, 8), 13, "12.5000"),  # a half: away from zero
    ((0, 1, 8), -13, "-12.5000"),
    ((1, 0, 200), 1, "0.5000"),
    ((0, 1, 200), -1, "-0.5000"),
    ((1, 0, 128), 1, "0.7813"),  # 0.78125: the exact value's half, away from zero too
    ((0, 1, 128), -1, "-0.7813"),
    ((2, 0, 3), 67, "66.6667"),
    ((1, 2, 3), -33, "-33.3333"),
    ((3, 3, 10), 0, "0.0000"),
    ((5, 0, 5), 100, "100.0000"),
    ((0, 5, 5), -100, "-100.0000"),
    ((0, 0, 4), 0, "0.0000"),  # passives only
    ((0, 0, 0), None, None),  # no responses: no NPS
]

#: score -> category
CATEGORY_CASES = [(0, "detractor"), (6, "detractor"), (7, "passive"), (8, "passive"), (9, "promoter"), (10, "promoter")]

#: score, excluded_from_calculations, soft-deleted -> counts
COUNTED_CASES = [
    (9, False, False, True),
    (0, None, False, True),  # no flag: not excluded
    (10, True, False, False),
    (7, False, True, False),
    (None, False, False, False),
    (-1, False, False, False),
    (11, False, False, False),
]


@pytest.mark.parametrize(("counts", "expected", "exact"), NPS_CASES)
def test_nps_is_rounded_half_away_from_zero(counts, expected, exact):
    assert nps.nps(*counts) == expected
    assert nps.nps_exact(*counts) == (None if exact is None else Decimal(exact))


@pytest.mark.parametrize(("score", "category"), CATEGORY_CASES)
def test_score_classes(score, category):
    assert nps.category(score) == category


@pytest.mark.parametrize("score", [-1, 11])
def test_a_score_outside_0_10_has_no_class(score):
    with pytest.raises(ValueError, match="0-10"):
        nps.category(score)


def values(spark, rows: list[tuple], columns: str):
    """Rows of SQL literals, made in the JVM (no Python worker to start)."""

    def literal(value) -> str:
        return "NULL" if value is None else str(value).lower() if isinstance(value, bool) else str(value)

    text = ", ".join("(" + ", ".join(map(literal, row)) + ")" for row in rows)
    return spark.sql(f"SELECT * FROM VALUES {text} AS t({columns})")


def test_the_spark_sql_form_gives_the_same_answers(spark):
    counts = values(spark, [c for c, _, _ in NPS_CASES], "p, d, n")
    found = counts.selectExpr(
        "p", "d", "n", f"{nps.nps_sql('p', 'd', 'n')} AS nps", f"{nps.nps_exact_sql('p', 'd', 'n')} AS exact"
    ).collect()
    assert {(r.p, r.d, r.n): (r.nps, r.exact) for r in found} == {
        c: (e, None if x is None else Decimal(x)) for c, e, x in NPS_CASES
    }
    scores = values(spark, [(s, e, d) for s, e, d, _ in COUNTED_CASES], "score, excluded, deleted").selectExpr(
        "CAST(score AS INT) AS score", "CAST(excluded AS BOOLEAN) AS excluded", "deleted"
    )
    deleted_at = "CASE WHEN deleted THEN current_timestamp() END"
    counted = scores.selectExpr("*", f"{nps.counted_sql('score', 'excluded', deleted_at)} AS counted").collect()
    assert [(r.score, r.excluded, r.deleted, r.counted) for r in counted] == COUNTED_CASES
    classes = values(spark, [(s,) for s, _ in CATEGORY_CASES], "score")
    assert [tuple(r) for r in classes.selectExpr("score", nps.category_sql("score")).collect()] == CATEGORY_CASES


def test_the_nps_section_is_validated():
    ok = parse_config(config_dict(nps={"layer": "gold", "folder": "wootric", "timezone": "America/Los_Angeles"}))
    assert ok.nps == NpsConfig("gold", "wootric", "America/Los_Angeles")
    assert parse_config(config_dict(nps={"layer": "gold"})).nps == NpsConfig("gold", "", "UTC")
    assert parse_config(config_dict()).nps is None

    bad = config_dict(nps={"folder": "../x", "timezone": "Mars/Olympus", "zone": "UTC"})
    bad["streams"] = {"end_users": {"layer": "raw"}}
    with pytest.raises(ConfigError) as e:
        parse_config(bad)
    problems = "\n".join(e.value.problems)
    assert "nps.layer: is required" in problems
    assert "nps.folder: '../x' is not a safe name" in problems
    assert "nps.timezone: 'Mars/Olympus' is not an IANA time zone" in problems
    assert "nps.zone: unknown key" in problems
    assert "nps: the NPS gold layer is computed from responses" in problems

    clash = config_dict(nps={"layer": "raw", "folder": "wootric"})
    clash["streams"]["declines"]["table"] = "nps_by_tag"
    with pytest.raises(ConfigError, match=r"streams.declines.table: 'nps_by_tag' is the name of an NPS gold table"):
        parse_config(clash)
