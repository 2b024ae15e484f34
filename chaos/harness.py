"""The chaos suite: the real job, run again and again against the sandbox with random faults and kills, and the
tables checked against the sandbox's ground truth after every run.

One session = one sandbox process (loopback, seeded data, a generous rate limit with short windows so a 429
costs seconds, not a minute), one lakehouse, one warm job worker (`chaos.worker`). Each run:
1. when the previous run succeeded, the data changes (records added, end users updated, declines deleted, and
   one record's cursor rendered as text no clock reads, though the sandbox still filters and sorts it by its
   real time) and the planned windows are noted; an interrupted run is resumed against unchanged data;
2. a few faults of random kinds are scripted in the sandbox;
3. the job runs; with probability `kill_rate` its whole process group gets SIGKILL at a chosen point:
   `extracting` (the sandbox has served the run's k-th list page, k from 1 to 4), `landing` (a stream's
   staging manifest appears: its extraction is complete, its landing under way), `committed` (a stream's
   table gets a new version: right after a commit, between streams) or `timed` (a random moment of a
   typical run);
4. every table is read (a plain Delta read by the worker): no id twice, ever; after a run that succeeded,
   every ground-truth record is there with exactly its latest content.

Requests wasted by resumes: for each run that had to be resumed, the successful list pages served over all
its attempts minus the pages one clean pass over the same planned windows needs (measured right after, on the
same data). Everything is seeded: the same seed gives the same data, faults and kill points (timing-dependent
kill moments aside).
"""

from __future__ import annotations

import json
import os
import random
import selectors
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sandbox.faults import KINDS as FAULT_KINDS
from sandbox.process import SandboxProcess
from wootric_ingest.api import WootricClient
from wootric_ingest.config import load_config
from wootric_ingest.lake.layout import Layout
from wootric_ingest.run.resume import RESUMED
from wootric_ingest.streams import STREAMS

REPO = Path(__file__).resolve().parents[1]
KILL_POINTS = ("extracting", "landing", "committed", "timed")
ATTEMPT_TIMEOUT = 900.0


