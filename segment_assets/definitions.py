"""The Dagster code location: every Segment stream as an asset, bound to its resources."""

from __future__ import annotations

import os

from dagster import Definitions, EnvVar

from segment_assets.assets import build_assets
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


def build_definitions(segment: SegmentResource | None = None, storage: DuckDBTargetResource | None = None) -> Definitions:
    return Definitions(
        assets=build_assets(),
        resources={
            "segment": segment or segment_resource_from_env(),
            "storage": storage or DuckDBTargetResource(path=default_duckdb_path()),
        },
    )


defs = build_definitions()
