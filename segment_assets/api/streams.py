"""Every Segment resource this project replicates, declared as data.

One `StreamSpec` per table. Path, media type (stability), per-endpoint rate limit and
feature gate come from the OpenAPI document by operationId (`spec.py`), so a declaration
holds only what the document cannot say: the table name, Segment area, primary key,
where parent ids come from, how records are laid out, and the update method.
`orchestration/assets.py` turns each declaration into one Dagster asset; the paginator of
each read (`paging.py`) follows the declared paging style and page-size cap, so API quirks
live in this file and nowhere else.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType

from segment_assets.api import spec
from segment_assets.api.spec import Operation


class Paging(enum.Enum):
    """How an endpoint pages; `paging.PAGINATORS` names the paginator class of each style."""

    CURSOR = "cursor"  # `pagination[count]`/`pagination[cursor]` in, `data.pagination` out
    TOP_LEVEL = "top_level"  # top-level `count`/`cursor` query parameters
    PER_KEY = "per_key"  # one independent cursor per data key (`<key>Pagination`)
    SINGLE = "single"  # accepts `pagination` but returns no pagination object
    NONE = "none"  # not paginated at all


class UpdateMethod(str, enum.Enum):
    FULL_LOAD = "full_load"  # full read replaces the table, no change table (a user's choice per stream)
    RELOAD_AND_COMPARE = "reload_and_compare"  # full read diffed on primary key into <table>__ct
    WATERMARK = "watermark"  # newest records only (paging stops below the stored max), upserted with I/U change rows
    INCREMENTAL = "incremental"  # time-partitioned: each partition replaces its window

    @property
    def keeps_changes(self) -> bool:
        return self in (UpdateMethod.RELOAD_AND_COMPARE, UpdateMethod.WATERMARK)


# What a user may choose instead of a stream's declared method (the connector this replaces
# offers "reload and compare" with change tables, and "full load"): a partitioned stream
# always replaces its windows, the others may be read in full with or without history.
SELECTABLE_METHODS: frozenset[UpdateMethod] = frozenset({UpdateMethod.FULL_LOAD, UpdateMethod.RELOAD_AND_COMPARE})


class Partitioning(str, enum.Enum):
    """How a time-based stream is partitioned in Dagster: by UTC day or by UTC month."""

    DAILY = "daily"
    MONTHLY = "monthly"


@dataclass(frozen=True)
class RowFilter:
    """A condition on a parent's stored rows, declared as data so every target can evaluate it."""

    column: str
    startswith: str | None = None

    def __str__(self) -> str:
        return f"{self.column} starts with {self.startswith!r}"


@dataclass(frozen=True)
class ParentLink:
    """Where a child stream's path/query ids come from: columns of the parent's stored table.
    Rows whose id columns are NULL are never parents (e.g. subscriptions without a modelId)."""

    stream: str
    params: Mapping[str, str]  # API parameter name -> column of the parent table
    where: RowFilter | None = None  # only the parent rows matching this (e.g. only INSERT_* functions)
    column_names: Mapping[str, str] = field(default_factory=dict)  # parameter -> child column, when not snake_case

    def column_for(self, param: str) -> str:
        """Column the child rows carry to name their parent (snake_case of the parameter by default)."""
        return self.column_names.get(param) or spec.snake_case(param)


@dataclass(frozen=True)
class InlineRecords:
    """The parent's list already carries this stream's records, cut at `limit` per parent (the
    parent stream asks for that many): a parent whose stored list holds fewer has all its records
    there and costs no request; a full list may have been cut, so that parent is read from this
    stream's own endpoint, as is one whose list is absent (a parent table loaded without it)."""

    column: str  # column of the parent table holding the records, a JSON array
    limit: int  # the most the parent's list holds per row

    def complete(self, records: object) -> bool:
        return isinstance(records, list) and len(records) < self.limit


