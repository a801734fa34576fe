"""Dagster resources: the Segment API connection and the storage target.

Assets receive these and never build URLs, sleep, or open files themselves. Storage is an
abstract resource (`StorageResource`): assets ask for the interface, and the code location
binds the DuckDB file or the Delta lake, so the kind, the table naming and the connection
come from the resource, not from constants.
"""

from __future__ import annotations

import os
import threading
from abc import abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from dagster import ConfigurableResource, EnvVar, InitResourceContext
from pydantic import Field, PrivateAttr, create_model

from segment_assets.api import spec
from segment_assets.api.client import DEFAULT_GLOBAL_PER_MINUTE, REGIONS, SegmentClient
from segment_assets.api.streams import SELECTABLE_METHODS, STREAMS, StreamSpec, UpdateMethod
from segment_assets.engine.cycles import DEFAULT_BUDGET_MINUTES, budget_requests
from segment_assets.engine.progress import PROGRESS_INTERVAL_SECONDS
from segment_assets.orchestration.connections import Connection
from segment_assets.storage import DEFAULT_MEMORY_LIMIT, DEFAULT_SCHEMA, DuckDBTarget, Target

if TYPE_CHECKING:
    import duckdb

# Not `segment.duckdb`: DuckDB names a file's catalog after it, and a catalog called `segment`
# next to the schema `segment` makes `SELECT * FROM segment.sources` ambiguous.
DEFAULT_DUCKDB_PATH = "data/segment_assets.duckdb"
DEFAULT_LOCK_TIMEOUT = 900.0
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
    max_streams: int = Field(
        default=16,
        description="Streams read at the same time in one run, longest chain of rate-limited work first; a stream "
        "whose endpoint has a rate limit of its own is paced by it and never waits for one of these slots.",
    )
    progress_interval_seconds: float = Field(
        default=PROGRESS_INTERVAL_SECONDS,
        gt=0,
        description="A running stream gets a progress line in the run's event log at most this often (requests, "
        "rows, rate-limit waits, time left); a finished stream always gets its line.",
    )
    token_env: str = Field(
        default="SEGMENT_API_TOKEN",
        description="The variable the token comes from (named in error messages, never its value).",
    )
    ca_bundle: str | None = Field(
        default=None,
        description="PEM file of a CA to trust (a TLS-inspecting proxy); "
        "SSL_CERT_FILE and HTTPS_PROXY/NO_PROXY are honoured too.",
    )
    fanout_budget_minutes: float = Field(
        default=DEFAULT_BUDGET_MINUTES,
        description="A fan-out on a rate-limited endpoint whose requests exceed this many minutes of its limit "
        "reads resumably: each run reads that much, commits, and the next run continues (0: never).",
    )
    fanout_budgets: dict[str, int] = Field(
        default_factory=dict, description="Requests per run for named streams, overriding the minutes."
    )
    require_documented_fields: bool = Field(
        default=True,
        description="Reject (re-read, then fail) pages whose records lack a field the API schema marks required; "
        "False loads such fields as NULL and counts them in the materialization metadata.",
    )
    stabilities: list[str] = Field(
        default_factory=lambda: list(STABILITIES),
        description="API stabilities to read; drop 'alpha' and/or 'beta' to skip those endpoints.",
    )

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
        limits = {
            op.operation_id: op.rate_limit_per_minute for op in spec.operations().values() if op.rate_limit_per_minute
        }
        limits.update(self.rate_limit_overrides)
        return limits

    def budget_for(self, stream: StreamSpec) -> int | None:
        return budget_requests(stream, self.fanout_budget_minutes, self.fanout_budgets)

    def make_client(self, stop: threading.Event | None = None) -> SegmentClient:
        """A new pooled client; the caller closes it (one per run step, shared by its streams' threads).
        `stop`: the run's stop event, read by every request and wait."""
        return SegmentClient(
            self.api_token,
            self.base_url,
            page_size=self.page_size,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            max_retries=self.max_retries,
            rate_limits=self.rate_limits(),
            global_rate_limit=self.global_rate_limit_per_minute if self.pace_requests else None,
            max_connections=max(8, self.max_concurrency * 4),
            token_env=self.token_env,
            rate_limit_store=self.rate_limit_store,
            ca_bundle=self.ca_bundle,
            stop=stop,
        )


