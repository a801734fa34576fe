"""Dagster resources: the Segment API connection and the storage target.

Assets receive these and never build URLs, sleep, or open files themselves.
"""

from __future__ import annotations

import os

from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

from segment_assets import spec
from segment_assets.client import DEFAULT_GLOBAL_PER_MINUTE, REGIONS, SegmentClient
from segment_assets.storage import DEFAULT_MEMORY_LIMIT, DuckDBTarget, Target

DEFAULT_DUCKDB_PATH = "data/segment.duckdb"
STABILITIES = ("v1", "beta", "alpha")


class SegmentResource(ConfigurableResource):
    """One Segment workspace, reached with one Public API token."""

    api_token: str = Field(description="Segment Public API token (bearer). Pass it as EnvVar('SEGMENT_API_TOKEN').")
    api_url: str | None = Field(default=None, description="Base URL; overrides region (e.g. a simulator on 127.0.0.1).")
    region: str = Field(default="us", description="'us' (api.segmentapis.com) or 'eu' (eu1.api.segmentapis.com).")
    connection_name: str = Field(default="default", description="Names this workspace when several are replicated.")
    page_size: int | None = Field(default=None, description="Page size; default the largest each endpoint allows.")
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_retries: int = 6
    pace_requests: bool = Field(
        default=True,
        description="Pace each endpoint at its documented limit (e.g. 2/min for warehouse syncs): at most that many "
        "requests start in any 60.5 s window, counted over every client that shares rate_limit_store.",
    )
    global_rate_limit_per_minute: float = DEFAULT_GLOBAL_PER_MINUTE
    rate_limit_overrides: dict[str, float] = Field(default_factory=dict, description="operationId -> requests/min.")
    rate_limit_store: str = Field(
        default="file",
        description="Where the token's request budget and 429 pauses are kept, i.e. who shares them (Segment counts "
        "per token, whoever sends): 'file' (default: SQLite files in $DAGSTER_HOME/.segment-rate-limits/, shared by "
        "every thread and process on this machine: run processes, concurrent runs, the CLI), 'file:/some/dir' (the "
        "same in that directory), 'memory' (this process only), or 'redis://host:port/db' (every machine using that "
        "Redis, e.g. Celery workers; needs the 'celery' extra). Keyed by a hash of api URL + token.",
    )
    max_concurrency: int = Field(default=8, description="Parallel requests when a stream fans out over parents.")
    require_documented_fields: bool = Field(
        default=True,
        description="Reject (re-read, then fail) pages whose records lack a field the API schema marks required; "
        "False loads such fields as NULL and counts them in the materialization metadata.",
    )
    stabilities: list[str] = Field(
        default_factory=lambda: list(STABILITIES),
        description="API stabilities to read; drop 'alpha' and/or 'beta' to skip those endpoints.",
    )

    _client: SegmentClient | None = PrivateAttr(default=None)

    def __repr__(self) -> str:
        return f"SegmentResource(connection_name={self.connection_name!r}, url={self.base_url!r}, api_token=<hidden>)"

    @property
    def base_url(self) -> str:
        if self.api_url:
            return self.api_url.rstrip("/")
        if self.region not in REGIONS:
            raise ValueError(f"SEGMENT_REGION must be one of {sorted(REGIONS)}, got {self.region!r}")
        return REGIONS[self.region]

    def rate_limits(self) -> dict[str, float]:
        if not self.pace_requests:
            return dict(self.rate_limit_overrides)
        limits = {op.operation_id: op.rate_limit_per_minute for op in spec.operations().values() if op.rate_limit_per_minute}
        limits.update(self.rate_limit_overrides)
        return limits

    def get_client(self) -> SegmentClient:
        """One pooled client per resource instance (per run process), shared by its assets."""
        if self._client is None:
            self._client = SegmentClient(
                self.api_token,
                self.base_url,
                page_size=self.page_size,
                connect_timeout=self.connect_timeout,
                read_timeout=self.read_timeout,
                max_retries=self.max_retries,
                rate_limits=self.rate_limits(),
                global_rate_limit=self.global_rate_limit_per_minute if self.pace_requests else None,
                max_connections=max(4, self.max_concurrency * 2),
                rate_limit_store=self.rate_limit_store,
            )
        return self._client


class DuckDBTargetResource(ConfigurableResource):
    """The DuckDB file the tables land in (schema `segment`)."""

    path: str = Field(default=DEFAULT_DUCKDB_PATH, description="DuckDB file; SEGMENT_DUCKDB_PATH overrides the default.")
    lock_timeout: float = Field(default=900.0, description="Seconds to wait for another writer to release the file.")
    memory_limit: str = Field(default=DEFAULT_MEMORY_LIMIT, description="DuckDB memory_limit while writing; it spills past it.")
    threads: int = Field(default=1, description="DuckDB threads while writing.")

    def get_target(self) -> Target:
        return DuckDBTarget(self.path, lock_timeout=self.lock_timeout, memory_limit=self.memory_limit,
                            threads=self.threads)


def default_duckdb_path() -> str:
    return os.environ.get("SEGMENT_DUCKDB_PATH", DEFAULT_DUCKDB_PATH)