@dataclass(frozen=True)
class TimeWindowing:
    """How a time-based stream maps a Dagster partition window onto request parameters."""

    partitioning: Partitioning  # the Dagster partitions (UTC days or months) the stream is materialized by
    time_column: str  # column whose value places a row in a partition window
    window_columns: bool = False  # records carry no time: store the request window as window_start/window_end
    chunk_days: int | None = None  # one request per chunk of this many days (None: the whole run window)
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
    query: Mapping[str, object] = field(default_factory=dict)
    paging: Paging = Paging.CURSOR
    max_page_size: int = 1000
    explode: str | None = None  # array field whose elements become rows of their own
    scalar_column: str | None = None  # records that are bare strings land in this column
    map_key_column: str | None = None  # data key holds a map: one row per entry, key in this column
    data_fields: tuple[str, ...] = ()  # fields of `data` beside the records, copied onto each row
    derived: Mapping[str, str] = field(default_factory=dict)  # column -> dotted path inside the record
    key_defaults: Mapping[str, str] = field(default_factory=dict)  # value for an absent optional key part
    dedupe: bool = False  # the API may repeat a record across pages (documented for listTraits)
    watermark: str | None = None  # record time field for UpdateMethod.WATERMARK
    column_types: Mapping[str, str] = field(default_factory=dict)
    update_method: UpdateMethod = UpdateMethod.RELOAD_AND_COMPARE
    windowing: TimeWindowing | None = None
    covered_by: str | None = None  # not a table: this stream's list already returns the objects
    inline: InlineRecords | None = None  # the parent's rows carry this stream's records (up to a limit)
    decision: str = ""  # why the declaration is what it is, where the API left a choice

    def __post_init__(self) -> None:
        object.__setattr__(self, "fan_out", MappingProxyType(dict(self.fan_out)))
        object.__setattr__(self, "query", MappingProxyType(dict(self.query)))
        object.__setattr__(self, "column_types", MappingProxyType(dict(self.column_types)))
        object.__setattr__(self, "derived", MappingProxyType(dict(self.derived)))
        object.__setattr__(self, "key_defaults", MappingProxyType(dict(self.key_defaults)))

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
            "partitioned": self.windowing.partitioning.value if self.windowing else None,
            "covered_by": self.covered_by,
            "inline": {"column": self.inline.column, "limit": self.inline.limit} if self.inline else None,
            "decision": self.decision,
        }


def _p(
    stream: str, where: RowFilter | None = None, names: Mapping[str, str] | None = None, **params: str
) -> ParentLink:
    return ParentLink(stream=stream, params=params, where=where, column_names=names or {})


_TS = "TIMESTAMPTZ"
_DAY = TimeWindowing(Partitioning.DAILY, "time", granularity="HOUR", retention_days=30, max_range_days=14)
_USAGE = TimeWindowing(
    Partitioning.MONTHLY, "timestamp", start_param=None, end_param=None, period_param="period", retention_days=365
)
_USAGE_TYPES = {
    "timestamp": _TS,
    "period_start": _TS,
    "period_end": _TS,
    "api_calls": "BIGINT",
    "anonymous": "BIGINT",
    "anonymous_identified": "BIGINT",
    "identified": "BIGINT",
    "never_identified": "BIGINT",
}


_S = StreamSpec
_SYNCS = (
    "2 requests/minute, one list per warehouse, the cheapest read of sync histories (the per-source list would "
    "cost one request per warehouse and source): it returns the syncs of every source connected to the "
    "warehouse, newest first (not documented: verified against the simulator only), so paging stops after "
    "the first page reaching the stored watermark (max start less a day, for late-finishing syncs); a re-sync "
    "of an unchanged workspace costs one request per warehouse. Rows are upserted; none are deleted"
)
# Per-request cost of the space-schema endpoints (25/min): no bulk read exists, each parent is one request.
_SCHEMA = "25 requests/minute, one request per {parent}: the API has no bulk read of {what}, nor a cheaper one"
# Sample values come inline with the property lists: `includeSampleValues=true` and `samplesCount`
# up to 100 (the most the API allows) put each property's first values in its `samples`. A list
# shorter than 100 is all there is; a full one may be cut (the dedicated endpoints return up to
# 1,000), so only those properties cost a request of their own, at 25/min.
SAMPLES_INLINE = 100
_WITH_SAMPLES: Mapping[str, object] = {"includeSampleValues": "true", "samplesCount": SAMPLES_INLINE}
_INLINE_SAMPLES = InlineRecords("samples", SAMPLES_INLINE)
_LIST_WITH_SAMPLES = (
    "; read with includeSampleValues=true&samplesCount=100 (the most the API allows), so `samples` holds up to "
    "100 sample values per {parent} and `{child}` needs a request only for a {parent} whose list is full (a "
    "change of a {parent}'s samples is an update of its row here too)"
)
_SAMPLES = (
    "25 requests/minute, spent only where an inline list is full: the {parent} list's `samples` "
    "(includeSampleValues=true&samplesCount=100) hold every value when there are fewer than 100, and those land "
    "here without a request; a full list (100 values) may have been cut, since this endpoint returns up to 1,000, "
    "so such a {parent} is read from this endpoint and its rows are what the endpoint returned (so is one whose row "
    "holds no samples, e.g. loaded by an older version). Rows, keys and change rows are those of one request per "
    "{parent}; beyond one run's budget of requests the stream reads resumably (README: big workspaces)"
)
_COVERED = "the list endpoint already returns the full object; a get per id would only spend rate limit"

