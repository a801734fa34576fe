"""The Dagster code location: every configured Segment workspace, each a set of assets (one
per stream) with its jobs, schedules, audit-trail sensor and resources, merged into one
`Definitions`.

Which workspaces, and each one's translator, is `workspaces.resolve_workspaces`: component YAML
files under `segment_assets/defs/`, the connections file named by `SEGMENT_CONNECTIONS`, or
(neither present) the environment's single workspace (`SEGMENT_API_TOKEN`, `SEGMENT_REGION`...).
"""

from __future__ import annotations

from collections.abc import Sequence

from dagster import Definitions, in_process_executor

from segment_assets.orchestration.assets import build_workspace_assets
from segment_assets.orchestration.component import SegmentWorkspaceComponent
from segment_assets.orchestration.connections import check_distinct
from segment_assets.orchestration.freshness import with_freshness_policy
from segment_assets.orchestration.jobs import CONFIG_JOB, build_jobs, build_schedules
from segment_assets.orchestration.maintenance import build_maintenance_job, build_maintenance_schedule
from segment_assets.orchestration.resources import SegmentResource, StorageResource, segment_resource, storage_resource
from segment_assets.orchestration.sensors import build_audit_sensor
from segment_assets.orchestration.workspaces import (
    Workspace,
    loading_components,
    project_components,
    resolve_workspaces,
)


def build_workspace_definitions(
    workspace: Workspace, segment: SegmentResource | None = None, storage: StorageResource | None = None
) -> Definitions:
    """Everything of one workspace, namespaced by its connection."""
    connection = workspace.connection
    segment = segment or segment_resource(connection)
    storage = storage or storage_resource(connection)
    assets = build_workspace_assets(workspace, storage, with_freshness_policy(connection))
    jobs = build_jobs(workspace)
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
        sensors=[build_audit_sensor(workspace, jobs[CONFIG_JOB])],
        resources={segment_key: segment, storage_key: storage},
    )


def build_definitions(workspaces: Sequence[Workspace] | None = None) -> Definitions:
    """The workspaces given (default: every one configured), on the in-process executor."""
    workspaces = resolve_workspaces() if workspaces is None else workspaces
    check_distinct([w.connection for w in workspaces], "the code location")
    # Each run's streams proceed concurrently in threads of one step (engine/runner.py): running
    # that step in the run worker saves a process start per step and keeps UI runs as fast as the CLI.
    return Definitions.merge(
        *(build_workspace_definitions(w) for w in workspaces), Definitions(executor=in_process_executor)
    )


def code_location() -> Definitions:
    """Every configured workspace. Those of components are built by Dagster's component loader,
    with the rest of the defs folder; the others here."""
    tree = project_components()
    if tree is None:
        return build_definitions()
    with loading_components():
        built = {c.name for c in tree.get_all_components(SegmentWorkspaceComponent)}
        others = [w for w in resolve_workspaces(components=tree) if w.name not in built]
        return Definitions.merge(tree.build_defs(), build_definitions(others))
