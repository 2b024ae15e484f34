"""The contract with downstream pipelines: a follower of a stream table's change feed (the README's Structured
Streaming code, run as written) keeps a silver table equal to the source through first, incremental, `merge`
and `rewrite` full syncs, with hard and soft deletes; a `merge` full sync's change feed holds only what changed;
and both full-sync writes leave the very same rows."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sandbox import Sandbox, SandboxOptions
from sandbox.data import DEFAULT_END
from wootric_ingest.config import FullSyncWrite
from wootric_ingest.lake.state import SyncMode, read_state
from wootric_ingest.run.job import run
from wootric_ingest.run.planning import RunOptions

from conftest import lakehouse, read_table

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
SECTION = README[README.index("## Following these tables downstream") : README.index("## Regions")]
NOW = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=1)  # after every record, added ones too
STREAMS = {  # responses drop what the source no longer has; declines keep it, marked
    "responses": {"layer": "raw", "folder": "wootric", "table": "responses", "deletes": "hard"},
    "declines": {"layer": "raw", "folder": "wootric", "table": "declines", "deletes": "soft"},
}


def readme_follower():
    """The README's `follow`, run as written."""
    code = re.findall(r"```python\n(.*?)```", SECTION, flags=re.S)[0]
    scope: dict = {}
    exec(compile(code, "README.md: Following these tables downstream", "exec"), scope)
    return scope["follow"]


def truth(sandbox, stream: str) -> dict[str, dict]:
    return {str(r["id"]): r for r in sandbox.dataset.records(stream)}


def live_raw(frame) -> dict[str, dict]:
    rows = frame.collect()
    assert len(rows) == len({r["id"] for r in rows}), "an id twice"
    return {r["id"]: json.loads(r["_raw"]) for r in rows if r["_deleted_at"] is None}


def test_a_change_feed_follower_keeps_silver_equal_to_the_source_through_every_kind_of_sync(
    spark, make_config, table_mode, tmp_path
):
    follow = readme_follower()
    with Sandbox(SandboxOptions(end_users=10, responses=60, declines=30, seed=21)) as sb:
        own = uuid.uuid4().hex[:8]
        streams = {s: {**v, "layer": f"raw_{own}"} for s, v in STREAMS.items()}  # names of this test's own
        config = make_config(sb, tables=table_mode, streams=streams, catalog={"metastore": table_mode == "path"})
        merging = replace(config, catalog=replace(config.catalog, full_sync_write=FullSyncWrite.MERGE))
        house = lakehouse(spark, config)

        def synced(cfg, at: datetime, **options) -> None:
            results = run(cfg, spark, RunOptions(streams=tuple(STREAMS), **options), now=at)
            assert [r.status for r in results] == ["ok", "ok"], [r.error for r in results]
            for stream in STREAMS:
                source = house.table(config.stream(stream)).name  # path tables: registered by name
                silver = f"silver_{stream}_{own}"
                follow(spark, source, silver, str(tmp_path / "checkpoints" / stream))
                assert live_raw(spark.table(silver)) == truth(sb, stream), stream
                assert live_raw(read_table(spark, config, stream)) == truth(sb, stream), stream

        recent = DEFAULT_END - 3 * 86400  # inside the responses' 30-day look-back
        fresh = sb.dataset.add("responses", n=3, at=recent)
        synced(config, NOW)  # the first run: a full sync
        sb.dataset.update("responses", ids=fresh[:2])  # edits of rows the follower has, which the look-back re-reads
        sb.dataset.add("responses", n=2, at=recent)  # late arrivals
        sb.dataset.add("declines", n=2, at=recent)
        sb.dataset.update("declines", ids=sb.dataset.add("declines", n=1, at=recent))
        synced(config, NOW + timedelta(hours=2))  # incremental

        for stream in STREAMS:
            sb.dataset.delete(stream, n=3)
        sb.dataset.update("responses", n=2)
        sb.dataset.add("responses", n=1)
        versions = {s: house.table(config.stream(s)).version() for s in STREAMS}
        synced(merging, NOW + timedelta(hours=3), full_sync=True)  # a MERGE full sync
        feed = {
            s: [
                r["_change_type"]
                for r in spark.read.option("readChangeFeed", "true")
                .option("startingVersion", versions[s] + 1)
                .table(house.table(config.stream(s)).name)
                .collect()
            ]
            for s in STREAMS
        }
        assert sorted(feed["responses"]) == sorted(
            ["insert"] + ["update_preimage", "update_postimage"] * 2 + ["delete"] * 3
        )
        assert sorted(feed["declines"]) == sorted(["update_preimage", "update_postimage"] * 3)  # marked, kept
        marked = read_table(spark, config, "declines").where("_deleted_at IS NOT NULL").collect()
        assert len(marked) == 3 and {r["_deleted_at"] for r in marked} == {
            (NOW + timedelta(hours=3)).replace(tzinfo=None)
        }

        sb.dataset.delete("responses", n=1)
        sb.dataset.delete("declines", n=1)
        synced(config, NOW + timedelta(hours=4), full_sync=True)  # a rewrite full sync
        marked = read_table(spark, config, "declines").where("_deleted_at IS NOT NULL").collect()
        assert len(marked) == 4, "a soft delete forgot a row or moved an earlier mark"
        assert sorted({r["_deleted_at"] for r in marked}) == [
            (NOW + timedelta(hours=h)).replace(tzinfo=None) for h in (3, 4)
        ]


