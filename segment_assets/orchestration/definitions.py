"""The Dagster code location: every configured Segment workspace, each a set of assets (one
per stream) with its jobs, schedules, audit-trail sensor and resources, merged into one
`Definitions`.

Workspaces come from the connections file named by `SEGMENT_CONNECTIONS`, from component
YAML files under `segment_assets/defs/`, or (neither present) from the environment: one
workspace, zero configuration (`SEGMENT_API_TOKEN`, `SEGMENT_REGION`/`SEGMENT_API_URL`...).
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import Definitions, in_process_executor
from dagster.components import load_from_defs_folder

from segment_assets.orchestration.assets import build_workspace_assets
from segment_assets.orchestration.automation import (
    CONFIG_JOB,
    build_audit_sensor,
    build_jobs,
    build_schedules,
    with_freshness_policy,
)
from segment_assets.orchestration.connections import CONNECTIONS_ENV, Connection, check_distinct, configured_connections
from segment_assets.orchestration.maintenance import build_maintenance_job, build_maintenance_schedule
from segment_assets.orchestration.resources import SegmentResource, StorageResource, segment_resource, storage_resource
from segment_assets.orchestration.translator import SegmentTranslator


def build_workspace_definitions(
    connection: Connection,
    translator: SegmentTranslator | None = None,
    segment: SegmentResource | None = None,
    storage: StorageResource | None = None,
) -> Definitions:
    """Everything of one workspace, namespaced by its connection."""
    translator = translator or SegmentTranslator()
    segment = segment or segment_resource(connection)
    storage = storage or storage_resource(connection)
    assets = build_workspace_assets(connection, storage, translator, with_freshness_policy(connection))
    keys = {s.name: translator.get_asset_key(s, connection) for s in connection.streams()}
    jobs = build_jobs(connection, keys)
    segment_key, storage_key = connection.resource_keys
    schedules = build_schedules(connection, jobs)
    extra_jobs = []
    if storage.needs_maintenance:
        maintenance = build_maintenance_job(storage_key, connection.maintenance_job_name, connection.run_tags)
        extra_jobs.append(maintenance)
        schedules.append(build_maintenance_schedule(maintenance))
    return Definitions(
        assets=assets,
        jobs=[*jobs.values(), *extra_jobs],
        schedules=schedules,
        sensors=[build_audit_sensor(connection, keys, jobs[CONFIG_JOB])],
        resources={segment_key: segment, storage_key: storage},
    )


def build_definitions(
    connections: list[Connection] | None = None, translator: SegmentTranslator | None = None
) -> Definitions:
    """The workspaces given (default: the SEGMENT_CONNECTIONS file, or the environment's one)."""
    connections = connections if connections is not None else configured_connections()
    check_distinct(connections, "the code location")
    merged = Definitions.merge(*(build_workspace_definitions(c, translator) for c in connections))
    # Each run's streams proceed concurrently in threads of one step (sync.py): running that step
    # in the run worker saves a process start per step and keeps UI runs as fast as the CLI.
    return Definitions.merge(merged, Definitions(executor=in_process_executor))


def component_definitions() -> Definitions | None:
    """The workspaces of the component YAML files under segment_assets/defs/, if any."""
    project = Path(__file__).resolve().parents[2]
    if not (project / "pyproject.toml").exists():
        return None  # installed as a package: components live in a project's own defs folder
    defs = load_from_defs_folder(path_within_project=project)
    return defs if list(defs.resolve_all_asset_keys()) else None


def code_location() -> Definitions:
    """Components, plus the SEGMENT_CONNECTIONS file; the environment's workspace when neither names one."""
    components = component_definitions()
    if components is None:
        return build_definitions()
    if os.environ.get(CONNECTIONS_ENV):
        return Definitions.merge(components, build_definitions())
    return Definitions.merge(components, Definitions(executor=in_process_executor))
