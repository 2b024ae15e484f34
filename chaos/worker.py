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
from wootric_ingest.planning import RunOptions, plan_stream, table_properties
from wootric_ingest.sink import DeltaSink
from wootric_ingest.spark import get_spark
from wootric_ingest.streams import STREAMS


def plans(config_path: str) -> dict[str, list[str]]:
    config, spark, now = load_config(config_path), get_spark(), datetime.now(timezone.utc)
    windows = {}
    for sc in config.streams:
        sink = DeltaSink(spark, sc.table_path(config.catalog), STREAMS[sc.stream], table_properties(config))
        plan = plan_stream(config, sc, sink, RunOptions(), now)
        windows[sc.stream] = [plan.since.isoformat(), plan.until.isoformat()]
    return windows


def rows(config_path: str) -> dict[str, list[list[str]]]:
    from delta.tables import DeltaTable

    config, spark = load_config(config_path), get_spark()
    tables = {}
    for sc in config.streams:
        path = sc.table_path(config.catalog)
        found = DeltaTable.isDeltaTable(spark, path)
        tables[sc.stream] = ([[r["id"], r["_raw"]] for r in spark.read.format("delta").load(path)
                              .select("id", "_raw").collect()] if found else [])
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
            with open(command["log"], "a", encoding="utf-8") as log, \
                    contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                answer = {"status": main(["run", "--config", command["run"], "--log-level", "INFO"])}
        elif "plans" in command:
            answer = plans(command["plans"])
        else:
            answer = rows(command["rows"])
        print(json.dumps(answer), file=protocol, flush=True)


if __name__ == "__main__":
    serve()
