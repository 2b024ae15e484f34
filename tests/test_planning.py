"""The planning decision with fixed clocks: incremental from the bookmark, or a full sync and why.

The table's state is given directly (lake/state.py derives it from Delta; tests/test_sink.py covers that),
so the additional full sync's cron is checked across time zones and daylight saving without Spark.
"""

from datetime import datetime, timedelta, timezone

from wootric_ingest.lake.state import SyncMode, TableState, last_full_sync
from wootric_ingest.lake.tables import CommitInfo
from wootric_ingest.run.planning import RunOptions, plan_stream


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


FEB_1 = utc(2024, 2, 1)
NOON = utc(2024, 3, 2, 12, 0, 0, 500)


def synced(bookmark="2024-03-01T10:00:00Z", last_full=FEB_1) -> TableState:
    return TableState(exists=True, bookmark=bookmark, bookmark_from="run r1", last_full_sync=last_full)


def plan(config, stream="end_users", state=None, now=NOON, **options):
    return plan_stream(config, config.stream(stream), state or synced(), RunOptions(**options), now)


def with_full_sync(make_config, cron, tz):
    return make_config(source={"additional_full_sync": {"cron": cron, "timezone": tz}})


def test_an_incremental_stream_reads_from_its_bookmark(make_config):
    p = plan(make_config())
    assert (p.mode, p.since, p.until) == (SyncMode.INCREMENTAL, utc(2024, 3, 1, 10), utc(2024, 3, 2, 12))
    assert p.bookmark == "2024-03-01T10:00:00Z"
    assert p.reason == "bookmark 2024-03-01T10:00:00Z from run r1"


def test_the_look_back_rereads_recent_days_but_never_before_the_start_date(make_config):
    config = make_config()  # responses look back 30 days; start_date is 2024-01-01
    assert plan(config, "responses").since == utc(2024, 1, 31, 10)
    assert "minus 30 days look-back" in plan(config, "responses").reason
    early = plan(config, "responses", synced(bookmark="2024-01-10T00:00:00Z"))
    assert early.since == utc(2024, 1, 1)


def test_the_first_run_is_a_full_sync_from_the_start_date(make_config):
    p = plan(make_config(), state=TableState(exists=False))
    assert (p.mode, p.since, p.reason) == (SyncMode.FULL, utc(2024, 1, 1), "first run: the table does not exist yet")


def test_an_empty_table_reads_incrementally_from_the_start_date(make_config):
    p = plan(make_config(), state=synced(bookmark=None))
    assert (p.mode, p.since) == (SyncMode.INCREMENTAL, utc(2024, 1, 1))


def test_an_empty_table_no_run_committed_to_is_still_a_first_run(make_config):
    p = plan(make_config(), state=TableState(exists=True, unwritten=True))
    assert (p.mode, p.since, p.reason) == (
        SyncMode.FULL,
        utc(2024, 1, 1),
        "first run: the table is empty and no run has committed to it yet",
    )


def test_full_table_streams_and_full_sync_flag_always_sync_everything(make_config):
    config = make_config()
    assert (plan(config, "declines").mode, plan(config, "declines").reason) == (
        SyncMode.FULL,
        "sync type is FULL_TABLE",
    )
    forced = plan(config, full_sync=True)
    assert (forced.mode, forced.since, forced.reason) == (SyncMode.FULL, utc(2024, 1, 1), "--full-sync was given")


def test_additional_full_sync_is_due_once_the_cron_fired_after_the_last_full_sync(make_config):
    config = with_full_sync(make_config, "0 3 * * 0", "UTC")  # Sundays 03:00; 2024-03-03 is a Sunday
    before_fire = plan(config, state=synced(last_full=utc(2024, 2, 25, 3, 0, 5)), now=utc(2024, 3, 3, 2, 59))
    assert before_fire.mode == SyncMode.INCREMENTAL
    due = plan(config, state=synced(last_full=utc(2024, 2, 25, 3, 0, 5)), now=utc(2024, 3, 3, 3, 0, 1))
    assert due.mode == SyncMode.FULL and due.since == utc(2024, 1, 1)
    assert due.reason == (
        "additional full sync due: '0 3 * * 0' (UTC) fired at 2024-03-03T03:00:00+00:00; "
        "the last full sync was 2024-02-25T03:00:05+00:00"
    )
    done = plan(config, state=synced(last_full=utc(2024, 3, 3, 3, 0, 1)), now=utc(2024, 3, 3, 9))
    assert done.mode == SyncMode.INCREMENTAL


def test_a_full_sync_that_read_the_source_exactly_at_the_fire_time_counts(make_config):
    config = with_full_sync(make_config, "0 3 * * *", "UTC")
    assert (
        plan(config, state=synced(last_full=utc(2024, 3, 2, 3)), now=utc(2024, 3, 2, 12)).mode == SyncMode.INCREMENTAL
    )


def test_a_table_without_a_known_full_sync_gets_one_when_the_cron_has_fired(make_config):
    config = with_full_sync(make_config, "0 3 1 * *", "UTC")
    p = plan(config, state=synced(last_full=None))
    assert p.mode == SyncMode.FULL and p.reason.endswith("the last full sync was never (not in the table's history)")


