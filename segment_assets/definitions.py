"""The Dagster code location: every Segment stream as an asset, bound to its resources, with
the schedules, the audit-trail sensor and the freshness policies of `automation.py`."""

from __future__ import annotations

import os

from dagster import Definitions, EnvVar, map_asset_specs

from segment_assets.assets import build_assets
from segment_assets.automation import build_audit_sensor, build_jobs, build_schedules, config_cron, with_freshness_policies
from segment_assets.resources import DuckDBTargetResource, SegmentResource, default_duckdb_path


def segment_resource_from_env() -> SegmentResource:
    """Connection settings from the environment; the token stays an EnvVar so Dagster
    resolves it at launch and never shows its value in the UI."""
    return SegmentResource(
        api_token=EnvVar("SEGMENT_API_TOKEN"),
        api_url=os.environ.get("SEGMENT_API_URL") or None,
        region=os.environ.get("SEGMENT_REGION", "us"),
        connection_name=os.environ.get("SEGMENT_CONNECTION_NAME", "default"),
        pace_requests=os.environ.get("SEGMENT_PACE_REQUESTS", "true").lower() not in ("0", "false", "no"),
    )


def build_definitions(segment: SegmentResource | None = None, storage: DuckDBTargetResource | None = None,
                      config_cron_schedule: str | None = None) -> Definitions:
    cron = config_cron_schedule or config_cron()
    jobs = build_jobs()
    return Definitions(
        assets=map_asset_specs(with_freshness_policies(cron), build_assets()),
        jobs=list(jobs.values()),
        schedules=build_schedules(jobs, cron),
        sensors=[build_audit_sensor()],
        resources={
            "segment": segment or segment_resource_from_env(),
            "storage": storage or DuckDBTargetResource(path=default_duckdb_path()),
        },
    )


defs = build_definitions()
