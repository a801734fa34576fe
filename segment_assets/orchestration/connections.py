"""Which Segment workspaces this code location replicates, and how each is namespaced.

One `Connection` per workspace (one Public API token each). With no configuration, one
workspace is read from the environment (`SEGMENT_API_TOKEN`, `SEGMENT_REGION`, ...) under
the names the project always used (asset keys `segment/<stream>`, schema `segment`, jobs
`segment_config`...). A connections file (`SEGMENT_CONNECTIONS`, YAML) or component YAML
files name several; everything of a named workspace is then namespaced by its name:

| what | zero-config | named `us_prod` |
|---|---|---|
| asset keys | `segment/<stream>` | `segment/us_prod/<stream>` |
| DuckDB schema / lake folder | `segment` | `us_prod` |
| jobs | `segment_config`, `segment_daily`, `segment_monthly` | `segment_us_prod_config`, ... |
| schedules, sensor | `segment_config_schedule`, `segment_audit_trail_sensor` | `segment_us_prod_config_schedule`, ... |
| resources | `segment`, `storage` | `segment_us_prod`, `storage_us_prod` |
| concurrency pool | `segment_api` | `segment_api_us_prod` |
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from segment_assets.api.streams import STREAMS, StreamSpec, materialized_streams
from segment_assets.engine.windows import DEFAULT_DAILY_START, DEFAULT_MONTHLY_START, validate_start

CONNECTIONS_ENV = "SEGMENT_CONNECTIONS"
DEFAULT_TOKEN_ENV = "SEGMENT_API_TOKEN"
DEFAULT_CONFIG_CRON = "0 * * * *"
DEFAULT_NAME = "default"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class ConnectionConfigError(ValueError):
    """A connection's configuration is wrong; the message names the field and the fix."""


