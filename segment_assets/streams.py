"""Every Segment resource this project replicates, declared as data.

One `StreamSpec` per table. Path, media type (stability), per-endpoint rate limit and
feature gate come from the OpenAPI document by operationId (`spec.py`), so a declaration
holds only what the document cannot say: the table name, Segment area, primary key,
where parent ids come from, how records are laid out, and the update method.
`assets.py` turns each declaration into one Dagster asset; the client reads the paging
mode and page-size cap from here, so API quirks live in this file and nowhere else.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType

from segment_assets import spec
from segment_assets.spec import Operation


class Paging(enum.Enum):
    CURSOR = "cursor"  # `pagination[count]`/`pagination[cursor]` in, `data.pagination` out
    TOP_LEVEL = "top_level"  # top-level `count`/`cursor` query parameters
    PER_KEY = "per_key"  # one independent cursor per data key (`<key>Pagination`)
    SINGLE = "single"  # accepts `pagination` but returns no pagination object
    NONE = "none"  # not paginated at all


class UpdateMethod(str, enum.Enum):
    FULL_LOAD = "full_load"  # replace the table, no change table
    RELOAD_AND_COMPARE = "reload_and_compare"  # full read diffed on primary key into <table>__ct
    INCREMENTAL = "incremental"  # time-partitioned: each partition replaces its window


class Window(str, enum.Enum):
    DAILY = "daily"
    MONTHLY = "monthly"


@dataclass(frozen=True)
class ParentLink:
    """Where a child stream's path/query ids come from: columns of the parent's stored table."""

    stream: str
    params: Mapping[str, str]  # API parameter name -> column of the parent table
    where: str | None = None  # SQL predicate on the parent table (e.g. only INSERT_* functions)

    def key_columns(self) -> tuple[str, ...]:
        """Columns the child rows carry to name their parent (snake_case of the parameter)."""
        return tuple(spec.snake_case(p) for p in self.params)


@dataclass(frozen=True)
class TimeWindowing:
    """How a time-based stream maps a Dagster partition window onto request parameters."""

    partition: Window
    time_column: str  # column whose value places a row in a partition window
    start_param: str | None = "startTime"
    end_param: str | None = "endTime"
    period_param: str | None = None  # usage endpoints: one month start date per request
    granularity: str | None = None  # value of the `granularity` parameter
    retention_days: int | None = None  # the API serves nothing older than this
    max_range_days: int | None = None  # the API refuses longer windows in one request


@dataclass(frozen=True)
class StreamSpec:
    name: str
    operation_id: str
    group: str
    primary_key: tuple[str, ...]
    data_key: str | tuple[str, ...] | None = field(default=None)
    parent: ParentLink | None = None
    fan_out: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    paging: Paging = Paging.CURSOR
    max_page_size: int = 1000
    explode: str | None = None  # array field whose elements become rows of their own
    scalar_column: str | None = None  # records that are bare strings land in this column
    map_key_column: str | None = None  # data key holds a map: one row per entry, key in this column
    data_fields: tuple[str, ...] = ()  # fields of `data` beside the records, copied onto each row
    column_types: Mapping[str, str] = field(default_factory=dict)
    update_method: UpdateMethod = UpdateMethod.RELOAD_AND_COMPARE
    windowing: TimeWindowing | None = None
    covered_by: str | None = None  # not a table: this stream's list already returns the objects
    decision: str = ""  # why the declaration is what it is, where the API left a choice

    def __post_init__(self) -> None:
        object.__setattr__(self, "fan_out", MappingProxyType(dict(self.fan_out)))
        object.__setattr__(self, "query", MappingProxyType(dict(self.query)))
        object.__setattr__(self, "column_types", MappingProxyType(dict(self.column_types)))

    @cached_property
    def operation(self) -> Operation:
        return spec.operation(self.operation_id)

    @property
    def path(self) -> str:
        return self.operation.path

    @property
    def stability(self) -> str:
        return self.operation.stability

    @property
    def rate_limit_per_minute(self) -> float | None:
        return self.operation.rate_limit_per_minute

    @property
    def feature_gate(self) -> str | None:
        return self.operation.feature_gate

    @property
    def table(self) -> str:
        return self.name

    @property
    def data_keys(self) -> tuple[str, ...]:
        if self.data_key is None:
            return ()
        return (self.data_key,) if isinstance(self.data_key, str) else self.data_key

    @property
    def materialized(self) -> bool:
        return self.covered_by is None

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "table": f"segment.{self.table}" if self.materialized else None,
            "operation_id": self.operation_id,
            "path": self.path,
            "group": self.group,
            "stability": self.stability,
            "primary_key": list(self.primary_key),
            "parent": self.parent.stream if self.parent else None,
            "parent_params": dict(self.parent.params) if self.parent else {},
            "fan_out": {k: list(v) for k, v in self.fan_out.items()},
            "paging": self.paging.value,
            "max_page_size": self.max_page_size,
            "rate_limit_per_minute": self.rate_limit_per_minute,
            "feature_gate": self.feature_gate,
            "update_method": self.update_method.value,
            "partitioned": self.windowing.partition.value if self.windowing else None,
            "covered_by": self.covered_by,
            "decision": self.decision,
        }


def _p(stream: str, where: str | None = None, **params: str) -> ParentLink:
    return ParentLink(stream=stream, params=params, where=where)


_DECLARATIONS: tuple[StreamSpec, ...] = (
    # --- workspace -------------------------------------------------------------------------
    StreamSpec("workspace", "getWorkspace", "workspace", ("id",), data_key="workspace",
               paging=Paging.NONE),
    # --- sources ---------------------------------------------------------------------------
    StreamSpec("sources", "listSources", "sources", ("id",), data_key="sources"),
    StreamSpec("source_connected_destinations", "listConnectedDestinationsFromSource", "sources",
               ("source_id", "id"), data_key="destinations", parent=_p("sources", sourceId="id")),
    # --- destinations ----------------------------------------------------------------------
    StreamSpec("destinations", "listDestinations", "destinations", ("id",), data_key="destinations"),
    # --- warehouses ------------------------------------------------------------------------
    StreamSpec("warehouses", "listWarehouses", "warehouses", ("id",), data_key="warehouses"),
    # --- protocols -------------------------------------------------------------------------
    StreamSpec("tracking_plans", "listTrackingPlans", "protocols", ("id",), data_key="trackingPlans"),
    StreamSpec("tracking_plan_rules", "listRulesFromTrackingPlan", "protocols",
               ("tracking_plan_id", "type", "key"), data_key="rules",
               parent=_p("tracking_plans", trackingPlanId="id"),
               decision="rules have no id: keyed by (tracking plan, type, key) per REFERENCE §6"),
)

STREAMS: Mapping[str, StreamSpec] = MappingProxyType({s.name: s for s in _DECLARATIONS})


def materialized_streams() -> list[StreamSpec]:
    return [s for s in STREAMS.values() if s.materialized]


def children_of(name: str) -> list[StreamSpec]:
    return [s for s in STREAMS.values() if s.parent and s.parent.stream == name]
