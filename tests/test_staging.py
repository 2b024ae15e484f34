"""Staging: pages become bounded part files, completed ranges reach the manifest only once their records are
on disk, a later attempt resumes, and cleanup removes exactly what a finished stream staged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wootric_ingest.config import CatalogConfig
from wootric_ingest.lake.layout import Layout
from wootric_ingest.lake.staging import MANIFEST, StagingArea
from wootric_ingest.lake.storage import HadoopStorage, LocalStorage, Storage, storage_for


def staging_area(root: str, run_id: str, stream: str, files: Storage | None = None, **batching) -> StagingArea:
    """A stream's staging under a catalog root, where the job's layout puts it."""
    folder = Layout(CatalogConfig(root=root)).staging_folder(run_id, stream)
    return StagingArea(files or LocalStorage(), folder, run_id, **batching)


def records(first: int, n: int) -> list[dict]:
    return [
        {"id": i, "text": f"réponse {i} 🚀", "tags": ["UX"], "end_user": {"properties": {"seat count": i}}}
        for i in range(first, first + n)
    ]


def lines_of(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def manifest(staging: StagingArea) -> dict | None:
    path = Path(staging.folder) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


def test_records_land_in_part_files_of_at_most_one_batch(tmp_path):
    staging = staging_area(str(tmp_path), "run-1", "responses", batch_records=5)
    for first in range(0, 12, 3):
        staging.write(records(first, 3), fetched_at=1700000000.5)
    assert [len(lines_of(p)) for p in staging.parts()] == [5, 5]  # the last 2 records wait for a full batch
    staging.flush()
    assert [len(lines_of(p)) for p in staging.parts()] == [5, 5, 2]
    assert staging.records == 12
    staged = [line for p in staging.parts() for line in lines_of(p)]
    assert staged == [{"fetched_at": 1700000000.5, "record": r} for r in records(0, 12)]
    assert staging.folder == f"{tmp_path}/_wootric_ingest/staging/run-1/responses"


def test_a_batch_is_also_bounded_in_bytes(tmp_path):
    staging = staging_area(str(tmp_path), "run-1", "end_users", batch_records=1000, batch_bytes=400)
    staging.write(records(0, 20))
    staging.flush()
    sizes = [Path(p).stat().st_size for p in staging.parts()]
    one_line = max(len(line) for p in staging.parts() for line in Path(p).read_bytes().splitlines(keepends=True))
    assert len(sizes) > 1
    assert all(size < 400 + one_line for size in sizes)
    assert sum(len(lines_of(p)) for p in staging.parts()) == 20


def test_a_completed_range_reaches_the_manifest_only_after_its_records_are_flushed(tmp_path):
    staging = staging_area(str(tmp_path), "run-1", "responses", batch_records=5)
    staging.write(records(0, 3), completed=(100, 199))
    assert manifest(staging) is None and staging.completed == []
    staging.write(records(3, 3), completed=(200, 299))  # the 5th record fills a batch: (100, 199) is on disk
    assert manifest(staging) == {"completed": [[100, 199]]}
    assert staging.completed == [(100, 199)]
    staging.write([], completed=(400, 499))
    staging.flush()
    assert manifest(staging) == {"completed": [[100, 299], [400, 499]]}


def test_a_later_attempt_resumes_from_the_manifest_and_keeps_earlier_parts(tmp_path):
    first = staging_area(str(tmp_path), "run-1", "responses", batch_records=2)
    first.write(records(0, 3), completed=(10, 20))
    first.flush()
    earlier = first.parts()

    again = staging_area(str(tmp_path), "run-1", "responses", batch_records=2)
    assert again.completed == [(10, 20)]
    again.write(records(3, 1), completed=(21, 30))
    again.flush()
    assert again.parts()[: len(earlier)] == earlier
    assert [Path(p).name for p in again.parts()] == ["part-000000.jsonl", "part-000001.jsonl", "part-000002.jsonl"]
    assert again.records == 1
    assert again.completed == [(10, 30)]
    assert [line["record"]["id"] for p in again.parts() for line in lines_of(p)] == [0, 1, 2, 3]


def test_a_manifest_cut_short_by_a_crash_means_its_ranges_are_fetched_again_and_the_parts_are_kept(tmp_path):
    first = staging_area(str(tmp_path), "run-1", "responses")
    first.write(records(0, 3), completed=(10, 20))
    first.flush()
    Path(first.folder, MANIFEST).write_text('{"completed": [[10, ')

    again = staging_area(str(tmp_path), "run-1", "responses")
    assert again.completed == []
    assert again.parts() == first.parts()
    assert not [p for p in Path(first.folder).iterdir() if p.name.endswith(".tmp")]


def test_cleanup_removes_the_stream_and_then_the_empty_run_folder(tmp_path):
    responses = staging_area(str(tmp_path), "run-1", "responses")
    declines = staging_area(str(tmp_path), "run-1", "declines")
    for staging in (responses, declines):
        staging.write(records(0, 2), completed=(1, 2))
        staging.flush()
    responses.cleanup()
    assert not Path(responses.folder).exists()
    assert Path(declines.folder, MANIFEST).exists() and len(declines.parts()) == 1
    declines.cleanup()
    assert not Path(declines.run_folder).exists()
    assert Path(tmp_path, "_wootric_ingest", "staging").is_dir()


def test_the_adapter_follows_the_catalog_root(spark, tmp_path):
    assert isinstance(storage_for(str(tmp_path)), LocalStorage)
    assert isinstance(storage_for(f"file://{tmp_path}"), LocalStorage)
    assert isinstance(storage_for("s3a://bucket/lake", spark), HadoopStorage)
    assert isinstance(storage_for("abfss://lake@account.dfs.core.windows.net/x", spark), HadoopStorage)
    with pytest.raises(ValueError, match="need a Spark session"):
        storage_for("s3a://bucket/lake")
    assert LocalStorage.local("dbfs:/mnt/lake/x") == Path("/dbfs/mnt/lake/x")


def test_the_hadoop_adapter_stages_resumes_and_cleans_up_like_the_local_one(spark, tmp_path):
    root = f"file://{tmp_path}"
    hadoop = HadoopStorage(spark)
    staging = staging_area(root, "run-1", "end_users", hadoop, batch_records=2)
    staging.write(records(0, 3), completed=(5, 9))
    staging.flush()
    assert [Path(p).name for p in staging.parts()] == ["part-000000.jsonl", "part-000001.jsonl"]
    local_folder = Path(tmp_path, "_wootric_ingest", "staging", "run-1", "end_users")
    visible = sorted(p.name for p in local_folder.iterdir() if not p.name.startswith("."))  # Hadoop adds .crc files
    assert visible == [MANIFEST, "part-000000.jsonl", "part-000001.jsonl"]
    assert [line["record"] for p in sorted(local_folder.glob("part-*")) for line in lines_of(str(p))] == records(0, 3)

    again = staging_area(root, "run-1", "end_users", hadoop)
    assert again.completed == [(5, 9)]
    again.cleanup()
    assert not Path(tmp_path, "_wootric_ingest", "staging", "run-1").exists()