class Connection(BaseModel):
    """One Segment workspace: how to reach it, where its tables land, what to read."""

    # hide_input_in_errors: a refused `token:` must not be echoed back by the validation error.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    name: str = Field(
        description="Names the workspace: asset key prefix, schema/folder, job, schedule and sensor names."
    )
    # Never set (`_refuse_tokens` refuses it): declared so the YAML model Dagster derives for the
    # component lets `token:` through to that refusal, which names token_env, instead of a bare
    # "extra inputs are not permitted".
    token: str | None = Field(
        default=None, repr=False, description="Refused: a token never goes into a file. Use token_env."
    )
    token_env: str = Field(
        default=DEFAULT_TOKEN_ENV,
        description="The environment variable holding this workspace's Public API token (never the token itself).",
    )
    region: Literal["us", "eu"] = Field(
        default="us", description="'us' (api.segmentapis.com) or 'eu' (eu1.api.segmentapis.com)."
    )
    api_url: str | None = Field(default=None, description="Base URL; overrides region (e.g. a simulator).")
    duckdb_path: str | None = Field(default=None, description="DuckDB file (default data/segment_assets.duckdb).")
    lock_timeout: float | None = Field(
        default=None,
        gt=0,
        description="Seconds a sync waits for another process to release the DuckDB file (default 900); "
        "the run's log says who holds it.",
    )
    lake_url: str | None = Field(
        default=None,
        description="Delta lake root: file:///path or s3://bucket/prefix. Tables go to <root>/<schema>/<table>/.",
    )
    schema_name: str | None = Field(default=None, description="DuckDB schema or lake folder (default: the name).")
    key_prefix: list[str] | None = Field(default=None, description="Asset key prefix (default segment/<name>).")
    include: list[str] = Field(default_factory=list, description="Streams or groups to replicate (default: all).")
    exclude: list[str] = Field(default_factory=list, description="Streams or groups to leave out.")
    update_method: str | None = Field(
        default=None, description="'reload_and_compare' or 'full_load' for every non-partitioned stream."
    )
    update_methods: dict[str, str] = Field(default_factory=dict, description="Per-stream update method.")
    config_cron: str = Field(default=DEFAULT_CONFIG_CRON, description="Cron of the configuration schedule (UTC).")
    daily_start: str = Field(default=DEFAULT_DAILY_START, description="First daily partition (YYYY-MM-DD).")
    monthly_start: str = Field(default=DEFAULT_MONTHLY_START, description="First monthly partition (YYYY-MM-01).")
    owners: list[str] = Field(default_factory=list, description="Owners of every asset (emails or team:name).")
    tags: dict[str, str] = Field(default_factory=dict, description="Tags on every asset.")
    pace_requests: bool = Field(default=True, description="Pace each endpoint at its documented rate limit.")
    rate_limit_store: str = Field(
        default="file",
        description="Who shares this token's rate budget: 'file' (every process on this machine, the default), "
        "'redis://host:port/db' (several machines: Celery workers, pods), or 'memory' (this process).",
    )
    step_per_group: bool = Field(
        default=False,
        description="One Dagster step per Segment area (sources, warehouses...) instead of one per partitioning: for "
        "executors that spread steps over processes or machines (Celery, a pod per step). In one process "
        "a single step is faster: its streams already run concurrently.",
    )
    default_names: bool = Field(
        default=False,
        description="Use the un-namespaced names of a single workspace (set by zero-config; keep false in files).",
    )

    @model_validator(mode="before")
    @classmethod
    def _refuse_tokens(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for key in ("token", "api_token", "secret"):
                if data.get(key) is not None:
                    raise ValueError(
                        f"connection {data.get('name', '?')!r}: a token written into the configuration file is refused "
                        f"(`{key}:`). Put it in an environment variable and name that variable with "
                        f"`token_env: SEGMENT_..._TOKEN`; never commit a token."
                    )
        return data

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"connection name {value!r} must be lower-case letters, digits and _ (start with a "
                f"letter, at most 40): it becomes a schema, an asset key part and job names"
            )
        return value

    @field_validator("config_cron")
    @classmethod
    def _check_cron(cls, value: str) -> str:
        if not croniter.is_valid(value):
            raise ValueError(f"config_cron {value!r} is not a cron expression (e.g. '0 * * * *' for hourly)")
        return value

    @field_validator("daily_start", "monthly_start")
    @classmethod
    def _check_start(cls, value: str, info: Any) -> str:
        return validate_start(value, info.field_name)

    @model_validator(mode="after")
    def _check_choices(self) -> Connection:
        if self.duckdb_path and self.lake_url:
            raise ValueError(f"connection {self.name!r}: set duckdb_path or lake_url, not both")
        if self.lock_timeout is not None and self.lake_url:
            raise ValueError(
                f"connection {self.name!r}: lock_timeout is for a DuckDB file; lake writers take no lock (remove it)"
            )
        groups = {s.group for s in STREAMS.values()}
        for field_name in ("include", "exclude"):
            unknown = [x for x in getattr(self, field_name) if x not in STREAMS and x not in groups]
            if unknown:
                raise ValueError(
                    f"connection {self.name!r}: {field_name} names unknown streams or groups {unknown}; "
                    f"`segment-assets streams` lists them (groups: {', '.join(sorted(groups))})"
                )
        return self

    # -- names ---------------------------------------------------------------------------

    @property
    def schema(self) -> str:  # type: ignore[override]  # pydantic's deprecated BaseModel.schema(); the name is ours
        return self.schema_name or ("segment" if self.default_names else self.name)

    @property
    def asset_key_prefix(self) -> list[str]:
        if self.key_prefix is not None:
            return list(self.key_prefix)
        return ["segment"] if self.default_names else ["segment", self.name]

    def _named(self, stem: str) -> str:
        return f"segment_{stem}" if self.default_names else f"segment_{self.name}_{stem}"

    @property
    def job_names(self) -> dict[str, str]:
        return {w: self._named(w) for w in ("config", "daily", "monthly")}

    @property
    def sensor_name(self) -> str:
        return self._named("audit_trail_sensor")

    def schedule_name(self, what: str) -> str:
        return self._named(f"{what}_schedule")

    @property
    def maintenance_job_name(self) -> str:
        return self._named("lake_maintenance")

    @property
    def resource_keys(self) -> tuple[str, str]:
        """(segment, storage) resource keys; named workspaces bind their own."""
        return ("segment", "storage") if self.default_names else (f"segment_{self.name}", f"storage_{self.name}")

    @property
    def pool(self) -> str:
        # The API's limits are per token: every run of one workspace shares this pool.
        return "segment_api" if self.default_names else f"segment_api_{self.name}"

    @property
    def run_tags(self) -> dict[str, str]:
        return {"segment/connection": self.name}

    # -- selection -----------------------------------------------------------------------

    def selects(self, stream: StreamSpec) -> bool:
        def named(xs: Sequence[str]) -> bool:
            return stream.name in xs or stream.group in xs

        if named(self.exclude):
            return False
        return named(self.include) if self.include else True

    def streams(self) -> list[StreamSpec]:
        """The materialized streams of this workspace; a child whose parent is left out is left out too."""
        chosen: dict[str, StreamSpec] = {}
        for stream in materialized_streams():  # declarations list parents before children
            if not self.selects(stream):
                continue
            if stream.parent and stream.parent.stream not in chosen:
                continue
            chosen[stream.name] = stream
        return list(chosen.values())