class StorageResource(ConfigurableResource):
    """Where a workspace's tables land. Subclasses bind a target (DuckDB file, Delta lake)."""

    schema_name: str = Field(default=DEFAULT_SCHEMA, description="Schema (DuckDB) or folder (lake) of the tables.")
    update_method: str | None = Field(
        default=None,
        description="Update method for every non-partitioned stream: 'reload_and_compare' (change tables) or "
        "'full_load' (replace, no history). Default: each stream's own (reload and compare; watermark upserts "
        "for sync histories).",
    )
    update_methods: dict[str, str] = Field(
        default_factory=dict, description="Per-stream update method, e.g. {'warehouse_syncs': 'reload_and_compare'}."
    )

    # The run's log, where a target says what it waits for (another process holding the file).
    _log: Callable[[str], None] | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._log = context.log.warning if context.log is not None else None

    @abstractmethod
    def get_target(self) -> Target: ...

    @contextmanager
    def read_session(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only DuckDB session on the workspace's tables, on either target: the schema is the
        default, so `SELECT * FROM sources` and `SELECT * FROM <schema>.sources` both work. What an
        asset of the user's own that depends on a Segment asset reads it with (the resource is bound
        as `storage_<name>`)."""
        con = self.get_target().sql_session()
        try:
            yield con
        finally:
            con.close()

    @property
    @abstractmethod
    def kind(self) -> str: ...

    @property
    def needs_maintenance(self) -> bool:
        """Whether the tables gather small files that a maintenance job compacts and vacuums."""
        return False

    def table_name(self, name: str) -> str:
        return f"{self.schema_name}.{name}"

    def method_for(self, stream: StreamSpec) -> UpdateMethod:
        """The stream's update method after the user's choices; partitioned streams keep theirs."""
        if stream.windowing:
            return stream.update_method
        choice = self.update_methods.get(stream.name) or self.update_method
        return parse_update_method(choice, stream.name) if choice else stream.update_method

    def validate_update_methods(self) -> None:
        for name, choice in self.update_methods.items():
            if name not in STREAMS:
                raise ValueError(
                    f"update_methods names an unknown stream {name!r}; `segment-assets streams` lists them"
                )
            parse_update_method(choice, name)
        if self.update_method:
            parse_update_method(self.update_method, "every stream")


def parse_update_method(choice: str, what: str) -> UpdateMethod:
    try:
        method = UpdateMethod(choice)
    except ValueError:
        method = None
    if method not in SELECTABLE_METHODS:
        allowed = ", ".join(sorted(m.value for m in SELECTABLE_METHODS))
        raise ValueError(f"update method {choice!r} for {what} is not one a user can choose: use one of {allowed}")
    return method


class DuckDBStorage(StorageResource):
    """Tables in a DuckDB file, one schema per workspace (`segment` by default)."""

    path: str = Field(
        default=DEFAULT_DUCKDB_PATH, description="DuckDB file; SEGMENT_DUCKDB_PATH overrides the default."
    )
    lock_timeout: float = Field(
        default=DEFAULT_LOCK_TIMEOUT,
        description="Seconds to wait for another process to release the file (the run's log says who holds it).",
    )
    memory_limit: str = Field(
        default=DEFAULT_MEMORY_LIMIT, description="DuckDB memory_limit while writing; it spills past it."
    )
    threads: int = Field(default=1, description="DuckDB threads while writing.")

    @property
    def kind(self) -> str:
        return "duckdb"

    def get_target(self) -> Target:
        return DuckDBTarget(
            self.path,
            schema=self.schema_name,
            lock_timeout=self.lock_timeout,
            memory_limit=self.memory_limit,
            threads=self.threads,
            on_wait=self._log,
        )


def default_duckdb_path() -> str:
    return os.environ.get("SEGMENT_DUCKDB_PATH", DEFAULT_DUCKDB_PATH)


class LakeStorage(StorageResource):
    """Delta Lake tables under `<url>/<schema>/<table>/`, on a local folder (file://) or S3 (s3://).

    S3 settings come from the standard AWS variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    AWS_REGION, AWS_ENDPOINT_URL for S3-compatible stores); `storage_options` adds or overrides
    delta-rs options."""

    url: str = Field(description="Lake root: file:///path/to/lake or s3://bucket/prefix.")
    storage_options: dict[str, str] = Field(
        default_factory=dict,
        description="Extra delta-rs storage options (never put secrets here; use the AWS_* environment variables).",
    )

    @property
    def kind(self) -> str:
        return "delta"

    @property
    def needs_maintenance(self) -> bool:
        return True  # many small commits (change tables, daily windows)

    def get_target(self) -> Target:
        from segment_assets.storage.lake_target import LakeTarget  # deltalake loads only when a lake is used

        return LakeTarget(self.url, schema=self.schema_name, storage_options=self.storage_options)


def segment_resource(connection: Connection) -> SegmentResource:
    """The API connection; the token stays an EnvVar so Dagster resolves it at launch and never
    shows its value in the UI. It is the one configured value: run config that names other fields
    only is refused (Dagster: missing `api_token`), and one that names it keeps the workspace's URL."""
    return configured(
        SegmentResource,
        {"api_token": EnvVar(connection.token_env)},
        api_url=connection.api_url,
        region=connection.region,
        connection_name=connection.name,
        pace_requests=connection.pace_requests,
        token_env=connection.token_env,
        rate_limit_store=connection.rate_limit_store,
    )


def storage_resource(connection: Connection) -> StorageResource:
    common: dict[str, Any] = {
        "schema_name": connection.schema,
        "update_method": connection.update_method,
        "update_methods": dict(connection.update_methods),
    }
    if connection.lake_url:
        storage: StorageResource = configured(LakeStorage, url=connection.lake_url, **common)
    else:
        path = connection.duckdb_path or default_duckdb_path()
        lock_timeout = DEFAULT_LOCK_TIMEOUT if connection.lock_timeout is None else connection.lock_timeout
        storage = configured(DuckDBStorage, path=path, lock_timeout=lock_timeout, **common)
    storage.validate_update_methods()
    return storage


R = TypeVar("R", bound=ConfigurableResource)


def configured(cls: type[R], config: dict[str, Any] | None = None, /, **values: Any) -> R:
    """An instance of `cls` holding `values` as its class defaults rather than as its configuration
    (`config`, if given, is configured as usual: a secret stays an EnvVar, never a default).

    Dagster keeps a resource's configured values as one default for its whole config: run config
    that sets any field of the resource (only `lock_timeout`, say) replaces all of them, and the
    others fall back to the class defaults, so a sync would silently write to the default file and
    schema. As field defaults they stay under a partial run config (and the Launchpad shows them);
    a field the run config names still wins. The class keeps its name, so the UI shows `DuckDBStorage`."""
    fields: dict[str, Any] = {
        name: (cls.model_fields[name].annotation, Field(default=value, description=cls.model_fields[name].description))
        for name, value in values.items()
    }
    bound = create_model(cls.__name__, __base__=cls, __module__=cls.__module__, __doc__=cls.__doc__, **fields)
    return bound(**(config or {}))