def test_the_cron_fires_on_its_own_zones_wall_clock(make_config):
    # Monday 00:00 in Tokyo is Sunday 15:00 UTC: on Sunday evening UTC the sync is already due.
    tokyo = with_full_sync(make_config, "0 0 * * 1", "Asia/Tokyo")
    last_full = utc(2024, 2, 26, 1)  # after the previous Monday's fire, in Tokyo and in UTC alike
    assert plan(tokyo, state=synced(last_full=last_full), now=utc(2024, 3, 3, 14, 59)).mode == SyncMode.INCREMENTAL
    due = plan(tokyo, state=synced(last_full=last_full), now=utc(2024, 3, 3, 15, 0))
    assert due.mode == SyncMode.FULL and "fired at 2024-03-04T00:00:00+09:00" in due.reason
    # The same cron in UTC would not fire until Monday.
    in_utc = with_full_sync(make_config, "0 0 * * 1", "UTC")
    assert plan(in_utc, state=synced(last_full=last_full), now=utc(2024, 3, 3, 15, 0)).mode == SyncMode.INCREMENTAL


def test_daylight_saving_moves_the_utc_instant_of_the_fire(make_config):
    # 02:00 in New York is 07:00 UTC in winter (EST) and 06:00 UTC in summer (EDT).
    config = with_full_sync(make_config, "0 2 * * *", "America/New_York")
    winter_last = utc(2024, 1, 14, 7, 0, 30)
    assert plan(config, state=synced(last_full=winter_last), now=utc(2024, 1, 15, 6, 30)).mode == SyncMode.INCREMENTAL
    assert plan(config, state=synced(last_full=winter_last), now=utc(2024, 1, 15, 7, 0)).mode == SyncMode.FULL
    summer_last = utc(2024, 7, 14, 6, 0, 30)
    assert plan(config, state=synced(last_full=summer_last), now=utc(2024, 7, 15, 5, 59)).mode == SyncMode.INCREMENTAL
    assert plan(config, state=synced(last_full=summer_last), now=utc(2024, 7, 15, 6, 0)).mode == SyncMode.FULL


def test_a_wall_clock_time_repeated_by_fall_back_triggers_one_full_sync(make_config):
    # 2024-11-03 01:30 happens twice in New York: 05:30 UTC (EDT) and 06:30 UTC (EST).
    config = with_full_sync(make_config, "30 1 * * *", "America/New_York")
    last_full = utc(2024, 11, 2, 5, 30)
    first = plan(config, state=synced(last_full=last_full), now=utc(2024, 11, 3, 5, 31))
    assert first.mode == SyncMode.FULL
    after_repeat = plan(config, state=synced(last_full=utc(2024, 11, 3, 5, 31)), now=utc(2024, 11, 3, 6, 45))
    assert after_repeat.mode == SyncMode.INCREMENTAL


def test_spring_forward_still_fires_once_on_the_short_day(make_config):
    # 2024-03-10 02:30 does not exist in New York; the fire falls after the gap, once.
    config = with_full_sync(make_config, "30 2 * * *", "America/New_York")
    last_full = utc(2024, 3, 9, 7, 31)  # after Saturday's 02:30 EST fire
    assert plan(config, state=synced(last_full=last_full), now=utc(2024, 3, 10, 6, 59)).mode == SyncMode.INCREMENTAL
    due = plan(config, state=synced(last_full=last_full), now=utc(2024, 3, 10, 12))
    assert due.mode == SyncMode.FULL
    assert (
        plan(config, state=synced(last_full=utc(2024, 3, 10, 12)), now=utc(2024, 3, 10, 23)).mode
        == SyncMode.INCREMENTAL
    )


def test_commit_metadata_carries_the_last_full_sync_forward(make_config):
    config = with_full_sync(make_config, "0 3 * * 0", "UTC")
    full = plan(config, full_sync=True, now=utc(2024, 3, 2, 12))
    incremental = plan(config, state=synced(last_full=utc(2024, 3, 2, 12)), now=utc(2024, 3, 2, 13))
    full_meta = full.commit_metadata("r-full", "2024-03-02T11:00:00Z")
    incremental_meta = incremental.commit_metadata("r-inc", "2024-03-02T12:30:00Z")
    assert full_meta["sync"] == SyncMode.FULL and full_meta["last_full_sync"] == "2024-03-02T12:00:00+00:00"
    assert incremental_meta["sync"] == SyncMode.INCREMENTAL
    assert incremental_meta["last_full_sync"] == "2024-03-02T12:00:00+00:00"
    assert incremental_meta["reason"] == incremental.reason


def test_last_full_sync_is_read_from_the_newest_commit_that_knows_it():
    def commit(version, **meta):
        return CommitInfo(version, version - 1, "MERGE", {}, meta)

    newest_first = [
        commit(4, sync="INCREMENTAL", last_full_sync="2024-03-02T12:00:00+00:00"),
        commit(3, sync="FULL", until="2024-03-02T12:00:00+00:00"),
        commit(2, sync="FULL", until="2024-02-01T00:00:00+00:00"),
    ]
    assert last_full_sync(newest_first) == utc(2024, 3, 2, 12)
    assert last_full_sync(newest_first[2:]) == utc(2024, 2, 1)
    assert last_full_sync([commit(1, sync="INCREMENTAL", last_full_sync=None)]) is None
    assert last_full_sync([]) is None


def test_until_is_whole_seconds_so_a_rerun_in_the_same_second_reads_the_same_window(make_config):
    now = utc(2024, 3, 2, 12, 0, 0) + timedelta(microseconds=999_999)
    assert plan(make_config(), now=now).until == utc(2024, 3, 2, 12)
