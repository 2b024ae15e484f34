"""A short, seeded chaos session: the real job in a worker process against the sandbox process, killed with
SIGKILL mid-landing, with faults and a record whose cursor cannot be read; the session ends with a run that
succeeds and resumes the killed one, and nothing may be lost, duplicated or stale. `make chaos` runs the long
version; tests/test_resume.py kills a run at each point on its own."""

from __future__ import annotations

from chaos.harness import run_chaos


def test_a_short_chaos_session_loses_nothing_and_duplicates_nothing(tmp_path):
    report = run_chaos(
        tmp_path / "chaos",
        runs=1,
        seed=7,  # faults that cost retries; a 429 without headers before the first window waits the assumed minute
        kill_rate=1.0,
        kill_points=("landing",),
        faults_per_run=2,
        end_users=40,
        responses=120,
        declines=15,
        say=lambda line: None,
    )
    print(report.table())
    assert report.kills == {"landing": 1}
    assert sum(report.faults.values()) >= 1
    assert report.succeeded >= 1 and report.resumes >= 1
    assert report.checks >= 3 * report.runs
    assert (report.lost, report.duplicates, report.stale) == (0, 0, 0)
    assert report.records_landed == report.truth_records
    assert report.unreadable_cursors >= 1, "the session's records include one whose cursor cannot be read"
