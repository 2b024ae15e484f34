"""Cron schedules in a time zone: when did one last fire, and the same schedule in Quartz syntax.

The additional full sync is due when its cron fired after the table's last full sync, so the job
needs "the most recent fire time at or before now" in the schedule's own zone, DST included. Five
fields (minute hour day-of-month month day-of-week), the usual `*`, lists, ranges, steps and names.
A wall-clock time skipped by a spring-forward fires right after the gap; a repeated one fires once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_QUARTZ_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
_LOOKBACK_DAYS = 8 * 366  # a Feb 29 on a Monday repeats within 28 years; 8 covers every Feb 29


class CronError(ValueError):
    """A cron expression or time zone that cannot be understood."""


def _number(token: str, names: list[str] | None, offset: int) -> int:
    if names and token.lower() in names:
        return names.index(token.lower()) + offset
    if not token.isdigit():
        raise CronError(f"'{token}' is not a number")
    return int(token)


def _field(text: str, low: int, high: int, names: list[str] | None = None, name_offset: int = 0) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        step = _number(step_text, None, 0) if step_text else 1
        if step < 1:
            raise CronError(f"step in '{part}' must be at least 1")
        if span == "*":
            first, last = low, high
        elif "-" in span:
            a, b = span.split("-", 1)
            first, last = _number(a, names, name_offset), _number(b, names, name_offset)
        else:
            first = _number(span, names, name_offset)
            last = high if step_text else first
        if not (low <= first <= high and low <= last <= high) or first > last:
            raise CronError(f"'{part}' is outside {low}-{high}")
        values.update(range(first, last + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    """A parsed five-field cron expression bound to a time zone."""

    expression: str
    timezone: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, expression: str, tz: str) -> Cron:
        parts = expression.split()
        if len(parts) != 5:
            raise CronError(
                f"'{expression}' has {len(parts)} fields; expected 5: minute hour day-of-month month day-of-week"
            )
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise CronError(f"'{tz}' is not an IANA time zone (e.g. UTC, Europe/Lisbon, America/Sao_Paulo)") from None
        minute, hour, day, month, weekday = parts
        weekdays = _field(weekday, 0, 7, _DAYS)
        return cls(
            expression=expression,
            timezone=tz,
            minutes=_field(minute, 0, 59),
            hours=_field(hour, 0, 23),
            days=_field(day, 1, 31),
            months=_field(month, 1, 12, _MONTHS, 1),
            weekdays=frozenset(d % 7 for d in weekdays),
            any_day=day.startswith("*"),
            any_weekday=weekday.startswith("*"),
        )

    def _matches_day(self, d: date) -> bool:
        if d.month not in self.months:
            return False
        in_month = d.day in self.days
        in_week = (d.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week  # cron's rule: both restricted means either matches

    def last_fire(self, now: datetime) -> datetime | None:
        """The most recent fire time at or before `now` (aware), in UTC; None if it never fired in 8 years."""
        zone = ZoneInfo(self.timezone)
        now_utc = now.astimezone(timezone.utc)
        day = now_utc.astimezone(zone).date()
        for _ in range(_LOOKBACK_DAYS):
            if self._matches_day(day):
                for hour in sorted(self.hours, reverse=True):
                    for minute in sorted(self.minutes, reverse=True):
                        fire = datetime.combine(day, time(hour, minute), tzinfo=zone).astimezone(timezone.utc)
                        if fire <= now_utc:
                            return fire
            day -= timedelta(days=1)
        return None

    def quartz(self) -> str:
        """The schedule in Quartz syntax (Databricks job schedules): seconds first, `?` for the unused day field."""
        minute, hour, day, month, weekday = self.expression.split()
        if not self.any_day and not self.any_weekday:
            raise CronError(f"'{self.expression}' restricts both day-of-month and day-of-week; Quartz allows only one")
        if self.any_weekday:
            return f"0 {minute} {hour} {day} {month} ?"
        return f"0 {minute} {hour} ? {month} {_quartz_weekdays(weekday)}"


def _quartz_weekdays(field: str) -> str:
    """Cron weekdays (0-7, Sunday 0 or 7) as Quartz names, which have no numbering ambiguity."""

    def name(token: str) -> str:
        return _QUARTZ_DAYS[_number(token, _DAYS, 0) % 7]

    parts = []
    for part in field.split(","):
        span, slash, step = part.partition("/")
        if span == "*":
            text = "SUN-SAT"
        elif "-" in span:
            a, b = span.split("-", 1)
            text = f"{name(a)}-{name(b)}"
        else:
            text = name(span)
        parts.append(text + (slash + step if slash else ""))
    return ",".join(parts)
