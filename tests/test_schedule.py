"""Cron decisions with fixed clocks, across time zones and daylight saving."""

from datetime import datetime, timezone

import pytest

from wootric_ingest.schedule import Cron, CronError


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def test_daily_cron_last_fire_is_today_once_the_time_has_passed():
    cron = Cron.parse("0 6 * * *", "UTC")
    assert cron.last_fire(utc(2026, 3, 10, 6, 0)) == utc(2026, 3, 10, 6, 0)
    assert cron.last_fire(utc(2026, 3, 10, 5, 59)) == utc(2026, 3, 9, 6, 0)


def test_weekly_cron_in_a_zone_uses_that_zones_wall_clock():
    # Sunday 03:00 in Sao Paulo (UTC-3, no DST since 2019) is Sunday 06:00 UTC.
    cron = Cron.parse("0 3 * * 0", "America/Sao_Paulo")
    assert cron.last_fire(utc(2026, 11, 27, 12, 0)) == utc(2026, 11, 22, 6, 0)


def test_dst_shifts_the_utc_instant_of_a_local_schedule():
    cron = Cron.parse("30 9 * * *", "America/Los_Angeles")
    assert cron.last_fire(utc(2026, 1, 15, 23, 0)) == utc(2026, 1, 15, 17, 30)  # PST, -8
    assert cron.last_fire(utc(2026, 7, 15, 23, 0)) == utc(2026, 7, 15, 16, 30)  # PDT, -7


def test_a_time_skipped_by_spring_forward_fires_right_after_the_gap():
    # 2026-03-08 02:30 does not exist in Los Angeles; the run fires at 03:30 PDT = 10:30 UTC.
    cron = Cron.parse("30 2 * * *", "America/Los_Angeles")
    assert cron.last_fire(utc(2026, 3, 8, 12, 0)) == utc(2026, 3, 8, 10, 30)


def test_a_repeated_fall_back_time_fires_once_at_its_first_occurrence():
    cron = Cron.parse("30 1 * * *", "America/Los_Angeles")
    # 2026-11-01 01:30 happens at 08:30 UTC (PDT) and again at 09:30 UTC (PST).
    assert cron.last_fire(utc(2026, 11, 1, 9, 45)) == utc(2026, 11, 1, 8, 30)


def test_day_of_month_and_weekday_both_restricted_match_either():
    cron = Cron.parse("0 0 1 * mon", "UTC")
    assert cron.last_fire(utc(2026, 11, 27)) == utc(2026, 11, 23)  # Monday 23rd beats the 1st


@pytest.mark.parametrize(
    "expression, quartz",
    [
        ("0 6 * * *", "0 0 6 * * ?"),
        ("0 3 * * 0", "0 0 3 ? * SUN"),
        ("*/15 8-18 * * 1-5", "0 */15 8-18 ? * MON-FRI"),
        ("0 4 1 * *", "0 0 4 1 * ?"),
    ],
)
def test_quartz_conversion(expression, quartz):
    assert Cron.parse(expression, "UTC").quartz() == quartz


@pytest.mark.parametrize(
    "expression, message",
    [
        ("0 6 * *", "has 4 fields"),
        ("61 * * * *", "outside 0-59"),
        ("0 6 * * funday", "not a number"),
    ],
)
def test_bad_expressions_say_what_is_wrong(expression, message):
    with pytest.raises(CronError, match=message):
        Cron.parse(expression, "UTC")


def test_unknown_time_zone_is_rejected():
    with pytest.raises(CronError, match="not an IANA time zone"):
        Cron.parse("0 6 * * *", "Mars/Olympus")