def test_both_full_sync_writes_leave_the_same_rows_with_hard_and_soft_deletes(spark, make_config):
    """Responses deleted hard, declines soft, in the same runs: each full sync is run into two lakehouses, one
    rewriting its tables and one merging into them."""
    with Sandbox(SandboxOptions(end_users=5, responses=40, declines=40, seed=22)) as sb:
        rewrite = make_config(sb, streams=STREAMS, catalog={"root": "rewrite"})
        merge = make_config(sb, streams=STREAMS, catalog={"root": "merge", "full_sync_write": "merge"})

        def both(step: int, streams: tuple[str, ...] = tuple(STREAMS)) -> None:
            for cfg in (rewrite, merge):
                options = RunOptions(streams=streams, full_sync=True, run_id=f"step-{step}")
                results = run(cfg, spark, options, now=NOW + timedelta(hours=step))
                assert [r.status for r in results] == ["ok"] * len(streams), [r.error for r in results]

        both(0)
        for stream in STREAMS:
            sb.dataset.delete(stream, n=4)
            sb.dataset.update(stream, n=3)
            sb.dataset.add(stream, n=2)
        both(1)
        sb.dataset.delete("declines", n=2)
        both(2, streams=("declines",))  # more soft deletes: the first ones' marks stay as they were

        # Nothing changed since: the merging full sync writes no row, and still commits, recording the full sync.
        at = NOW + timedelta(hours=3)
        [unchanged] = run(merge, spark, RunOptions(streams=("responses",), full_sync=True), now=at)
        table = lakehouse(spark, merge).table(merge.stream("responses"))
        assert (unchanged.mode, unchanged.rows_inserted, unchanged.rows_updated, unchanged.rows_deleted) == (
            SyncMode.FULL,
            0,
            0,
            0,
        )
        assert unchanged.table_rows == len(sb.dataset.records("responses")) == table.count()
        assert read_state(table).last_full_sync == at

    def rows(cfg, stream: str) -> list[dict]:
        """Every column but the two that name the run that last wrote or fetched the row: a rewrite writes all."""
        frame = read_table(spark, cfg, stream).drop("_extracted_at", "_run_id")
        return sorted((r.asDict(recursive=True) for r in frame.collect()), key=lambda r: r["id"])

    for stream, gone in (("responses", 0), ("declines", 6)):  # hard deletes leave nothing, soft ones mark rows
        assert rows(rewrite, stream) == rows(merge, stream), stream
        assert len(rows(merge, stream)) == len(sb.dataset.records(stream)) + gone, stream