# The single workspace of the zero-config environment, with the default settings.
ZERO_CONFIG = Connection(name=DEFAULT_NAME, default_names=True)

_FLAGS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _env_flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    """A yes/no variable; anything else is an error rather than a silent default."""
    text = env.get(name, "").strip().lower()
    if not text:
        return default
    if text not in _FLAGS:
        raise ConnectionConfigError(f"{name}={env[name]!r} is not a yes/no value: use true or false")
    return _FLAGS[text]


def connection_from_env(environ: Mapping[str, str] | None = None) -> Connection:
    """The zero-config workspace: everything from environment variables, un-namespaced names."""
    env = os.environ if environ is None else environ
    lake = env.get("SEGMENT_TARGET", "duckdb").strip().lower() == "lake"
    if lake and not env.get("SEGMENT_LAKE_URL"):
        raise ConnectionConfigError("SEGMENT_TARGET=lake needs SEGMENT_LAKE_URL (file:///path or s3://bucket/prefix)")
    return Connection(
        name=env.get("SEGMENT_CONNECTION_NAME", DEFAULT_NAME),
        region=env.get("SEGMENT_REGION", "us") or "us",
        api_url=env.get("SEGMENT_API_URL") or None,
        duckdb_path=None if lake else env.get("SEGMENT_DUCKDB_PATH") or None,
        lake_url=env.get("SEGMENT_LAKE_URL") if lake else None,
        config_cron=env.get("SEGMENT_CONFIG_CRON", "").strip() or DEFAULT_CONFIG_CRON,
        daily_start=env.get("SEGMENT_DAILY_START") or DEFAULT_DAILY_START,
        monthly_start=env.get("SEGMENT_MONTHLY_START") or DEFAULT_MONTHLY_START,
        pace_requests=_env_flag(env, "SEGMENT_PACE_REQUESTS", True),
        step_per_group=_env_flag(env, "SEGMENT_STEP_PER_GROUP", False),
        rate_limit_store=env.get("SEGMENT_RATE_LIMIT_STORE") or "file",
        default_names=True,
    )


def load_connections_file(path: str | os.PathLike[str]) -> list[Connection]:
    """A hand-written connections file: `connections: [{name: ..., token_env: ..., ...}, ...]`."""
    file = Path(path)
    if not file.exists():
        raise ConnectionConfigError(f"{CONNECTIONS_ENV}={path}: no such file")
    raw = yaml.safe_load(file.read_text()) or {}
    items = raw.get("connections") if isinstance(raw, Mapping) else None
    if not isinstance(items, list) or not items:
        raise ConnectionConfigError(f"{path}: expected a top-level `connections:` list with at least one entry")
    out: list[Connection] = []
    for i, item in enumerate(items):
        try:
            out.append(Connection.model_validate(item))
        except ValueError as exc:
            raise ConnectionConfigError(f"{path}: connections[{i}]: {exc}") from None
    check_distinct(out, str(path))
    return out


def check_distinct(connections: Sequence[Connection], where: str) -> None:
    seen: dict[str, str] = {}
    for c in connections:
        for what, value in (("name", c.name), ("asset key prefix", "/".join(c.asset_key_prefix))):
            key = f"{what}:{value}"
            if key in seen:
                raise ConnectionConfigError(
                    f"{where}: two connections share the {what} {value!r}; each workspace needs its own"
                )
            seen[key] = c.name
