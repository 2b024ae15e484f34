"""Staging: pages become bounded Parquet parts of shaped rows with their census, completed ranges reach the
manifest only once their records are in listed parts, a later attempt resumes, records without a usable id go
to files of their own, and cleanup removes exactly what a finished stream staged."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from wootric_ingest.config import CatalogConfig
from wootric_ingest.lake.layout import Layout
from wootric_ingest.lake.schemas import table_schema
from wootric_ingest.lake.staging import MANIFEST, Census, StagingArea
from wootric_ingest.lake.storage import HadoopStorage, LocalStorage, Storage, storage_for
from wootric_ingest.streams import STREAMS


def staging_area(root: str, run_id: str, stream: str, files: Storage | None = None, **batching) -> StagingArea:
    """A stream's staging under a catalog root, where the job's layout puts it."""
    folder = Layout(CatalogConfig(root=root)).staging_folder(run_id, stream)
    return StagingArea(files or LocalStorage(), folder, STREAMS[stream], run_id, **batching)


def records(first: int, n: int) -> list[dict]:
    return [
        {
            "id": i,
            "text": f"réponse {i} 🚀",
            "created_at": f"2024-01-0{1 + i % 9} 10:00:00 -0800",
            "tags": ["UX"],
            "end_user": {"properties": {"seat count": i}},
        }
        for i in range(first, first + n)
    ]


def rows_of(path: str) -> list[dict]:
    return pq.read_table(path).to_pylist()


def staged_raw(staging: StagingArea) -> list[dict]:
    return [json.loads(row["_raw"]) for part in staging.parts() for row in rows_of(part)]


def manifest(staging: StagingArea) -> dict | None:
    path = Path(staging.folder) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


def test_records_land_in_parquet_parts_of_the_tables_columns_at_most_one_batch_each(tmp_path):
    staging = staging_area(str(tmp_path), "run-1", "responses", batch_records=5)
    for first in range(0, 12, 3):
        staging.write(records(first, 3), fetched_at=1700000000.5)
    assert [len(rows_of(p)) for p in staging.parts()] == [5, 5]  # the last 2 records wait for a full batch
    staging.flush()
    assert [len(rows_of(p)) for p in staging.parts()] == [5, 5, 2]
    assert [Path(p).name for p in staging.parts()] == [f"part-00000{n}.parquet" for n in range(3)]
    assert staging.records == 12
    assert staged_raw(staging) == records(0, 12)
    first = rows_of(staging.parts()[0])[0]
    assert list(first) == table_schema(STREAMS["responses"]).fieldNames()
    assert (first["id"], first["created_at"], first["tags"], first["_run_id"]) == (
        "0",
        "2024-01-01T18:00:00Z",
        '["UX"]',
        "run-1",
    )
    assert first["end_user"]["properties"] == '{"seat count":0}'
    assert first["_extracted_at"].timestamp() == 1700000000.5
    assert staging.folder == f"{tmp_path}/_wootric_ingest/staging/run-1/responses"


def test_a_batch_is_also_bounded_in_bytes_of_json(tmp_path):
    staging = staging_area(str(tmp_path), "run-1", "end_users", batch_records=1000, batch_bytes=400)
    staging.write(records(0, 20))
    staging.flush()
    sizes = [sum(len(row["_raw"].encode()) for row in rows_of(p)) for p in staging.parts()]
    one_record = max(len(json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode()) for r in records(0, 20))
    assert len(sizes) > 1
    assert all(size < 400 + one_record for size in sizes)
    assert sum(len(rows_of(p)) for p in staging.parts()) == 20


def test_each_part_is_counted_as_it_is_written_so_landing_needs_no_pass(tmp_path):
    staging = staging_area(str(tmp_path), "run-1", "responses", batch_records=4)
    batch = records(998, 4) + [
        dict(records(1000, 1)[0], score="ten", created_at="yesterday"),
        {"text": "no id"},
        dict(records(1001, 1)[0], created_at=None),
    ]
    staging.write(batch)
    staging.flush()
    assert staging.records == 7
    assert staging.census() == Census(
        rows=6,
        first_id="1000",  # ids are strings: "1000" < "999"
        last_id="999",
        newest="2024-01-09T18:00:00Z",
        type_mismatches={"score": 1, "created_at": 1},
        rejected=1,
    )
    assert [p["rows"] for p in manifest(staging)["parts"]] == [4, 2]
    (rejected,) = staging.rejected_parts()
    assert Path(rejected).name == "rejected-000001.parquet"
    assert [(r["record"], r["reason"]) for r in rows_of(rejected)] == [('{"text":"no id"}', "no id")]


def test_a_completed_range_reaches_the_manifest_only_after_its_records_are_flushed(tmp_path):
    staging = staging_area(str(tmp_path), "run-1", "responses", batch_records=5)
    staging.write(records(0, 3), completed=(100, 199))
    assert manifest(staging) is None and staging.completed == []
    staging.write(records(3, 3), completed=(200, 299))  # the 5th record fills a batch: (100, 199) is on disk
    assert manifest(staging)["completed"] == [[100, 199]]
    assert staging.completed == [(100, 199)]
    staging.write([], completed=(400, 499))
    staging.flush()
    assert manifest(staging)["completed"] == [[100, 299], [400, 499]]
    assert [p["rows"] for p in manifest(staging)["parts"]] == [5, 1]


def test_a_later_attempt_resumes_from_the_manifest_with_earlier_parts_and_their_census(tmp_path):
    first = staging_area(str(tmp_path), "run-1", "responses", batch_records=2)
    first.write(records(0, 3), completed=(10, 20))
    first.flush()
    earlier = first.parts()

    again = staging_area(str(tmp_path), "run-1", "responses", batch_records=2)
    assert again.completed == [(10, 20)] and again.census() == first.census()
    again.write(records(3, 1), completed=(21, 30))
    again.flush()
    assert again.parts()[: len(earlier)] == earlier
    assert [Path(p).name for p in again.parts()] == [
        "part-000000.parquet",
        "part-000001.parquet",
        "part-000002.parquet",
    ]
    assert again.records == 1
    assert again.completed == [(10, 30)]
    assert [r["id"] for r in staged_raw(again)] == [0, 1, 2, 3]
    assert (again.census().rows, again.census().first_id, again.census().last_id) == (4, "0", "3")


def test_a_part_a_crash_left_unlisted_is_never_read_and_its_ranges_are_fetched_again(tmp_path):
    first = staging_area(str(tmp_path), "run-1", "responses", batch_records=2)
    first.write(records(0, 2), completed=(10, 20))
    first.flush()
    listed = manifest(first)
    first.write(records(2, 2), completed=(21, 30))  # published, then the process dies before the manifest
    Path(first.folder, MANIFEST).write_text(json.dumps(listed))

    again = staging_area(str(tmp_path), "run-1", "responses", batch_records=2)
    assert again.completed == [(10, 20)]
    assert [r["id"] for r in staged_raw(again)] == [0, 1]
    again.write(records(2, 2), completed=(21, 30))
    again.flush()
    assert [Path(p).name for p in again.parts()] == ["part-000000.parquet", "part-000002.parquet"]
    assert again.census().rows == 4


def test_a_manifest_cut_short_by_a_crash_means_its_ranges_are_fetched_again(tmp_path):
    first = staging_area(str(tmp_path), "run-1", "responses")
    first.write(records(0, 3), completed=(10, 20))
    first.flush()
    Path(first.folder, MANIFEST).write_text('{"completed": [[10, ')

    again = staging_area(str(tmp_path), "run-1", "responses")
    assert again.completed == [] and again.parts() == [] and again.census() == Census()
    assert not [p for p in Path(first.folder).iterdir() if p.name.endswith(".tmp")]


def test_a_manifest_from_before_parquet_staging_is_fetched_again(tmp_path):
    old = staging_area(str(tmp_path), "run-1", "responses")
    Path(old.folder).mkdir(parents=True)
    Path(old.folder, "part-000000.jsonl").write_text('{"fetched_at":1.0,"record":{"id":1}}\n')
    Path(old.folder, MANIFEST).write_text('{"completed": [[10, 20]]}')

    again = staging_area(str(tmp_path), "run-1", "responses")
    assert again.completed == [] and again.parts() == []


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
    assert [Path(p).name for p in staging.parts()] == ["part-000000.parquet", "part-000001.parquet"]
    local_folder = Path(tmp_path, "_wootric_ingest", "staging", "run-1", "end_users")
    visible = sorted(p.name for p in local_folder.iterdir() if not p.name.startswith("."))  # Hadoop adds .crc files
    assert visible == [MANIFEST, "part-000000.parquet", "part-000001.parquet"]
    staged = [json.loads(r["_raw"]) for p in sorted(local_folder.glob("part-*")) for r in rows_of(str(p))]
    assert staged == records(0, 3)

    again = staging_area(root, "run-1", "end_users", hadoop)
    assert again.completed == [(5, 9)] and again.census().rows == 3
    again.cleanup()
    assert not Path(tmp_path, "_wootric_ingest", "staging", "run-1").exists()