_DECLARATIONS: tuple[StreamSpec, ...] = (
    # --- workspace ---------------------------------------------------------------------------
    _S("workspace", "getWorkspace", "workspace", ("id",), data_key="workspace", paging=Paging.NONE),
    # --- sources -----------------------------------------------------------------------------
    _S("sources", "listSources", "sources", ("id",), data_key="sources"),
    _S(
        "source_details",
        "getSource",
        "sources",
        ("source_id",),
        parent=_p("sources", sourceId="id"),
        paging=Paging.NONE,
        data_fields=("trackingPlanId",),
        data_key="source",
        decision="getSource adds trackingPlanId, which no list returns: fetched per source and kept as its own table",
    ),
    _S(
        "source_connected_destinations",
        "listConnectedDestinationsFromSource",
        "sources",
        ("source_id", "id"),
        data_key="destinations",
        parent=_p("sources", sourceId="id"),
    ),
    _S(
        "source_connected_warehouses",
        "listConnectedWarehousesFromSource",
        "sources",
        ("source_id", "id"),
        data_key="warehouses",
        parent=_p("sources", sourceId="id"),
    ),
    _S(
        "source_schema_settings",
        "listSchemaSettingsInSource",
        "sources",
        ("source_id",),
        parent=_p("sources", sourceId="id"),
        paging=Paging.NONE,
    ),
    _S(
        "source_live_plugins",
        "getLatestFromLivePlugins",
        "sources",
        ("source_id",),
        data_key="livePlugin",
        parent=_p("sources", sourceId="id"),
        paging=Paging.NONE,
        decision="only the latest plugin per source is readable, so the source is the key",
    ),
    _S(
        "source_regulations",
        "listRegulationsFromSource",
        "deletion_and_suppression",
        ("source_id", "id"),
        data_key="regulations",
        parent=_p("sources", sourceId="id"),
        paging=Paging.SINGLE,
        decision="accepts pagination but returns no pagination object: read as one page",
    ),
    # --- destinations ------------------------------------------------------------------------
    _S("destinations", "listDestinations", "destinations", ("id",), data_key="destinations"),
    _S("destination_get", "getDestination", "destinations", ("id",), covered_by="destinations", decision=_COVERED),
    _S(
        "destination_filters",
        "listFiltersFromDestination",
        "destinations",
        ("destination_id", "id"),
        data_key="filters",
        parent=_p("destinations", destinationId="id"),
    ),
    _S(
        "destination_filter_get",
        "getFilterInDestination",
        "destinations",
        ("id",),
        covered_by="destination_filters",
        decision=_COVERED,
    ),
    _S(
        "destination_subscriptions",
        "listSubscriptionsFromDestination",
        "destinations",
        ("destination_id", "id"),
        data_key="subscriptions",
        parent=_p("destinations", destinationId="id"),
        decision="only actions destinations have subscriptions: a refusal for one destination is skipped, not fatal",
    ),
    _S(
        "destination_subscription_get",
        "getSubscriptionFromDestination",
        "destinations",
        ("id",),
        covered_by="destination_subscriptions",
        decision=_COVERED,
    ),
    _S(
        "destination_delivery_metrics",
        "listDeliveryMetricsSummaryFromDestination",
        "delivery",
        ("destination_id", "source_id", "window_start", "metric_name"),
        data_key="deliveryMetricsSummary",
        parent=_p("destinations", destinationId="id", sourceId="source_id"),
        paging=Paging.NONE,
        explode="metrics",
        update_method=UpdateMethod.INCREMENTAL,
        column_types={"window_start": _TS, "window_end": _TS},
        windowing=TimeWindowing(
            Partitioning.DAILY, "window_start", window_columns=True, chunk_days=1, granularity="DAY", retention_days=14
        ),
        decision="totals over a window with no time series: one DAY-granularity summary per destination per day",
    ),
    # --- warehouses --------------------------------------------------------------------------
    _S("warehouses", "listWarehouses", "warehouses", ("id",), data_key="warehouses"),
    _S("warehouse_get", "getWarehouse", "warehouses", ("id",), covered_by="warehouses", decision=_COVERED),
    _S(
        "warehouse_connected_sources",
        "listConnectedSourcesFromWarehouse",
        "warehouses",
        ("warehouse_id", "id"),
        data_key="sources",
        parent=_p("warehouses", warehouseId="id"),
    ),
    _S(
        "warehouse_connection_states",
        "getConnectionStateFromWarehouse",
        "warehouses",
        ("warehouse_id",),
        parent=_p("warehouses", warehouseId="id"),
        paging=Paging.NONE,
        decision="200 requests/minute, one per warehouse; no cheaper read: the connection state is on no other "
        "endpoint (listWarehouses items carry enabled and settings, not the state)",
    ),
    _S(
        "warehouse_advanced_sync_schedules",
        "getAdvancedSyncScheduleFromWarehouse",
        "warehouses",
        ("warehouse_id",),
        parent=_p("warehouses", warehouseId="id"),
        paging=Paging.NONE,
        decision="2 requests/minute, one per warehouse; no cheaper read: the schedule is on no other endpoint "
        "(listWarehouses and getWarehouse items carry no schedule)",
    ),
    _S(
        "warehouse_selective_syncs",
        "listSelectiveSyncsFromWarehouseAndSource",
        "warehouses",
        ("warehouse_id", "source_id", "collection"),
        data_key="items",
        parent=_p("warehouse_connected_sources", warehouseId="warehouse_id", sourceId="id"),
        decision="2 requests/minute, one request per (warehouse, connected source), pages of 1000 (the most "
        "allowed); no cheaper read: selective-sync settings exist nowhere else (the profiles-warehouse list is "
        "another warehouse's), have no warehouse-wide list, and carry no timestamp to read incrementally. Items "
        "have no id: keyed by (warehouse, source, collection)",
    ),
    _S(
        "warehouse_syncs",
        "listSyncsFromWarehouse",
        "warehouses",
        ("warehouse_id", "source_id", "start"),
        data_key="reports",
        parent=_p("warehouses", warehouseId="id"),
        column_types={"start": _TS, "end": _TS},
        update_method=UpdateMethod.WATERMARK,
        watermark="start",
        decision=_SYNCS,
    ),
    _S(
        "warehouse_source_syncs",
        "listSyncsFromWarehouseAndSource",
        "warehouses",
        ("warehouse_id", "source_id", "start"),
        covered_by="warehouse_syncs",
        decision="listSyncsFromWarehouse returns the syncs of every source connected to the warehouse, each report "
        "with its sourceId, keyed the same (warehouse, source, start): the per-source list adds no row and "
        "would cost one request per (warehouse, source) at 2/min (12 requests, 6 minutes on the demo)",
    ),
    # --- protocols ---------------------------------------------------------------------------
    _S("tracking_plans", "listTrackingPlans", "protocols", ("id",), data_key="trackingPlans"),
    _S("tracking_plan_get", "getTrackingPlan", "protocols", ("id",), covered_by="tracking_plans", decision=_COVERED),
    _S(
        "tracking_plan_rules",
        "listRulesFromTrackingPlan",
        "protocols",
        ("tracking_plan_id", "type", "key"),
        data_key="rules",
        parent=_p("tracking_plans", trackingPlanId="id"),
        key_defaults={"key": ""},
        decision="200 requests/minute, one list per tracking plan; no cheaper read: rules are on no other endpoint "
        "(listTrackingPlans items carry none); rules have no id: keyed by (tracking plan, type, key); keyless rules "
        "(COMMON, IDENTIFY, GROUP) get key ''",
    ),
    _S(
        "tracking_plan_sources",
        "listSourcesFromTrackingPlan",
        "protocols",
        ("tracking_plan_id", "id"),
        data_key="sources",
        parent=_p("tracking_plans", trackingPlanId="id"),
    ),
    _S("transformations", "listTransformations", "protocols", ("id",), data_key="transformations"),
    _S(
        "transformation_get", "getTransformation", "protocols", ("id",), covered_by="transformations", decision=_COVERED
    ),
    # --- functions ---------------------------------------------------------------------------
    _S(
        "functions",
        "listFunctions",
        "functions",
        ("id",),
        data_key="functions",
        fan_out={
            "resourceType": ("DESTINATION", "INSERT_DESTINATION", "INSERT_SOURCE", "INSERT_TRANSFORMATION", "SOURCE")
        },
        decision="resourceType is required: listed once per type",
    ),
    _S(
        "function_details",
        "getFunction",
        "functions",
        ("id",),
        data_key="function",
        parent=_p("functions", functionId="id", names={"functionId": "function_id"}),
        paging=Paging.NONE,
        decision="the list item lacks code, settings and deployedAt: fetched per function",
    ),
    _S(
        "function_versions",
        "listFunctionVersions",
        "functions",
        ("function_id", "id"),
        data_key="versions",
        parent=_p("functions", functionId="id"),
    ),
    _S(
        "function_version_get",
        "getFunctionVersion",
        "functions",
        ("id",),
        covered_by="function_versions",
        decision=_COVERED,
    ),
    _S(
        "insert_function_instances",
        "listInsertFunctionInstances",
        "functions",
        ("function_id", "id"),
        data_key="instances",
        parent=_p("functions", RowFilter("resource_type", startswith="INSERT_"), functionId="id"),
        decision="functionId is required and only INSERT_* functions have instances",
    ),
    _S(
        "insert_function_instance_get",
        "getInsertFunctionInstance",
        "functions",
        ("id",),
        covered_by="insert_function_instances",
        decision=_COVERED,
    ),
    # --- iam ---------------------------------------------------------------------------------
    _S("users", "listUsers", "iam", ("id",), data_key="users"),
    _S("user_get", "getUser", "iam", ("id",), covered_by="users", decision=_COVERED),
    _S(
        "user_user_groups",
        "listUserGroupsFromUser",
        "iam",
        ("user_id", "id"),
        data_key="groups",
        parent=_p("users", userId="id"),
    ),
    _S("user_groups", "listUserGroups", "iam", ("id",), data_key="userGroups"),
    _S("user_group_get", "getUserGroup", "iam", ("id",), covered_by="user_groups", decision=_COVERED),
    _S(
        "user_group_users",
        "listUsersFromUserGroup",
        "iam",
        ("user_group_id", "id"),
        data_key="users",
        parent=_p("user_groups", userGroupId="id"),
    ),
    _S(
        "user_group_invites",
        "listInvitesFromUserGroup",
        "iam",
        ("user_group_id", "email"),
        data_key="emails",
        scalar_column="email",
        parent=_p("user_groups", userGroupId="id"),
    ),
    _S("roles", "listRoles", "iam", ("id",), data_key="roles"),
    _S(
        "invites",
        "listInvites",
        "iam",
        ("email",),
        data_key="invites",
        scalar_column="email",
        decision="invites are bare email strings: the email is the key",
    ),
    _S(
        "labels",
        "listLabels",
        "workspace",
        ("key", "value"),
        data_key="labels",
        paging=Paging.NONE,
        decision="labels have no id: keyed by (key, value)",
    ),
    # --- deletion and suppression ------------------------------------------------------------
    _S(
        "regulations",
        "listWorkspaceRegulations",
        "deletion_and_suppression",
        ("id",),
        data_key="regulations",
        decision="the API serves the last 90 days only; reload-and-compare records aged-out ones as deletes",
    ),
    _S(
        "regulation_details",
        "getRegulation",
        "deletion_and_suppression",
        ("id",),
        data_key="regulation",
        parent=_p("regulations", regulateId="id", names={"regulateId": "regulate_id"}),
        paging=Paging.NONE,
        decision="the list gives a summary; the detail adds overallStatus and per-stream status",
    ),
    _S(
        "suppressions",
        "listSuppressions",
        "deletion_and_suppression",
        ("subject_type", "subject_id"),
        data_key="suppressed",
        explode="subjectIds",
        scalar_column="subject_id",
        dedupe=True,
        decision="each item is a type with a list of ids: one row per (subjectType, subjectId)",
    ),
    # --- credentials -------------------------------------------------------------------------
    _S("credentials", "listCredentials", "credentials", ("id",), data_key="credentials"),
    _S("credential_get", "getCredential", "credentials", ("id",), covered_by="credentials", decision=_COVERED),
    _S(
        "credential_consumers",
        "listCredentialConsumers",
        "credentials",
        ("credential_id", "record_kind", "id"),
        data_key=("sources", "warehouses"),
        paging=Paging.PER_KEY,
        parent=_p("credentials", credentialId="id"),
        decision="two independently paginated lists: one table, record_kind says 'sources' or 'warehouses'",
    ),
    # --- catalog -----------------------------------------------------------------------------
    _S("catalog_sources", "getSourcesCatalog", "catalog", ("id",), data_key="sourcesCatalog"),
    _S("catalog_source_get", "getSourceMetadata", "catalog", ("id",), covered_by="catalog_sources", decision=_COVERED),
    _S("catalog_destinations", "getDestinationsCatalog", "catalog", ("id",), data_key="destinationsCatalog"),
    _S(
        "catalog_destination_get",
        "getDestinationMetadata",
        "catalog",
        ("id",),
        covered_by="catalog_destinations",
        decision=_COVERED,
    ),
    _S("catalog_warehouses", "getWarehousesCatalog", "catalog", ("id",), data_key="warehousesCatalog"),
    _S(
        "catalog_warehouse_get",
        "getWarehouseMetadata",
        "catalog",
        ("id",),
        covered_by="catalog_warehouses",
        decision=_COVERED,
    ),
    # --- reverse etl -------------------------------------------------------------------------
    _S("reverse_etl_models", "listReverseEtlModels", "reverse_etl", ("id",), data_key="models"),
    _S(
        "reverse_etl_model_get",
        "getReverseEtlModel",
        "reverse_etl",
        ("id",),
        covered_by="reverse_etl_models",
        decision=_COVERED,
    ),
    _S(
        "reverse_etl_sync_statuses",
        "listReverseETLSyncStatusesFromModelAndSubscriptionId",
        "reverse_etl",
        ("sync_id",),
        data_key="syncStatuses",
        paging=Paging.TOP_LEVEL,
        max_page_size=100,
        parent=_p("destination_subscriptions", modelId="model_id", subscriptionId="id"),
        column_types={"started_at": _TS, "finished_at": _TS},
        update_method=UpdateMethod.WATERMARK,
        watermark="startedAt",
        decision="statuses exist per (model, subscription): the subscriptions that carry a modelId; paging stops "
        "below the stored startedAt watermark",
    ),
    _S(
        "reverse_etl_sync_status_get",
        "getReverseETLSyncStatus",
        "reverse_etl",
        ("sync_id",),
        covered_by="reverse_etl_sync_statuses",
        decision=_COVERED,
    ),
    # --- spaces (Engage / Unify) -------------------------------------------------------------
    _S("spaces", "listSpaces", "spaces", ("id",), data_key="spaces"),
    _S("space_get", "getSpace", "spaces", ("id",), covered_by="spaces", decision=_COVERED),
    _S(
        "audiences",
        "listAudiences",
        "spaces",
        ("space_id", "id"),
        data_key="audiences",
        max_page_size=200,
        parent=_p("spaces", spaceId="id"),
        # The list carries each audience's schedules only when asked ("Supports including audience
        # schedules using `?include=schedules`"); without it the `schedules` column stays empty.
        query={"include": "schedules"},
        decision="60 requests/minute, one list per space in pages of 200 (the most it allows), schedules "
        "included; the only list of audiences (getAudience, 100/min, needs their ids)",
    ),
    _S(
        "audience_get",
        "getAudience",
        "spaces",
        ("id",),
        covered_by="audiences",
        decision="listAudiences with include=schedules carries the same fields, schedules included: " + _COVERED,
    ),
    _S(
        "audience_schedules",
        "listAudienceSchedulesFromSpaceAndAudience",
        "spaces",
        ("space_id", "audience_id", "id"),
        data_key="audienceSchedules",
        paging=Paging.NONE,
        parent=_p("audiences", spaceId="space_id", id="id", names={"id": "audience_id"}),
    ),
    _S(
        "audience_schedule_get",
        "getAudienceScheduleFromSpaceAndAudience",
        "spaces",
        ("id",),
        covered_by="audience_schedules",
        decision=_COVERED,
    ),
    _S(
        "audience_consumers",
        "listAudienceConsumersFromSpaceAndAudience",
        "spaces",
        ("space_id", "audience_id", "id"),
        data_key="audiences",
        parent=_p("audiences", spaceId="space_id", id="id", names={"id": "audience_id"}),
        decision="25 requests/minute, one per audience; no cheaper read: which audiences reference an audience is "
        "listed nowhere else (listAudiences items carry no references)",
    ),
    _S(
        "audience_activations",
        "listActivationsFromAudience",
        "spaces",
        ("space_id", "audience_id", "id"),
        data_key="activations",
        parent=_p("audiences", spaceId="space_id", audienceId="id"),
        decision="60 requests/minute, one list per audience; no cheaper read: activations are listed per audience "
        "only (listAudiences items carry none)",
    ),
    _S(
        "audience_activation_get",
        "getActivationFromAudience",
        "spaces",
        ("id",),
        covered_by="audience_activations",
        decision=_COVERED,
    ),
    _S(
        "audience_destination_connections",
        "listDestinationsFromAudience",
        "spaces",
        ("space_id", "audience_id", "id"),
        data_key="connections",
        parent=_p("audiences", spaceId="space_id", audienceId="id"),
        decision="50 requests/minute, one per audience; no cheaper read: an audience's destination connections are "
        "listed nowhere else",
    ),
    _S(
        "audience_supported_destinations",
        "listSupportedDestinationsFromAudience",
        "spaces",
        ("space_id", "audience_type", "destination_key"),
        data_key="destinations",
        map_key_column="destination_key",
        parent=_p("spaces", spaceId="id"),
        fan_out={"audienceType": ("USERS", "ACCOUNTS", "LINKED")},
        decision="60 requests/minute, one per space and audienceType; no cheaper read: the destinations catalog "
        "does not say which destinations an audience type supports. The answer is a map: one row per entry; "
        "audienceType iterated over its three values",
    ),
    _S(
        "computed_traits",
        "listComputedTraits",
        "spaces",
        ("space_id", "id"),
        data_key="computedTraits",
        parent=_p("spaces", spaceId="id"),
        decision="25 requests/minute, one list per space (pages of up to 1000): the list already carries each "
        "trait, so getComputedTrait is never called",
    ),
    _S("computed_trait_get", "getComputedTrait", "spaces", ("id",), covered_by="computed_traits", decision=_COVERED),
    _S(
        "profiles_warehouses",
        "listProfilesWarehouseInSpace",
        "spaces",
        ("space_id", "id"),
        data_key="profilesWarehouses",
        parent=_p("spaces", spaceId="id"),
    ),
    _S(
        "profiles_warehouse_selective_syncs",
        "listSelectiveSyncsFromWarehouseAndSpace",
        "spaces",
        ("space_id", "warehouse_id", "collection"),
        data_key="items",
        data_fields=("enableEventTables",),
        parent=_p("profiles_warehouses", spaceId="space_id", warehouseId="id"),
    ),
    _S(
        "space_filters",
        "listFiltersForSpace",
        "spaces",
        ("id",),
        data_key="filters",
        max_page_size=10,
        parent=_p("spaces", integrationId="id"),
        decision="integrationId is the space id; the cursor is a numeric offset and pages hold at most 10",
    ),
    _S("space_filter_get", "getFilterById", "spaces", ("id",), covered_by="space_filters", decision=_COVERED),
    _S(
        "space_entity_paths",
        "listEntityPaths",
        "space_schema",
        ("space_id", "id"),
        data_key="entityPaths",
        parent=_p("spaces", spaceId="id"),
        decision=_SCHEMA.format(parent="space", what="entity paths"),
    ),
    _S(
        "space_entity_properties",
        "listPropertiesFromEntity",
        "space_schema",
        ("space_id", "entity_slug", "name"),
        data_key="entityProperties",
        parent=_p("space_entity_paths", spaceId="space_id", entitySlug="entity_slug"),
        query=_WITH_SAMPLES,
        decision=_SCHEMA.format(parent="entity", what="entity properties")
        + _LIST_WITH_SAMPLES.format(parent="property", child="space_entity_property_sample_values"),
    ),
    _S(
        "space_entity_property_sample_values",
        "listSampleValuesFromEntityProperty",
        "space_schema",
        ("space_id", "entity_slug", "property_name", "value"),
        data_key="sampleValues",
        scalar_column="value",
        paging=Paging.NONE,
        dedupe=True,
        parent=_p("space_entity_properties", spaceId="space_id", entitySlug="entity_slug", propertyName="name"),
        inline=_INLINE_SAMPLES,
        decision=_SAMPLES.format(parent="entity property"),
    ),
    _S(
        "space_events",
        "listEvents",
        "space_schema",
        ("space_id", "type", "name"),
        data_key="events",
        parent=_p("spaces", spaceId="id"),
        decision=_SCHEMA.format(parent="space", what="events"),
    ),
    _S(
        "space_event_properties",
        "listPropertiesFromEvent",
        "space_schema",
        ("space_id", "event_name", "name"),
        data_key="eventProperties",
        parent=_p("space_events", spaceId="space_id", eventName="name"),
        query=_WITH_SAMPLES,
        decision=_SCHEMA.format(parent="event", what="event properties")
        + _LIST_WITH_SAMPLES.format(parent="property", child="space_event_property_sample_values"),
    ),
    _S(
        "space_event_property_sample_values",
        "listSampleValuesFromEventProperty",
        "space_schema",
        ("space_id", "event_name", "property_name", "property_type", "value"),
        data_key="sampleValues",
        scalar_column="value",
        paging=Paging.NONE,
        dedupe=True,
        parent=_p(
            "space_event_properties",
            spaceId="space_id",
            eventName="event_name",
            propertyName="name",
            propertyType="type",
        ),
        inline=_INLINE_SAMPLES,
        decision=_SAMPLES.format(parent="event property")
        + "; propertyType is required: taken from the property's type",
    ),
    _S(
        "space_traits",
        "listTraits",
        "space_schema",
        ("space_id", "trait"),
        data_key="traits",
        dedupe=True,
        parent=_p("spaces", spaceId="id"),
        query=_WITH_SAMPLES,
        decision=_SCHEMA.format(parent="space", what="traits")
        + "; listTraits may repeat entries across pages (documented): deduplicated on (space, trait)"
        + _LIST_WITH_SAMPLES.format(parent="trait", child="space_trait_sample_values"),
    ),
    _S(
        "space_trait_sample_values",
        "listSampleValuesFromTrait",
        "space_schema",
        ("space_id", "trait_key", "value"),
        data_key="sampleValues",
        scalar_column="value",
        paging=Paging.NONE,
        dedupe=True,
        parent=_p("space_traits", spaceId="space_id", traitKey="trait"),
        inline=_INLINE_SAMPLES,
        decision=_SAMPLES.format(parent="trait"),
    ),
    # --- time-based: partitioned, incremental ------------------------------------------------
    _S(
        "audit_events",
        "listAuditEvents",
        "audit",
        ("id",),
        data_key="events",
        update_method=UpdateMethod.INCREMENTAL,
        column_types={"timestamp": _TS},
        windowing=TimeWindowing(Partitioning.DAILY, "timestamp", retention_days=90),
    ),
    _S(
        "events_volume",
        "getEventsVolumeFromWorkspace",
        "events",
        ("time", "source_id", "event_name", "event_type"),
        data_key="result",
        explode="series",
        derived={"source_id": "source.id"},
        query={"groupBy": ("eventName", "eventType", "source")},
        key_defaults={"source_id": "", "event_name": "", "event_type": ""},
        update_method=UpdateMethod.INCREMENTAL,
        column_types={"time": _TS},
        windowing=TimeWindowing(Partitioning.DAILY, "time", granularity="HOUR", retention_days=30),
        decision="60 requests/minute, one request (and its pages) per partition window: no other endpoint reports "
        "event volume, and grouping by eventName, eventType and source answers in one request what per-source "
        "requests would spread over many. HOUR granularity; one row per series bucket",
    ),
    _S(
        "usage_api_calls_daily",
        "getDailyWorkspaceAPICallsUsage",
        "usage",
        ("timestamp",),
        data_key="dailyWorkspaceAPICallsUsage",
        update_method=UpdateMethod.INCREMENTAL,
        column_types=_USAGE_TYPES,
        windowing=_USAGE,
    ),
    _S(
        "usage_api_calls_per_source_daily",
        "getDailyPerSourceAPICallsUsage",
        "usage",
        ("source_id", "timestamp"),
        data_key="dailyPerSourceAPICallsUsage",
        update_method=UpdateMethod.INCREMENTAL,
        column_types=_USAGE_TYPES,
        windowing=_USAGE,
    ),
    _S(
        "usage_mtu_daily",
        "getDailyWorkspaceMTUUsage",
        "usage",
        ("timestamp",),
        data_key="dailyWorkspaceMTUUsage",
        update_method=UpdateMethod.INCREMENTAL,
        column_types=_USAGE_TYPES,
        windowing=_USAGE,
    ),
    _S(
        "usage_mtu_per_source_daily",
        "getDailyPerSourceMTUUsage",
        "usage",
        ("source_id", "timestamp"),
        data_key="dailyPerSourceMTUUsage",
        update_method=UpdateMethod.INCREMENTAL,
        column_types=_USAGE_TYPES,
        windowing=_USAGE,
    ),
    *(
        _S(
            f"delivery_{name}",
            op,
            "delivery",
            (*keys, "time"),
            data_key="dataset",
            explode="series",
            parent=parent,
            update_method=UpdateMethod.INCREMENTAL,
            column_types={"time": _TS},
            windowing=_DAY,
            decision="ungrouped HOUR series per source (x destination); within the 30-day lookback",
        )
        for name, op, keys, parent in (
            (
                "successfully_received",
                "getIngressSuccessMetricsFromDeliveryOverview",
                ("source_id",),
                _p("sources", sourceId="id"),
            ),
            (
                "failed_on_ingest",
                "getIngressFailedMetricsFromDeliveryOverview",
                ("source_id",),
                _p("sources", sourceId="id"),
            ),
            (
                "filtered_at_source",
                "getFilteredAtSourceMetricsFromDeliveryOverview",
                ("source_id",),
                _p("sources", sourceId="id"),
            ),
            (
                "filtered_at_destination",
                "getFilteredAtDestinationMetricsFromDeliveryOverview",
                ("source_id", "destination_config_id"),
                _p("source_connected_destinations", sourceId="source_id", destinationConfigId="id"),
            ),
            (
                "failed_delivery",
                "getEgressFailedMetricsFromDeliveryOverview",
                ("source_id", "destination_config_id"),
                _p("source_connected_destinations", sourceId="source_id", destinationConfigId="id"),
            ),
            (
                "successful_delivery",
                "getEgressSuccessMetricsFromDeliveryOverview",
                ("source_id", "destination_config_id"),
                _p("source_connected_destinations", sourceId="source_id", destinationConfigId="id"),
            ),
        )
    ),
)

# Operations deliberately not replicated, with the reason; the coverage test holds the
# declarations plus this list equal to every GET in the OpenAPI document.
EXCLUDED: Mapping[str, str] = MappingProxyType(
    {
        "echo": "a test endpoint that returns what it is sent",
        "getAudiencePreview": "its id only comes from POST createAudiencePreview; nothing lists previews",
    }
)

STREAMS: Mapping[str, StreamSpec] = MappingProxyType({s.name: s for s in _DECLARATIONS})


def materialized_streams() -> list[StreamSpec]:
    return [s for s in STREAMS.values() if s.materialized]


def descendants_of(name: str, *, transitive: bool = True) -> list[StreamSpec]:
    """The materialized streams whose ids come from rows of `name`: its children and, when
    `transitive`, theirs, in declaration order (parents first)."""
    found: dict[str, StreamSpec] = {}
    for stream in STREAMS.values():  # declarations list parents before children
        above = stream.parent.stream if stream.parent else None
        if stream.materialized and (above == name or (transitive and above in found)):
            found[stream.name] = stream
    return list(found.values())
