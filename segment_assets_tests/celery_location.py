"""A code location for the Celery deployment test: the product's assets and resources, plus one
job that runs the full configuration sync with dagster-celery's executor (steps go to workers
through the broker). Broker and backend come from the run config, as the workers' config YAML.
The test sets SEGMENT_STEP_PER_GROUP=true: one step per Segment area, so there are steps to spread."""

from __future__ import annotations

from dagster import Definitions, define_asset_job
from dagster_celery import celery_executor

from segment_assets import definitions as segment_definitions
from segment_assets.orchestration.connections import connection_from_env
from segment_assets.orchestration.jobs import CONFIG_JOB, build_jobs
from segment_assets.orchestration.workspaces import Workspace

CELERY_CONFIG_JOB = f"{CONFIG_JOB}_celery"

celery_config_sync = define_asset_job(
    CELERY_CONFIG_JOB,
    selection=build_jobs(Workspace(connection_from_env()))[CONFIG_JOB].selection,
    executor_def=celery_executor,
    description="The configuration sync of segment_config, each step on a Celery worker.",
)

# One Definitions object at module level: Dagster refuses a module that holds two.
defs = Definitions.merge(segment_definitions.defs(), Definitions(jobs=[celery_config_sync]))
