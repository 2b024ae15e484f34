"""The NPS definition, in one place: which responses count, how a score is classed, how NPS is computed and
rounded. Plain Python for the CLI and the tests, and the same rules as Spark SQL text for the gold tables, so
the two cannot drift apart (a table-driven test runs both).

A response counts when it is live (not soft-deleted), not `excluded_from_calculations`, and has a score 0-10.
Promoters score 9-10, passives 7-8, detractors 0-6. NPS = 100 x (promoters - detractors) / responses, shown
as an integer rounded half away from zero (Wootric's `/v1/nps_summary` doc shows 46 promoters, 5 detractors
and 75 responses as 55) and as a decimal to `EXACT_SCALE` places, rounded the same way. Both are computed in
whole numbers, so no float ever decides a rounding. No responses: no NPS (null).
"""

from __future__ import annotations

from decimal import Decimal

MIN_SCORE, MAX_SCORE = 0, 10
PROMOTER_MIN, PASSIVE_MIN = 9, 7
EXACT_PRECISION, EXACT_SCALE = 9, 4  # -100.0000 .. 100.0000
EXACT_TYPE = f"decimal({EXACT_PRECISION},{EXACT_SCALE})"

#: Why a live, not excluded response is left out of the counts (the run history counts each reason).
NO_SCORE = "score missing"
SCORE_NOT_A_NUMBER = "score not a whole number"
SCORE_OUT_OF_RANGE = "score outside 0-10"
NO_CREATED_AT = "created_at missing"
UNPARSEABLE_PROPERTIES = "end_user.properties not a JSON object"  # left out of nps_by_segment only


def category(score: int) -> str:
    """`promoter`, `passive` or `detractor` of a score 0-10."""
    if not MIN_SCORE <= score <= MAX_SCORE:
        raise ValueError(f"a score is {MIN_SCORE}-{MAX_SCORE}, not {score}")
    return "promoter" if score >= PROMOTER_MIN else "passive" if score >= PASSIVE_MIN else "detractor"


def _half_away_from_zero(numerator: int, denominator: int) -> int:
    """numerator / denominator (> 0) rounded to a whole number, a half away from zero."""
    magnitude = (2 * abs(numerator) + denominator) // (2 * denominator)
    return magnitude if numerator >= 0 else -magnitude


def nps(promoters: int, detractors: int, responses: int) -> int | None:
    """The NPS as Wootric shows it: a whole number, a half rounded away from zero; None without responses."""
    if responses <= 0:
        return None
    return _half_away_from_zero(100 * (promoters - detractors), responses)


def nps_exact(promoters: int, detractors: int, responses: int) -> Decimal | None:
    """The NPS to `EXACT_SCALE` decimal places (a half away from zero); None without responses."""
    if responses <= 0:
        return None
    scaled = _half_away_from_zero(100 * 10**EXACT_SCALE * (promoters - detractors), responses)
    return Decimal(scaled).scaleb(-EXACT_SCALE)


# ----------------------------------------------------------------------------------------------- Spark SQL


def _sql_half_away_from_zero(numerator: str, denominator: str) -> str:
    return f"(sign({numerator}) * ((2 * abs({numerator}) + {denominator}) div (2 * {denominator})))"


def nps_sql(promoters: str, detractors: str, responses: str) -> str:
    """`nps` over three count columns, as a Spark SQL expression (int; null without responses)."""
    rounded = _sql_half_away_from_zero(f"(100 * (CAST({promoters} AS BIGINT) - {detractors}))", responses)
    return f"CASE WHEN {responses} > 0 THEN CAST({rounded} AS INT) END"


def nps_exact_sql(promoters: str, detractors: str, responses: str) -> str:
    """`nps_exact` over three count columns, as a Spark SQL expression (EXACT_TYPE; null without responses)."""
    scaled = _sql_half_away_from_zero(
        f"({100 * 10**EXACT_SCALE} * (CAST({promoters} AS BIGINT) - {detractors}))", responses
    )
    unit = f"1E-{EXACT_SCALE}BD"  # a decimal literal: the product stays exact
    return f"CASE WHEN {responses} > 0 THEN CAST(CAST({scaled} AS DECIMAL(18,0)) * {unit} AS {EXACT_TYPE}) END"


def counted_sql(score: str, excluded: str, deleted_at: str) -> str:
    """Whether a response counts, as a Spark SQL condition over its score, exclusion flag and deletion mark."""
    in_range = f"coalesce({score} BETWEEN {MIN_SCORE} AND {MAX_SCORE}, false)"
    return f"({deleted_at} IS NULL AND NOT coalesce({excluded}, false) AND {in_range})"


def category_sql(score: str) -> str:
    """`category` of a score 0-10 as a Spark SQL expression."""
    return (
        f"CASE WHEN {score} >= {PROMOTER_MIN} THEN 'promoter' WHEN {score} >= {PASSIVE_MIN} THEN 'passive' "
        f"ELSE 'detractor' END"
    )
