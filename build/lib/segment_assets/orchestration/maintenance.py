"""Lake maintenance: compaction and vacuum of Delta tables, as a Dagster job per workspace.

Change tables, the state table and time-partitioned tables take one or more small files per
commit; `optimize` compacts them, `vacuum` deletes the files no table version within the
retention still references (replaced rows, compacted files, files left by killed writes).
Time travel (and the change-table repair after a crash, `lake_target.py`) works within the
retention only, hence 7 days by default. On the DuckDB target both are no-ops.

The lead wires one job per workspace:

    job = build_maintenance_job("segment_storage", name="segment_lake_maintenance")
    schedule = build_maintenance_schedule(job)   # stopped until switched on
"""
# No `from __future__ import annotations` here: Dagster reads the op's config annotation as a type.

import time
from collections.abc import Sequence
from typing import Any

from dagster import (
    Config,
    DefaultScheduleStatus,
    JobDefinition,
    OpExecutionContext,
    ScheduleDefinition,
    job,
    op,
)
from pydantic import Field

from segment_assets.storage.base import DEFAULT_VACUUM_RETENTION_HOURS, Target

DEFAULT_MAINTENANCE_CRON = "30 3 * * 0"  # Sundays 03:30 UTC, away from the daily syncs


def maintain(
    target: Target,
    tables: Sequence[str] | None = None,
    *,
    optimize: bool = True,
    vacuum: bool = True,
    retention_hours: int = DEFAULT_VACUUM_RETENTION_HOURS,
) -> list[dict[str, Any]]:
    """Compact then vacuum `tables` (default: every table of the target, its state table included)."""
    if tables is None:
        tables = target.maintenance_tables()
    report = []
    for name in tables:
        started = time.monotonic()
        entry: dict[str, Any] = {"table": name}
        if optimize:
            entry.update(target.optimize(name))
        if vacuum:
            entry.update(target.vacuum(name, retention_hours=retention_hours))
        entry["seconds"] = round(time.monotonic() - started, 3)
        report.append(entry)
    return report


class MaintenanceConfig(Config):
    tables: list[str] = Field(default_factory=list, description="Tables to maintain; empty: every table.")
    optimize: bool = Field(default=True, description="Compact small files.")
    vacuum: bool = Field(default=True, description="Delete unreferenced files older than the retention.")
    retention_hours: int = Field(
        default=DEFAULT_VACUUM_RETENTION_HOURS,
        description="Files replaced more recently stay (time travel, change-table repair).",
    )


def build_maintenance_job(
    storage_key: str, name: str = "segment_lake_maintenance", tags: dict[str, str] | None = None
) -> JobDefinition:
    """An op-based job compacting and vacuuming the tables of the storage resource `storage_key`."""

    @op(
        name=f"{name}_op",
        required_resource_keys={storage_key},
        description="Compact and vacuum the workspace's lake tables.",
    )
    def maintain_tables(context: OpExecutionContext, config: MaintenanceConfig) -> None:
        target = getattr(context.resources, storage_key).get_target()
        try:
            for entry in maintain(
                target,
                config.tables or None,
                optimize=config.optimize,
                vacuum=config.vacuum,
                retention_hours=config.retention_hours,
            ):
                context.log.info(", ".join(f"{k}={v}" for k, v in entry.items()))
        finally:
            target.close()

    @job(name=name, tags=tags or {}, description="Compaction and vacuum of the lake tables (no-op on DuckDB).")
    def maintenance_job() -> None:
        maintain_tables()

    return maintenance_job


def build_maintenance_schedule(
    job_def: JobDefinition,
    cron: str = DEFAULT_MAINTENANCE_CRON,
    default_status: DefaultScheduleStatus = DefaultScheduleStatus.STOPPED,
) -> ScheduleDefinition:
    return ScheduleDefinition(
        name=f"{job_def.name}_schedule",
        job=job_def,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=default_status,
    )
