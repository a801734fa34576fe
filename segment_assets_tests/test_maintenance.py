"""Compaction and vacuum of lake tables, directly and through the Dagster job."""

from __future__ import annotations

from pathlib import Path

from dagster import DagsterInstance, DefaultScheduleStatus

from segment_assets.api.streams import UpdateMethod
from segment_assets.api.tables import table_def
from segment_assets.orchestration.connections import Connection
from segment_assets.orchestration.definitions import build_workspace_definitions
from segment_assets.orchestration.maintenance import build_maintenance_job, build_maintenance_schedule, maintain
from segment_assets.orchestration.resources import LakeStorage
from segment_assets.orchestration.workspaces import Workspace
from segment_assets.storage.lake_target import LakeTarget

SOURCES = table_def("sources")


def many_small_commits(target: LakeTarget, n: int = 6) -> None:
    shaper = SOURCES.shaper(strict=False)
    for i in range(n):
        records = [{"id": f"src{j}", "name": f"v{i}"} for j in range(3)]
        target.write_snapshot(
            SOURCES, iter([shaper.batch(records, {}, {})]), method=UpdateMethod.RELOAD_AND_COMPARE, run_id=f"r{i}"
        )


def parquet_files(path: Path) -> int:
    return len(list(path.glob("*.parquet")))


def test_optimize_then_vacuum_shrinks_the_change_table_and_keeps_its_rows(tmp_path: Path) -> None:
    target = LakeTarget((tmp_path / "lake").as_uri(), stage_dir=tmp_path / "stage")
    many_small_commits(target)
    ct = tmp_path / "lake" / "segment" / "sources__ct"
    before_rows = target.query("SELECT count(*) FROM sources__ct")[0][0]
    assert parquet_files(ct) == 6
    report = {e["table"]: e for e in maintain(target, retention_hours=0)}
    assert report["sources__ct"]["files_removed"] == 6 and report["sources__ct"]["files_added"] == 1
    assert report["sources__ct"]["files_deleted"] == 6
    assert "_segment_assets_state" in report
    assert parquet_files(ct) == 1
    assert target.query("SELECT count(*) FROM sources__ct")[0][0] == before_rows == 18


def test_default_retention_keeps_recent_files(tmp_path: Path) -> None:
    target = LakeTarget((tmp_path / "lake").as_uri(), stage_dir=tmp_path / "stage")
    many_small_commits(target, 3)
    report = {e["table"]: e for e in maintain(target, ["sources__ct"])}
    assert report["sources__ct"]["files_deleted"] == 0  # compacted, but the old files are within 7 days
    assert parquet_files(tmp_path / "lake" / "segment" / "sources__ct") == 4


def test_the_job_runs_against_the_storage_resource(tmp_path: Path) -> None:
    url = (tmp_path / "lake").as_uri()
    many_small_commits(LakeTarget(url, stage_dir=tmp_path / "stage"), 4)
    job = build_maintenance_job("lake_storage")
    result = job.execute_in_process(
        resources={"lake_storage": LakeStorage(url=url)},
        instance=DagsterInstance.ephemeral(),
        run_config={
            "ops": {"segment_lake_maintenance_op": {"config": {"retention_hours": 0, "tables": ["sources__ct"]}}}
        },
    )
    assert result.success
    assert parquet_files(tmp_path / "lake" / "segment" / "sources__ct") == 1
    schedule = build_maintenance_schedule(job)
    assert schedule.default_status == DefaultScheduleStatus.STOPPED and schedule.job_name == job.name


def test_only_a_lake_workspace_gets_the_maintenance_job(tmp_path: Path) -> None:
    lake = Connection(name="lake", lake_url=(tmp_path / "lake").as_uri())
    duck = Connection(name="duck", duckdb_path=str(tmp_path / "duck.duckdb"))
    lake_jobs = {j.name for j in build_workspace_definitions(Workspace(lake)).resolve_all_job_defs()}
    duck_jobs = {j.name for j in build_workspace_definitions(Workspace(duck)).resolve_all_job_defs()}
    assert lake.maintenance_job_name in lake_jobs
    assert duck.maintenance_job_name not in duck_jobs
