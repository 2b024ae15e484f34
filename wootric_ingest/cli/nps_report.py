"""The NPS commands' logic: `nps` (the trend from the gold tables, one row per period with a bar) and
`reconcile` (Wootric's own `/v1/nps_summary` per month against the gold tables). Periods are built from
`nps_daily` rows in plain Python: the counts add up, and the NPS of a period comes from `wootric_ingest.nps`.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from wootric_ingest import nps

PERIODS = ("day", "week", "month")
COMPARED = ("nps", "responses", "promoters", "passives", "detractors")
BAR_WIDTH = 20  # characters for 100 NPS points, on each side of the axis


@dataclass(frozen=True)
class Counts:
    responses: int = 0
    promoters: int = 0
    passives: int = 0
    detractors: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.responses + other.responses,
            self.promoters + other.promoters,
            self.passives + other.passives,
            self.detractors + other.detractors,
        )

    @property
    def nps(self) -> int | None:
        return nps.nps(self.promoters, self.detractors, self.responses)


@dataclass(frozen=True)
class Period:
    start: date
    label: str
    counts: Counts
    value: str | None = None  # a segment's value, for `--segment`


def period_start(day: date, by: str) -> date:
    """The first day of the period `day` is in: itself, its ISO week's Monday, or its month's first day."""
    if by == "week":
        return day - timedelta(days=day.weekday())
    if by == "month":
        return day.replace(day=1)
    return day


def label(start: date, by: str) -> str:
    if by == "week":
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    return start.strftime("%Y-%m") if by == "month" else start.isoformat()


def trend(daily: Iterable[tuple[date, Counts]], by: str, last: int) -> list[Period]:
    """The last `last` periods that have rows, oldest first, each the sum of its days."""
    sums: dict[date, Counts] = {}
    for day, counts in daily:
        start = period_start(day, by)
        sums[start] = sums.get(start, Counts()) + counts
    starts = sorted(sums)[-last:] if last else []
    return [Period(s, label(s, by), sums[s]) for s in starts]


def segment_trend(rows: Iterable[tuple[date, str, Counts]], last: int) -> list[Period]:
    """One segment's months (the last `last` months that have rows), each month's values by responses."""
    rows = list(rows)
    months = sorted({m for m, _, _ in rows})[-last:] if last else []
    kept = [r for r in rows if r[0] in months]
    kept.sort(key=lambda r: (r[0], -r[2].responses, r[1]))
    return [Period(m, label(m, "month"), c, value) for m, value, c in kept]


def bar(score: int | None) -> str:
    """The NPS on a horizontal axis: blocks to the right of `|` when positive, to the left when negative."""
    if score is None:
        return " " * BAR_WIDTH + "|"
    blocks = "█" * round(abs(score) * BAR_WIDTH / 100)
    return (" " * BAR_WIDTH + "|" + blocks) if score >= 0 else (blocks.rjust(BAR_WIDTH) + "|")


def render(periods: Sequence[Period], title: str) -> str:
    """The trend as a table: period (and value), the counts, the NPS and its bar."""
    with_value = any(p.value is not None for p in periods)
    header = ["period", *(["value"] if with_value else []), "responses", "promoters", "passives", "detractors", "nps"]
    body = [
        [
            p.label,
            *([p.value or ""] if with_value else []),
            str(p.counts.responses),
            str(p.counts.promoters),
            str(p.counts.passives),
            str(p.counts.detractors),
            "-" if p.counts.nps is None else str(p.counts.nps),
        ]
        for p in periods
    ]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    left = 2 if with_value else 1

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    lines = [title, line(header) + "  " + "-100".ljust(BAR_WIDTH) + "0" + "+100".rjust(BAR_WIDTH)]
    lines += [line(cells) + "  " + bar(p.counts.nps) for cells, p in zip(body, periods)]
    if not periods:
        lines.append("(no responses in the gold tables yet)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ reconcile


def recent_months(today: date, count: int) -> list[tuple[date, date]]:
    """The first and last day of each of the `count` months up to `today`'s, oldest first."""
    months = []
    year, month = today.year, today.month
    for _ in range(count):
        months.append((date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return months[::-1]


def local_today(timezone: str) -> date:
    return datetime.now(ZoneInfo(timezone)).date()


@dataclass(frozen=True)
class MonthCheck:
    """One month: Wootric's figures and ours, by the COMPARED fields."""

    month: date
    wootric: dict[str, int]
    lake: dict[str, int]

    @property
    def differences(self) -> dict[str, int]:
        return {k: self.lake[k] - self.wootric[k] for k in COMPARED if self.lake[k] != self.wootric[k]}


def lake_figures(counts: Counts) -> dict[str, int]:
    """Our month as Wootric's summary shows it: a month without responses has NPS 0 there (our reading)."""
    return {
        "nps": counts.nps or 0,
        "responses": counts.responses,
        "promoters": counts.promoters,
        "passives": counts.passives,
        "detractors": counts.detractors,
    }


def wootric_figures(summary: dict) -> dict[str, int]:
    return {k: int(summary.get(k) or 0) for k in COMPARED}


def render_reconciliation(checks: Sequence[MonthCheck]) -> str:
    """One row per month: Wootric's and our NPS, responses, promoters, passives, detractors, and what differs."""
    header = ["month", "wootric nps/resp/P/Pa/D", "lake nps/resp/P/Pa/D", "difference (lake - wootric)"]

    def figures(values: dict[str, int]) -> str:
        return " / ".join(str(values[k]) for k in COMPARED)

    body = [
        [
            c.month.strftime("%Y-%m"),
            figures(c.wootric),
            figures(c.lake),
            ", ".join(f"{k} {v:+d}" for k, v in c.differences.items()) or "equal",
        ]
        for c in checks
    ]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *body])