@dataclass
class Report:
    runs: int = 0
    succeeded: int = 0
    failed: int = 0
    kills: Counter = field(default_factory=Counter)
    resumes: int = 0
    faults: dict = field(default_factory=dict)
    records_served: int = 0
    unreadable_cursors: int = 0
    records_landed: int = 0
    truth_records: int = 0
    lost: int = 0
    duplicates: int = 0
    stale: int = 0
    checks: int = 0
    requests_wasted: int = 0
    interrupted_syncs: int = 0
    clean_pass_records: int = 0
    seconds: float = 0.0
    worker_starts: int = 0

    def table(self) -> str:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) or "none"
        kills = ", ".join(f"{k} {v}" for k, v in sorted(self.kills.items())) or "none"
        rows = [
            (
                "runs",
                f"{self.runs} ({self.succeeded} succeeded, {sum(self.kills.values())} killed, "
                f"{self.failed} ended with a failed stream)",
            ),
            ("faults injected", f"{sum(self.faults.values())} ({faults})"),
            ("kills", f"{sum(self.kills.values())} ({kills})"),
            ("resumes", f"{self.resumes} runs picked up an interrupted run's staging"),
            ("records served", str(self.records_served)),
            ("unreadable cursors", f"{self.unreadable_cursors} records whose cursor no clock reads"),
            (
                "records landed",
                f"{self.records_landed} rows in the tables at the end (ground truth: {self.truth_records})",
            ),
            ("lost", str(self.lost)),
            ("duplicates", str(self.duplicates)),
            ("stale rows", str(self.stale)),
            ("table checks", str(self.checks)),
            (
                "requests wasted by resumes",
                f"{self.requests_wasted} list pages over {self.interrupted_syncs} interrupted syncs",
            ),
            ("Spark starts", str(self.worker_starts)),
            ("wall time", f"{self.seconds / 60:.1f} min"),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


class Worker:
    """The job worker process (its own process group, so a kill takes its JVM with it). Before a run that will
    be killed, a spare one starts in the background, so the kill costs the wait for the spare's Spark, not a
    whole start-up; runs that will not be killed start no spare (on two cores it would slow the run down)."""

    def __init__(self, workdir: Path, env: dict[str, str]):
        self.workdir, self.env = workdir, env
        self.process: subprocess.Popen | None = None
        self._spare: subprocess.Popen | None = None
        self.starts = 0

    def _spawn(self) -> subprocess.Popen:
        with open(self.workdir / "worker.log", "a") as stderr:
            env = {**self.env, "WOOTRIC_SPARK_SCRATCH": str(self.workdir / "spark" / str(self.starts))}
            process = subprocess.Popen(
                [sys.executable, "-m", "chaos.worker"],
                cwd=REPO,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                start_new_session=True,
            )
        self.starts += 1
        return process

    def start(self) -> None:
        """Make the spare (or a new process) the worker once its Spark is up."""
        process, self._spare = self._spare or self._spawn(), None
        if json.loads(process.stdout.readline() or "{}").get("ready") is not True:
            raise RuntimeError(f"the job worker did not start; see {self.workdir / 'worker.log'}")
        self.process = process

    def run(self, config: Path, log: Path, kill_when, *, will_kill: bool) -> str:
        """Run the job once: "ok", "failed", or "killed:<point>" when `kill_when()` names a point first."""
        if self.process is None:
            self.start()
        if will_kill and self._spare is None:
            self._spare = self._spawn()
        self._send({"run": str(config), "log": str(log)})
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + ATTEMPT_TIMEOUT
        try:
            while time.monotonic() < deadline:
                if selector.select(timeout=0.02):
                    reply = self.process.stdout.readline()
                    if not reply:
                        raise RuntimeError(f"the job worker died; see {self.workdir / 'worker.log'}")
                    return "ok" if json.loads(reply)["status"] == 0 else "failed"
                point = kill_when()
                if point:
                    self.kill()
                    return f"killed:{point}"
            self.kill()
            raise RuntimeError(f"a run took longer than {ATTEMPT_TIMEOUT:.0f} s; see {log}")
        finally:
            selector.close()

    def ask(self, command: dict):
        """A query that is never killed (plans, rows); the worker is started first if a kill stopped it."""
        if self.process is None:
            self.start()
        self._send(command)
        reply = self.process.stdout.readline()
        if not reply:
            raise RuntimeError(f"the job worker died; see {self.workdir / 'worker.log'}")
        return json.loads(reply)

    def _send(self, command: dict) -> None:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def kill(self) -> None:
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()
            self.process = None

    def close(self) -> None:
        """Stop both processes at once (also mid-run, after Ctrl-C): a session's lakehouse is thrown away."""
        self.kill()
        if self._spare is not None:
            self.process, self._spare = self._spare, None
            self.kill()


class ObservedLake:
    """What the chaos suite observes of the job's storage: staging files, table versions, rows."""

    def __init__(self, config, config_path: Path, worker: Worker):
        self.config, self.config_path, self.worker = config, config_path, worker
        self.root = Path(config.catalog.root)
        layout = Layout(config.catalog)
        self.tables = {s.name: Path(layout.table_path(s)) for s in config.streams}

    def progress_marks(self) -> dict[str, set[str]]:
        staging = Path(Layout(self.config.catalog).staging_root)
        return {
            "landing": {str(p) for p in staging.glob("*/*/_manifest.json")},
            "committed": {str(p) for t in self.tables.values() for p in (t / "_delta_log").glob("*.json")},
        }

    def rows(self) -> dict[str, list[tuple[str, str]]]:
        """Each stream table's (id, _raw) rows, read through the worker's Spark (a plain Delta read)."""
        return {
            stream: [tuple(r) for r in rows]
            for stream, rows in self.worker.ask({"rows": str(self.config_path)}).items()
        }


def write_config(workdir: Path, sandbox: SandboxProcess) -> Path:
    path = workdir / "chaos.yaml"
    path.write_text(f"""\
source:
  description: chaos suite against the sandbox
  api:
    base_url: {sandbox.url}
    auth: {{username: "${{CHAOS_USERNAME}}", password: "${{CHAOS_PASSWORD}}"}}
    requests_per_minute: 6000
    timeout_seconds: 3
  start_date: "2024-01-01T00:00:00Z"
  trigger: {{cron: "0 6 * * *", timezone: UTC}}
catalog: {{root: "{workdir / "lakehouse"}", table_prefix: wootric_}}
streams:
  end_users: {{layer: raw, folder: wootric, table: end_users, sync_type: INCREMENTAL}}
  responses: {{layer: raw, folder: wootric, table: responses, sync_type: INCREMENTAL}}
  declines: {{layer: raw, folder: wootric, table: declines, sync_type: FULL_TABLE}}
""")
    return path


class Chaos:
    def __init__(
        self,
        workdir: Path,
        *,
        seed: int,
        kill_rate: float,
        kill_points: tuple[str, ...],
        faults_per_run: int,
        end_users: int,
        responses: int,
        declines: int,
        say=print,
    ):
        self.workdir, self.rng, self.kill_rate, self.faults_per_run, self.say = (
            workdir,
            random.Random(seed),
            kill_rate,
            faults_per_run,
            say,
        )
        self.hostile_rng = random.Random(f"{seed}:hostile records")  # its own, so faults and kills stay as seeded
        self.kill_points = kill_points
        self.sandbox = SandboxProcess(
            workdir,
            seed=seed,
            end_users=end_users,
            responses=responses,
            declines=declines,
            rate_limit=100000,
            rate_window=2,
            timeout_sleep=1.5,
        )
        try:
            credentials = self.sandbox.credentials
            env = {
                **os.environ,
                "CHAOS_USERNAME": credentials["username"],
                "CHAOS_PASSWORD": credentials["password"],
                "PYTHONPATH": str(REPO),
            }
            self.config_path = write_config(workdir, self.sandbox)
            self.config = load_config(self.config_path, environ=env)
        except BaseException:  # no sandbox process left behind
            self.sandbox.close()
            raise
        self.worker = Worker(workdir, env)
        self.lakehouse = ObservedLake(self.config, self.config_path, self.worker)
        self.report = Report()
        self.run_seconds: list[float] = []

    def close(self) -> None:
        try:
            self.worker.close()
        finally:
            self.sandbox.close()

    def session(self, runs: int, deadline: float | None = None) -> Report:
        """`runs` runs with faults and kills, then (if the last one did not succeed) runs without kills until
        one does, so the session always ends with tables checked against the ground truth."""
        started = time.monotonic()
        self._windows, self._pages_at_start, self._interrupted, settled = {}, 0, False, True
        n = 0
        while n < runs or (not settled and n < runs + 3):
            if n < runs and deadline is not None and time.monotonic() > deadline:
                self.say(f"time is up after {n} runs")
                runs = n
                continue
            n += 1
            settled = self._run(n, settled, may_kill=n <= runs)
        self.report.faults = self.sandbox.get("faults")["injected"]
        self.report.records_served = self._served()["records_served"] - self.report.clean_pass_records
        self.report.worker_starts = self.worker.starts
        self.report.seconds = time.monotonic() - started
        for stream, rows in self.lakehouse.rows().items():
            self.report.records_landed += len(rows)
            self.report.truth_records += len(self.sandbox.get(f"records/{stream}"))
        return self.report

    # ------------------------------------------------------------------------------------------- one run

    def _run(self, n: int, settled: bool, may_kill: bool) -> bool:
        """One run, its checks and its counts; whether it succeeded."""
        if settled:
            self._change_data()
            self._windows, self._pages_at_start = self._plans(), self._served()["pages_served"]
            self._interrupted = False
        self._script_faults()
        point = self.rng.choice(self.kill_points) if may_kill and self.rng.random() < self.kill_rate else None
        outcome, log = self._attempt(n, point)
        self.report.runs += 1
        self.report.resumes += RESUMED in log
        ok = outcome == "ok"
        self._check(ok)
        if outcome.startswith("killed:"):
            self.report.kills[outcome.split(":", 1)[1]] += 1
        elif outcome == "failed":
            self.report.failed += 1
        else:
            self.report.succeeded += 1
            if self._interrupted:
                self.report.interrupted_syncs += 1
                served = self._served()["pages_served"] - self._pages_at_start
                self.report.requests_wasted += max(0, served - self._clean_pass_pages(self._windows))
        self._interrupted = self._interrupted or not ok
        self.say(
            f"run {n:3d}: {outcome:18s} lost {self.report.lost}, duplicates {self.report.duplicates}, "
            f"stale {self.report.stale}"
        )
        return ok

    def _attempt(self, n: int, point: str | None) -> tuple[str, str]:
        before = self.lakehouse.progress_marks()
        pages_before, kth_page = self._served()["pages_served"], self.rng.randint(1, 4)
        typical = sorted(self.run_seconds)[len(self.run_seconds) // 2] if self.run_seconds else 30.0
        kill_at = time.monotonic() + self.rng.uniform(0.5, typical)
        began = time.monotonic()

        def kill_when() -> str | None:
            if point is None:
                return None
            if point == "timed":
                reached = time.monotonic() >= kill_at
            elif point == "extracting":
                reached = self._served()["pages_served"] - pages_before >= kth_page
            else:
                reached = bool(self.lakehouse.progress_marks()[point] - before[point])
            return point if reached else None

        log = self.workdir / f"run-{n:03d}.log"
        outcome = self.worker.run(self.config_path, log, kill_when, will_kill=point is not None)
        if outcome in ("ok", "failed"):
            self.run_seconds.append(time.monotonic() - began)
        return outcome, log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""

    def _script_faults(self) -> None:
        kinds = [self.rng.choice(FAULT_KINDS) for _ in range(self.rng.randint(0, self.faults_per_run))]
        if kinds:
            self.sandbox.post("faults", [{"kind": k, "count": 1} for k in kinds])

    def _change_data(self) -> None:
        """Between syncs (never while one is interrupted): new records, edited end users, deleted declines, and a
        record whose cursor cannot be read: a new one (an old one's rendering changing is an edit no incremental
        sync can see), or a decline when none was added (declines are read whole every sync)."""
        rng = self.rng
        added: dict[str, list[int]] = {}
        for stream, action, n in (
            ("end_users", "add", rng.randint(0, 5)),
            ("responses", "add", rng.randint(0, 20)),
            ("declines", "add", rng.randint(0, 3)),
            ("end_users", "update", rng.randint(0, 8)),
            ("declines", "delete", rng.randint(0, 2)),
        ):
            if n:
                ids = self.sandbox.post("mutate", {"stream": stream, "action": action, "n": n})["ids"]
                if action == "add":
                    added[stream] = ids
        hostile = self.hostile_rng
        garble: dict = {"stream": "declines", "action": "garble", "n": 1}
        if added:
            stream = hostile.choice(sorted(added))
            garble.update(stream=stream, ids=[hostile.choice(added[stream])])
        self.report.unreadable_cursors += len(self.sandbox.post("mutate", garble)["ids"])

    # ------------------------------------------------------------------------------------------- checks

    def _check(self, settled: bool) -> None:
        """No id twice in any table, ever; after a run that succeeded, every record there with its latest content."""
        for stream, rows in self.lakehouse.rows().items():
            ids = [rid for rid, _ in rows]
            self.report.duplicates += len(ids) - len(set(ids))
            self.report.checks += 1
            if not settled:
                continue
            raws = dict(rows)
            for record in self.sandbox.get(f"records/{stream}"):
                raw = raws.get(str(record["id"]))
                if raw is None:
                    self.report.lost += 1
                elif json.loads(raw) != record:
                    self.report.stale += 1

    # ------------------------------------------------------------------------------------- wasted requests

    def _served(self) -> dict:
        return self.sandbox.get("stats")

    def _plans(self) -> dict[str, tuple[datetime, datetime]]:
        """Each stream's window as the next run will plan it, from the tables as they are now."""
        answer = self.worker.ask({"plans": str(self.config_path)})
        return {stream: (datetime.fromisoformat(a), datetime.fromisoformat(b)) for stream, (a, b) in answer.items()}

    def _clean_pass_pages(self, windows: dict[str, tuple[datetime, datetime]]) -> int:
        """List pages one uninterrupted extraction of these windows needs, on the data as it is now."""
        records_before = self._served()["records_served"]
        with WootricClient(self.config.api) as client:
            client.authenticate()
            for stream, (since, until) in windows.items():
                for _ in client.pages(STREAMS[stream], since, until):
                    pass
            pages = int(client.stats.snapshot()["pages"])
        self.report.clean_pass_records += self._served()["records_served"] - records_before
        return pages


def run_chaos(
    workdir: Path,
    *,
    runs: int,
    seed: int,
    kill_rate: float = 0.5,
    kill_points: tuple[str, ...] = KILL_POINTS,
    faults_per_run: int = 3,
    end_users: int = 120,
    responses: int = 300,
    declines: int = 40,
    max_minutes: float | None = None,
    say=print,
) -> Report:
    unknown = set(kill_points) - set(KILL_POINTS)
    if unknown or not kill_points:
        raise ValueError(f"kill points must be some of {', '.join(KILL_POINTS)}")
    workdir.mkdir(parents=True, exist_ok=True)
    chaos = Chaos(
        workdir,
        seed=seed,
        kill_rate=kill_rate,
        kill_points=tuple(kill_points),
        faults_per_run=faults_per_run,
        end_users=end_users,
        responses=responses,
        declines=declines,
        say=say,
    )
    try:
        deadline = time.monotonic() + max_minutes * 60 if max_minutes else None
        return chaos.session(runs, deadline)
    finally:
        chaos.close()
