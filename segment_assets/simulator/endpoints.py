"""What each GET operation serves, as a table over the workspace's kinds.

Most operations are one line: ``listing(kind, parent=...)`` or ``getting(kind, id_param)``.
The handful that compute their answer (links between kinds, time series, per-object
settings) are small named functions below the table. Paging is not done here: a list
handler returns a ``Listing`` of all matching items and the server slices it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from . import metrics
from .errors import ApiError, invalid, not_found
from .generator import digest, iso, mix, parse_time, rng_for
from .spec import load_spec
from .workspace import Row, Workspace


@dataclass
class Listing:
    items: Any  # list, or an object with __len__ and slice(a, b)
    extra: dict[str, Any] = field(default_factory=dict)  # other `data` fields (echoes, totals)
    state: str | None = None  # carried inside cursors (audit-events endTime)


Handler = Callable[[Workspace, dict[str, str], dict[str, Any]], "Listing | dict[str, Any]"]


def as_list(value: Any) -> list[str]:
    """Array query params arrive as repeats, `name.0=`, `name[]=` or comma lists."""
    if value is None or value == "":
        return []
    if isinstance(value, dict):
        return [str(v) for _, v in sorted(value.items(), key=lambda kv: int(kv[0]) if str(kv[0]).isdigit() else 0)]
    if isinstance(value, list):
        out: list[str] = []
        for v in value:
            out.extend(as_list(v))
        return out
    return [v for v in str(value).split(",") if v]


def _param(path: dict[str, str], query: dict[str, Any], name: str) -> str:
    value = path.get(name, query.get(name))
    if value is None or isinstance(value, (dict, list)):
        raise invalid(f'"{name}" is required', name)
    return value


def projector(schema: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    keys = tuple(load_spec().schemas[schema]["properties"])
    return lambda obj: {k: obj[k] for k in keys if k in obj}


def _parent_key(
    ws: Workspace, kind: str, path: dict[str, str], query: dict[str, Any], params: tuple[str, ...]
) -> tuple[str, ...]:
    """The parent key from path/query params, after checking every ancestor exists."""
    pkey = tuple(_param(path, query, p) for p in params)
    spec = ws.kind(kind)
    for depth in range(len(pkey), 0, -1):
        parent_kind = ws.kind(spec.parent)  # type: ignore[arg-type]
        if ws.get_row(parent_kind.name, pkey[depth - 1], pkey[: depth - 1]) is None:
            raise not_found(parent_kind.name.replace("_", " ").rstrip("s").title())
        spec = parent_kind
    return pkey


def listing(
    kind: str,
    parent: tuple[str, ...] = (),
    *,
    where: dict[str, str] | None = None,
    project: Callable[[dict[str, Any]], Any] | None = None,
    search: str | None = None,
    sort: dict[str, str] | None = None,
    default_sort: tuple[str, str] | None = None,
    requires: tuple[str, str] | None = None,
) -> Handler:
    """All rows of ``kind`` under the parent named by ``parent`` params, optionally filtered
    on ``where`` (item field -> param), searched, sorted and projected."""

    def handle(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> Listing:
        if requires:
            if ws.get_row(requires[0], _param(path, query, requires[1])) is None:
                raise not_found(requires[0].rstrip("s").title())
        with ws.lock:
            rows: Sequence[Row] = (
                ws.children(kind, None, _parent_key(ws, kind, path, query, parent)) if parent else ws.rows(kind)
            )
            objs = [r.obj for r in rows]
        if where:
            for fld, param in where.items():
                value = _param(path, query, param)
                objs = [o for o in objs if o.get(fld) == value]
        if search and query.get("search"):
            needle = str(query["search"]).lower()
            objs = [o for o in objs if needle in str(o.get(search, "")).lower()]
        if sort is not None and default_sort is not None:
            by = query.get("sortBy") or default_sort[0]
            direction = query.get("sortDir") or default_sort[1]
            objs = sorted(objs, key=lambda o: str(o.get(sort.get(by, by), "")), reverse=direction == "desc")
        return Listing([project(o) for o in objs] if project else objs)

    return handle


def getting(
    kind: str,
    id_param: str,
    parent: tuple[str, ...] = (),
    *,
    match: dict[str, str] | None = None,
    project: Callable[[dict[str, Any]], Any] | None = None,
    key: str | None = None,
) -> Handler:
    """One row by id (scoped by ``parent`` params, or checked with ``match`` field -> param)."""
    data_key = key

    def handle(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> dict[str, Any]:
        ident = _param(path, query, id_param)
        if parent:
            row = ws.get_row(kind, ident, _parent_key(ws, kind, path, query, parent))
        else:
            row = ws.get_row(kind, ident)
        if row is None or any(row.obj.get(f) != _param(path, query, p) for f, p in (match or {}).items()):
            raise not_found(kind.replace("_", " ").rstrip("s").title())
        return {data_key: project(row.obj) if project else row.obj}  # type: ignore[dict-item]

    return handle


def linked(
    link_kind: str,
    parent: tuple[str, ...],
    target: str,
    fld: str,
    project: Callable[[dict[str, Any]], Any] | None = None,
) -> Handler:
    """Target rows named by link rows (e.g. a tracking plan's sources)."""

    def handle(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> Listing:
        with ws.lock:
            links = ws.children(link_kind, None, _parent_key(ws, link_kind, path, query, parent))
            rows = [ws.get_row(target, link.obj[fld]) for link in links]
        objs = [r.obj for r in rows if r is not None]
        return Listing([project(o) for o in objs] if project else objs)

    return handle


def linked_back(
    link_kind: str,
    fld: str,
    param: str,
    owner: str,
    requires: str,
    project: Callable[[dict[str, Any]], Any] | None = None,
) -> Handler:
    """Owner rows of the link rows that point at ``param`` (e.g. the groups of a user)."""

    def handle(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> Listing:
        ident = _param(path, query, param)
        with ws.lock:
            if ws.get_row(requires, ident) is None:
                raise not_found(requires.rstrip("s").title())
            owners = [
                ws.get_row(owner, link.pkey[-1], link.pkey[:-1])
                for link in ws.rows(link_kind)
                if link.obj.get(fld) == ident
            ]
        objs = [r.obj for r in owners if r is not None]
        return Listing([project(o) for o in objs] if project else objs)

    return handle


# ---- computed endpoints ----------------------------------------------------------------------


def _workspace(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> dict[str, Any]:
    return {"workspace": ws.workspace}


def _echo(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> dict[str, Any]:
    if query.get("triggerError") in ("true", "1"):
        raise ApiError(int(query.get("statusCode") or 400), "Echo error triggered")
    return {"method": "get", "message": _param(path, query, "message"), "headers": {}}


def _audit_events(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> Listing:
    # The cursor freezes endTime, as the real API does, so new events don't shift pages.
    state = query.get("__cursor_state")
    try:
        start = parse_time(query["startTime"]) if query.get("startTime") else None
        if query.get("endTime"):
            end = parse_time(query["endTime"])
        elif state:
            end = parse_time(state)
        else:
            end = ws.audit.latest() + timedelta(milliseconds=1)
    except ValueError:
        raise invalid("startTime and endTime must be ISO-8601 timestamps", "startTime") from None
    rtype = query.get("resourceType")
    view = ws.audit.query(start, end, query.get("resourceId") or None, _singular(rtype) if rtype else None)
    return Listing(view, state=iso(end))


def _singular(resource_type: str) -> str:
    """The docs' examples say "Sources", "Tracking Plans"; events say "Source"."""
    known = {k.lower(): k for k in Workspace.AUDIT_RESOURCE_TYPES}
    low = resource_type.lower()
    if low in known:
        return known[low]
    return known.get(low[:-1], resource_type) if low.endswith("s") else resource_type


def _get_source(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> dict[str, Any]:
    with ws.lock:
        row = ws.get_row("sources", path["sourceId"])
        if row is None:
            raise not_found("Source")
        plan = next((link.pkey[-1] for link in ws.rows("tracking_plan_sources") if link.ident == row.ident), None)
    return {"source": row.obj, "trackingPlanId": plan}


def _require(ws: Workspace, kind: str, ident: str) -> Row:
    row = ws.get_row(kind, ident)
    if row is None:
        raise not_found(kind.replace("_", " ").rstrip("s").title())
    return row


def _connected_warehouses(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> Listing:
    source = _require(ws, "sources", path["sourceId"])
    with ws.lock:
        ids = [link.pkey[0] for link in ws.rows("warehouse_connections") if link.ident == source.ident]
        rows = [ws.get_row("warehouses", i) for i in ids]
    return Listing([r.obj for r in rows if r is not None])


def _schema_settings(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> dict[str, Any]:
    source = _require(ws, "sources", path["sourceId"])
    rng = rng_for(ws.seed, "schema-settings", source.ident)
    settings = {
        "track": {
            "allowUnplannedEvents": rng.random() < 0.7,
            "allowUnplannedEventProperties": True,
            "allowEventOnViolations": True,
            "allowPropertiesOnViolations": True,
            "commonEventOnViolations": rng.choice(("ALLOW", "BLOCK", "OMIT_PROPERTIES")),
        },
        "identify": {
            "allowUnplannedTraits": True,
            "allowTraitsOnViolations": True,
            "commonEventOnViolations": rng.choice(("ALLOW", "BLOCK", "OMIT_TRAITS")),
        },
        "group": {
            "allowUnplannedTraits": True,
            "allowTraitsOnViolations": rng.random() < 0.5,
            "commonEventOnViolations": "ALLOW",
        },
        "forwardingViolationsTo": "",
        "forwardingBlockedEventsTo": "",
    }
    return {"sourceId": source.ident, "settings": settings}


def _live_plugin(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> dict[str, Any]:
    source = _require(ws, "sources", path["sourceId"])
    plugins = ws.children("live_plugins", source)
    if not plugins:
        raise not_found("Live Plugin")
    return {"livePlugin": max(plugins, key=lambda r: r.obj["version"]).obj}


def _regulation(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> dict[str, Any]:
    row = _require(ws, "regulations", path["regulateId"])
    entry = row.obj
    source_id = row.pkey[0] if row.pkey else ""
    destinations = [d.obj for d in ws.rows("destinations") if d.obj["sourceId"] == source_id]
    regulation = {
        "id": entry["id"],
        "workspaceId": ws.workspace_id,
        "overallStatus": entry["status"],
        "createdAt": entry["createdAt"],
        "streamStatus": [
            {
                "id": row.pkey[0] if row.pkey else entry["id"],
                "destinationStatus": [
                    {
                        "name": d.get("name", ""),
                        "id": d["id"],
                        "status": entry["status"],
                        "errString": "",
                        "finishedAt": entry.get("finishedAt", ""),
                    }
                    for d in destinations
                ],
            }
        ],
    }
    if "finishedAt" in entry:
        regulation["finishedAt"] = entry["finishedAt"]
    return {"regulation": regulation}


def _regulations(parent: tuple[str, ...]) -> Handler:
    base = listing("regulations", parent)

    def handle(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> Listing:
        result = base(ws, path, query)
        assert isinstance(result, Listing)
        items = result.items
        if query.get("status"):
            items = [o for o in items if o["status"] == query["status"]]
        types = set(as_list(query.get("regulationTypes")))
        if types:
            items = [o for o in items if o["regulationType"] in types]
        return Listing(items)

    return handle


def _user_groups(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> Listing:
    return Listing([_with_member_count(ws, r) for r in ws.rows("user_groups")])


def _with_member_count(ws: Workspace, row: Row) -> dict[str, Any]:
    return {**row.obj, "memberCount": len(ws.children("group_memberships", row))}


def _user_group(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> dict[str, Any]:
    return {"userGroup": _with_member_count(ws, _require(ws, "user_groups", path["userGroupId"]))}


def _credential_consumers(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> Listing:
    sources = linked("credential_sources", ("credentialId",), "sources", "sourceId")(ws, path, query)
    warehouses = linked("credential_warehouses", ("credentialId",), "warehouses", "warehouseId")(ws, path, query)
    return Listing({"sources": sources.items, "warehouses": warehouses.items})


def _audiences(one: bool) -> Handler:
    def handle(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> Any:
        include = query.get("include") == "schedules"
        pkey = _parent_key(ws, "audiences", path, query, ("spaceId",))

        def out(row: Row) -> dict[str, Any]:
            if not include:
                return row.obj
            return {**row.obj, "schedules": [s.obj for s in ws.children("audience_schedules", row)]}

        if one:
            row = ws.get_row("audiences", path["id"], pkey)
            if row is None:
                raise not_found("Audience")
            return {"audience": out(row)}
        rows = ws.children("audiences", None, pkey)
        search = query.get("search") if isinstance(query.get("search"), dict) else None
        if search and search.get("query"):
            fld = {"NAME": "name", "KEY": "key", "DEFINITION": "definition"}.get(
                str(search.get("type")).upper(), "name"
            )
            needle = str(search["query"]).lower()
            rows = [r for r in rows if needle in str(r.obj.get(fld, "")).lower()]
        return Listing([out(r) for r in rows])

    return handle


_audience_summary = projector("AudienceSummary")


def _audience_consumers(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> Listing:
    pkey = _parent_key(ws, "audience_consumers", path, query, ("spaceId", "id"))
    with ws.lock:
        rows = [ws.get_row("audiences", link.ident, pkey[:1]) for link in ws.children("audience_consumers", None, pkey)]
    items = []
    for r in rows:
        if r is None:
            continue
        summary = _audience_summary(r.obj)
        if "options" in summary:
            summary["options"] = {
                k: v
                for k, v in summary["options"].items()
                if k in ("includeHistoricalData", "filterByExternalIds", "backfillEventDataDays")
            }
        items.append(summary)
    return Listing(items)


def _supported_destinations(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> Listing:
    _require(ws, "spaces", path["spaceId"])
    if path["audienceType"] not in ("USERS", "ACCOUNTS", "LINKED"):
        raise invalid("audienceType must be USERS, ACCOUNTS or LINKED", "audienceType")
    catalog = ws.rows("destination_metadata")
    n = 1 + digest(ws.seed, path["audienceType"]) % 5
    chosen = [r.obj for k, r in enumerate(catalog) if (k + n) % 4 == 0]
    if query.get("slug"):
        chosen = [m for m in chosen if m["slug"] == query["slug"]]
    items = [
        {"id": m["id"], "name": m["name"], "slug": m["slug"], "audienceType": path["audienceType"]} for m in chosen
    ]
    return Listing(items)


def _selective_syncs_space(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> Listing:
    result = listing("space_selective_syncs", ("spaceId", "warehouseId"))(ws, path, query)
    result.extra["enableEventTables"] = digest(ws.seed, path["warehouseId"]) % 2 == 0  # type: ignore[union-attr]
    return result  # type: ignore[return-value]


def _with_samples(base: Handler, *path_names: str) -> Handler:
    """listPropertiesFromEvent/Entity and listTraits: with includeSampleValues=true each item gets
    `samples`, the first `samplesCount` (1-100, default 20) of what its sample-value endpoint serves;
    without it the field is absent, as the spec says."""

    def handle(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> Listing:
        n = _samples_count(query.get("samplesCount"))
        result = base(ws, path, query)
        if str(query.get("includeSampleValues", "")).lower() != "true":
            return result  # type: ignore[return-value]
        name_key = "trait" if "trait" in path_names else "name"
        prefix = [path[p] for p in path_names if p != "trait"]
        items = [{**o, "samples": ws.sample_values(*prefix, o[name_key])[:n]} for o in result.items]  # type: ignore[union-attr]
        return Listing(items)

    return handle


def _samples_count(raw: Any) -> int:
    if raw is None or raw == "":
        return 20
    try:
        n = float(raw)
    except (TypeError, ValueError):
        n = 0.0
    if not (1 <= n <= 100) or n != int(n):
        raise invalid(f"samplesCount must be a whole number from 1 to 100, got {raw!r}", "samplesCount")
    return int(n)


def _sample_values(kind: str, params: tuple[str, ...], name_param: str) -> Handler:
    def handle(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> Listing:
        pkey = _parent_key(ws, kind, path, query, params)
        if ws.get_row(kind, path[name_param], pkey) is None:
            raise not_found("Property")
        if kind == "event_properties":
            wanted = query.get("propertyType")
            if wanted not in ("PROPERTY", "CONTEXT"):
                raise invalid("propertyType must be PROPERTY or CONTEXT", "propertyType")
        return Listing(ws.sample_values(*pkey, path[name_param]))

    return handle


def _warehouse_syncs(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> Listing:
    warehouse = _require(ws, "warehouses", path["warehouseId"])
    rows = ws.children_under("warehouse_syncs", (warehouse.ident,))
    return Listing(sorted((r.obj for r in rows), key=lambda o: o["start"], reverse=True))


def _connected_sources(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> Listing:
    return linked("warehouse_connections", ("warehouseId",), "sources", "sourceId")(ws, path, query)  # type: ignore[return-value]


def _advanced_schedule(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> dict[str, Any]:
    warehouse = _require(ws, "warehouses", path["warehouseId"])
    h = digest(ws.seed, "advanced-sync", warehouse.ident)
    enabled = h % 3 != 0
    return {
        "enabled": enabled,
        "schedule": {
            "timezone": ("UTC", "America/Los_Angeles", "Europe/Berlin")[h % 3],
            "times": [{"hourOfDay": hour, "enabled": enabled and mix(h, hour) % 4 != 0} for hour in range(24)],
        },
    }


def _connection_state(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> dict[str, Any]:
    warehouse = _require(ws, "warehouses", path["warehouseId"])
    return {"connectionState": "CONNECTED" if warehouse.obj.get("enabled", True) else "FAILED"}


def _retl_syncs(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> Listing:
    _require(ws, "reverse_etl_models", path["modelId"])
    sub = ws.get_row("destination_subscriptions", path["subscriptionId"])
    if sub is None or sub.obj.get("modelId") != path["modelId"]:
        raise not_found("Subscription")
    return Listing([r.obj for r in ws.children("reverse_etl_syncs", sub)])


def _events_volume(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> Listing:
    result, extra = metrics.events_volume(ws, query, as_list)
    return Listing(result, extra)


def _delivery(metric: str, destination_side: bool) -> Handler:
    def handle(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> Listing:
        source = _require(ws, "sources", _param(path, query, "sourceId"))
        destination = None
        if destination_side:
            destination = _require(ws, "destinations", _param(path, query, "destinationConfigId")).obj
        dataset, extra = metrics.delivery_overview(
            ws, metric, {**query, "sourceId": source.ident}, as_list, destination
        )
        return Listing(dataset, extra)

    return handle


def _delivery_summary(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> dict[str, Any]:
    destination = _require(ws, "destinations", path["destinationId"])
    _require(ws, "sources", _param(path, query, "sourceId"))
    return {"deliveryMetricsSummary": metrics.delivery_metrics_summary(ws, destination.obj, query)}


def _usage(what: str, per_source: bool) -> Handler:
    def handle(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> Listing:
        return Listing(metrics.usage(ws, what, per_source, query))

    return handle


def _audience_preview(ws: Workspace, path: dict[str, str], query: dict[str, Any]) -> dict[str, Any]:
    raise not_found("Audience preview")  # previews only exist after a POST, which the simulator lacks


_email = lambda o: o["email"]  # noqa: E731
_minimal_user = projector("MinimalUserV1")
_minimal_group = projector("MinimalUserGroupV1")
_function_item = projector("ListFunctionItemV1")
_event_sort = {"lastSeenAt": "lastSeenAt", "name": "name"}

ENDPOINTS: dict[str, Handler] = {
    "getWorkspace": _workspace,
    "echo": _echo,
    "listAuditEvents": _audit_events,
    # catalog
    "getSourcesCatalog": listing("source_metadata"),
    "getSourceMetadata": getting("source_metadata", "sourceMetadataId", key="sourceMetadata"),
    "getDestinationsCatalog": listing("destination_metadata"),
    "getDestinationMetadata": getting("destination_metadata", "destinationMetadataId", key="destinationMetadata"),
    "getWarehousesCatalog": listing("warehouse_metadata"),
    "getWarehouseMetadata": getting("warehouse_metadata", "warehouseMetadataId", key="warehouseMetadata"),
    # sources
    "listSources": listing("sources"),
    "getSource": _get_source,
    "listConnectedDestinationsFromSource": listing(
        "destinations", where={"sourceId": "sourceId"}, requires=("sources", "sourceId")
    ),
    "listConnectedWarehousesFromSource": _connected_warehouses,
    "listSchemaSettingsInSource": _schema_settings,
    "getLatestFromLivePlugins": _live_plugin,
    # destinations
    "listDestinations": listing("destinations"),
    "getDestination": getting("destinations", "destinationId", key="destination"),
    "listFiltersFromDestination": listing("destination_filters", ("destinationId",)),
    "getFilterInDestination": getting("destination_filters", "filterId", ("destinationId",), key="filter"),
    "listSubscriptionsFromDestination": listing("destination_subscriptions", ("destinationId",)),
    "getSubscriptionFromDestination": getting(
        "destination_subscriptions", "id", ("destinationId",), key="subscription"
    ),
    "listDeliveryMetricsSummaryFromDestination": _delivery_summary,
    # warehouses
    "listWarehouses": listing("warehouses"),
    "getWarehouse": getting("warehouses", "warehouseId", key="warehouse"),
    "listConnectedSourcesFromWarehouse": _connected_sources,
    "listSyncsFromWarehouse": _warehouse_syncs,
    "listSyncsFromWarehouseAndSource": listing("warehouse_syncs", ("warehouseId", "sourceId")),
    "listSelectiveSyncsFromWarehouseAndSource": listing("warehouse_selective_syncs", ("warehouseId", "sourceId")),
    "getAdvancedSyncScheduleFromWarehouse": _advanced_schedule,
    "getConnectionStateFromWarehouse": _connection_state,
    # protocols
    "listTrackingPlans": listing("tracking_plans"),
    "getTrackingPlan": getting("tracking_plans", "trackingPlanId", key="trackingPlan"),
    "listRulesFromTrackingPlan": listing("rules", ("trackingPlanId",)),
    "listSourcesFromTrackingPlan": linked("tracking_plan_sources", ("trackingPlanId",), "sources", "sourceId"),
    "listTransformations": listing("transformations"),
    "getTransformation": getting("transformations", "transformationId", key="transformation"),
    # IAM
    "listUsers": listing("users"),
    "getUser": getting("users", "userId", key="user"),
    "listUserGroupsFromUser": linked_back(
        "group_memberships", "userId", "userId", "user_groups", "users", _minimal_group
    ),
    "listInvites": listing("invites", project=_email),
    "listUserGroups": _user_groups,
    "getUserGroup": _user_group,
    "listUsersFromUserGroup": linked("group_memberships", ("userGroupId",), "users", "userId", _minimal_user),
    "listInvitesFromUserGroup": listing("group_invites", ("userGroupId",), project=_email),
    "listRoles": listing("roles"),
    "listLabels": listing("labels"),
    # functions
    "listFunctions": listing("functions", where={"resourceType": "resourceType"}, project=_function_item),
    "getFunction": getting("functions", "functionId", key="function"),
    "listFunctionVersions": listing("function_versions", ("functionId",)),
    "getFunctionVersion": getting("function_versions", "versionId", ("functionId",), key="version"),
    "listInsertFunctionInstances": listing("insert_function_instances", ("functionId",)),
    "getInsertFunctionInstance": getting("insert_function_instances", "instanceId", key="insertFunctionInstance"),
    # credentials
    "listCredentials": listing("credentials"),
    "getCredential": getting("credentials", "credentialId", key="credential"),
    "listCredentialConsumers": _credential_consumers,
    # deletion and suppression
    "listWorkspaceRegulations": _regulations(()),
    "listRegulationsFromSource": _regulations(("sourceId",)),
    "getRegulation": _regulation,
    "listSuppressions": listing("suppressions"),
    # reverse ETL
    "listReverseEtlModels": listing("reverse_etl_models"),
    "getReverseEtlModel": getting("reverse_etl_models", "modelId", key="reverseEtlModel"),
    "listReverseETLSyncStatusesFromModelAndSubscriptionId": _retl_syncs,
    "getReverseETLSyncStatus": getting(
        "reverse_etl_syncs", "syncId", match={"modelId": "modelId"}, key="reverseETLSyncStatus"
    ),
    # spaces, audiences, activations
    "listSpaces": listing("spaces"),
    "getSpace": getting("spaces", "spaceId", key="space"),
    "listAudiences": _audiences(one=False),
    "getAudience": _audiences(one=True),
    "getAudiencePreview": _audience_preview,
    "listAudienceSchedulesFromSpaceAndAudience": listing("audience_schedules", ("spaceId", "id")),
    "getAudienceScheduleFromSpaceAndAudience": getting(
        "audience_schedules", "scheduleId", ("spaceId", "id"), key="audienceSchedule"
    ),
    "listAudienceConsumersFromSpaceAndAudience": _audience_consumers,
    "listActivationsFromAudience": listing("activations", ("spaceId", "audienceId")),
    "getActivationFromAudience": getting("activations", "id", ("spaceId", "audienceId"), key="activation"),
    "listDestinationsFromAudience": listing("audience_connections", ("spaceId", "audienceId")),
    "listSupportedDestinationsFromAudience": _supported_destinations,
    "listComputedTraits": listing("computed_traits", ("spaceId",)),
    "getComputedTrait": getting("computed_traits", "id", ("spaceId",), key="computedTrait"),
    "listProfilesWarehouseInSpace": listing("profiles_warehouses", ("spaceId",)),
    "listSelectiveSyncsFromWarehouseAndSpace": _selective_syncs_space,
    "listFiltersForSpace": listing("space_filters", ("integrationId",)),
    "getFilterById": getting("space_filters", "id", key="filter"),
    # space schema
    "listEvents": listing(
        "space_events", ("spaceId",), search="name", sort=_event_sort, default_sort=("lastSeenAt", "desc")
    ),
    "listPropertiesFromEvent": _with_samples(
        listing(
            "event_properties",
            ("spaceId", "eventName"),
            search="name",
            sort=_event_sort,
            default_sort=("lastSeenAt", "desc"),
        ),
        "spaceId",
        "eventName",
    ),
    "listSampleValuesFromEventProperty": _sample_values("event_properties", ("spaceId", "eventName"), "propertyName"),
    "listTraits": _with_samples(
        listing(
            "traits",
            ("spaceId",),
            search="trait",
            sort={"lastSeenAt": "lastSeenAt", "trait": "trait"},
            default_sort=("trait", "asc"),
        ),
        "spaceId",
        "trait",
    ),
    "listSampleValuesFromTrait": _sample_values("traits", ("spaceId",), "traitKey"),
    "listEntityPaths": listing("entity_paths", ("spaceId",), search="entityName"),
    "listPropertiesFromEntity": _with_samples(
        listing("entity_properties", ("spaceId", "entitySlug")), "spaceId", "entitySlug"
    ),
    "listSampleValuesFromEntityProperty": _sample_values(
        "entity_properties", ("spaceId", "entitySlug"), "propertyName"
    ),
    # time series and usage
    "getEventsVolumeFromWorkspace": _events_volume,
    "getIngressSuccessMetricsFromDeliveryOverview": _delivery("successfully-received", False),
    "getIngressFailedMetricsFromDeliveryOverview": _delivery("failed-on-ingest", False),
    "getFilteredAtSourceMetricsFromDeliveryOverview": _delivery("filtered-at-source", False),
    "getFilteredAtDestinationMetricsFromDeliveryOverview": _delivery("filtered-at-destination", True),
    "getEgressFailedMetricsFromDeliveryOverview": _delivery("failed-delivery", True),
    "getEgressSuccessMetricsFromDeliveryOverview": _delivery("successful-delivery", True),
    "getDailyWorkspaceAPICallsUsage": _usage("api", False),
    "getDailyPerSourceAPICallsUsage": _usage("api", True),
    "getDailyWorkspaceMTUUsage": _usage("mtu", False),
    "getDailyPerSourceMTUUsage": _usage("mtu", True),
}


# ---- example requests ------------------------------------------------------------------------

# Path segment before a "{param}" -> the kind whose id fills it; a kind whose parent was
# picked just before is taken among that parent's children.
SEGMENT_KINDS: dict[str, tuple[str, ...]] = {
    "spaces": ("spaces",),
    "audiences": ("audiences",),
    "activations": ("activations",),
    "schedules": ("audience_schedules",),
    "computed-traits": ("computed_traits",),
    "entities": ("entity_paths",),
    "events": ("space_events",),
    "traits": ("traits",),
    "properties": ("event_properties", "entity_properties"),
    "profiles-warehouses": ("profiles_warehouses",),
    "sources": ("sources",),
    "connected-sources": ("warehouse_connections",),
    "warehouses": ("warehouses",),
    "destinations": ("destinations",),
    "destination": ("destinations",),
    "filters": ("space_filters", "destination_filters"),
    "subscriptions": ("destination_subscriptions",),
    "tracking-plans": ("tracking_plans",),
    "transformations": ("transformations",),
    "functions": ("functions",),
    "versions": ("function_versions",),
    "insert-function-instances": ("insert_function_instances",),
    "groups": ("user_groups",),
    "users": ("users",),
    "credentials": ("credentials",),
    "regulations": ("regulations",),
    "reverse-etl-models": ("reverse_etl_models",),
    "subscriptionId": ("destination_subscriptions",),
    "syncs": ("reverse_etl_syncs",),
}
CATALOG_KINDS = {
    "sourceMetadataId": "source_metadata",
    "destinationMetadataId": "destination_metadata",
    "warehouseMetadataId": "warehouse_metadata",
}


def example_request(ws: Workspace, operation_id: str) -> tuple[dict[str, str], dict[str, Any]]:
    """Valid path params and required query params for an operation, chosen so that list
    endpoints return at least one item at scale 1."""
    op = load_spec().operations[operation_id]
    path: dict[str, str] = {}
    context: Row | None = None
    model: Row | None = None
    segments = op.path.strip("/").split("/")
    for before, segment in zip([""] + segments, segments):
        if not segment.startswith("{"):
            continue
        name = segment[1:-1]
        if name in CATALOG_KINDS:
            row = ws.rows(CATALOG_KINDS[name])[0]
        elif name == "audienceType":
            path[name] = "USERS"
            continue
        elif name == "regulateId":
            row = ws.rows("regulations")[0]
        else:
            row = _example_row(ws, SEGMENT_KINDS[before], context, model)
        if before == "reverse-etl-models":
            model = row
        path[name] = row.ident
        context = row
    return path, _example_query(ws, op, path, context)


def _example_row(ws: Workspace, kinds: tuple[str, ...], context: Row | None, model: Row | None) -> Row:
    for kind in kinds:
        spec = ws.kind(kind)
        if model is not None and kind in ("destination_subscriptions", "reverse_etl_syncs"):
            rows = [r for r in ws.rows(kind) if r.obj.get("modelId") == model.ident]
        elif context is not None and spec.parent and spec.parent == context.kind:
            rows = ws.children(kind, context)
        elif context is not None and spec.parent:
            continue
        else:
            rows = ws.rows(kind)
        if kind == "functions":
            rows = [r for r in rows if ws.children("function_versions", r)]
        if rows:
            return rows[0]
    raise LookupError(f"no example row for {kinds}")


def _example_query(ws: Workspace, op: Any, path: dict[str, str], context: Row | None) -> dict[str, Any]:
    query: dict[str, Any] = {}
    hour = ws.anchor.replace(minute=0, second=0, microsecond=0)
    source = ws.rows("sources")[0]
    for name in op.required_query:
        if name == "period":
            query[name] = ws.anchor.date().replace(day=1).isoformat()
        elif name == "resourceType":
            query[name] = "SOURCE"
        elif name == "functionId":
            query[name] = next(
                r.ident
                for r in ws.rows("functions")
                if r.obj["resourceType"].startswith("INSERT_") and ws.children("insert_function_instances", r)
            )
        elif name == "integrationId":
            query[name] = ws.rows("spaces")[0].ident
        elif name == "sourceId":
            query[name] = path.get("sourceId") or (
                ws.get_row("destinations", path["destinationId"]).obj["sourceId"]  # type: ignore[union-attr]
                if "destinationId" in path
                else source.ident
            )
        elif name == "destinationConfigId":
            query[name] = next(r.ident for r in ws.rows("destinations") if r.obj["sourceId"] == source.ident)
        elif name == "granularity":
            query[name] = "HOUR"
        elif name == "startTime":
            query[name] = iso(hour - timedelta(hours=3))
        elif name == "endTime":
            query[name] = iso(hour)
        elif name == "propertyType":
            query[name] = context.obj["type"] if context else "PROPERTY"
        elif name == "message":
            query[name] = "hello"
    return query
