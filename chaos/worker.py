"""A job runner that keeps one Spark session warm between runs, so the chaos suite pays Spark's start-up only
after a kill (when a real run would pay it too).

Protocol: one JSON command per line on stdin, one JSON answer per line on stdout; `{"ready": true}` first,
once Spark is up.
- `{"run": CONFIG, "log": PATH}`: the same `main()` as every entry point (`wootric-ingest run --config
  CONFIG`), its stdout and stderr into the log file; answers `{"status": <exit status>}`.
- `{"plans": CONFIG}`: each stream's window as the job would plan it now; `{"stream": [since, until]}`.
- `{"rows": CONFIG}`: each stream table's `id` and `_raw`, read plainly (not through the job's code).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from datetime import datetime, timezone

from wootric_ingest.cli import main
from wootric_ingest.config import load_config
from wootric_ingest.lake.lakehouse import Lakehouse
from wootric_ingest.lake.spark import get_spark
from wootric_ingest.run.job import plans
from wootric_ingest.run.planning import RunOptions


def windows(config_path: str) -> dict[str, list[str]]:
    lakehouse = Lakehouse(load_config(config_path), get_spark())
    return {
        plan.stream.name: [plan.since.isoformat(), plan.until.isoformat()]
        for plan in plans(lakehouse, RunOptions(), datetime.now(timezone.utc))
    }


def rows(config_path: str) -> dict[str, list[list[str]]]:
    """Each stream table's (id, _raw), read plainly by path, not through the job's code."""
    from delta.tables import DeltaTable

    config, spark = load_config(config_path), get_spark()
    lakehouse = Lakehouse(config, spark)
    tables = {}
    for sc in config.streams:
        path = lakehouse.layout.table_path(sc)
        found = DeltaTable.isDeltaTable(spark, path)
        tables[sc.name] = (
            [[r["id"], r["_raw"]] for r in spark.read.format("delta").load(path).select("id", "_raw").collect()]
            if found
            else []
        )
    return tables


def serve() -> None:
    # Answers go to a private copy of stdout; fd 1 itself becomes stderr, so nothing else (the JVM, native
    # code) can write into the protocol.
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    get_spark()
    print(json.dumps({"ready": True}), file=protocol, flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if "run" in command:
            with (
                open(command["log"], "a", encoding="utf-8") as log,
                contextlib.redirect_stdout(log),
                contextlib.redirect_stderr(log),
            ):
                answer = {"status": main(["run", "--config", command["run"], "--log-level", "INFO"])}
        elif "plans" in command:
            answer = windows(command["plans"])
        else:
            answer = rows(command["rows"])
        print(json.dumps(answer), file=protocol, flush=True)


if __name__ == "__main__":
    serve()
