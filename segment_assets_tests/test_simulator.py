"""The simulator over real HTTP with plain httpx: spec conformance, paging, errors, faults,
determinism and mutations."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import jsonschema
import orjson
import pytest

from segment_assets.simulator import Simulator
from segment_assets.simulator.spec import load_spec
from segment_assets_tests.services import free_port, popen, stop

NOW = datetime(2024, 6, 15, 12, 30, tzinfo=UTC)
SPEC = load_spec()
OPERATIONS = sorted(SPEC.operations)
SERVED = [op for op in OPERATIONS if op != "getAudiencePreview"]  # previews exist only after a POST
PAGINATED = [op for op in SERVED if SPEC.operations[op].pagination_output and op != "listCredentialConsumers"]


def _jsonschema(node: Any) -> Any:
    """OpenAPI 3.0 -> JSON Schema: `nullable: true` becomes a null alternative."""
    if isinstance(node, list):
        return [_jsonschema(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _jsonschema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable"):
        if "type" in out and "$ref" not in out:
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


COMPONENTS = {"components": {"schemas": _jsonschema(SPEC.schemas)}}


def validator(operation_id: str) -> jsonschema.Draft202012Validator:
    op = SPEC.operations[operation_id]
    content = SPEC.document["paths"][op.path]["get"]["responses"]["200"]["content"]
    return jsonschema.Draft202012Validator({**COMPONENTS, "$ref": next(iter(content.values()))["schema"]["$ref"]})


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    with Simulator(seed=7, now=NOW) as s:
        yield s


@pytest.fixture(scope="module")
def http(simulator: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=simulator.url, headers={"Authorization": f"Bearer {simulator.token}"}, timeout=10
    ) as client:
        yield client


def get(
    http: httpx.Client,
    sim: Simulator,
    operation_id: str,
    path: dict[str, str] | None = None,
    query: dict[str, Any] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    return http.get(sim.path(operation_id, path), params=query, **kwargs)


def page_through(
    http: httpx.Client,
    sim: Simulator,
    operation_id: str,
    path: dict[str, str],
    query: dict[str, Any],
    count: int,
    key: str | None = None,
) -> tuple[list[Any], int]:
    """All items by following `next`; returns (items, pages)."""
    op = SPEC.operations[operation_id]
    key = key or op.list_key
    items: list[Any] = []
    cursor: Any = None
    pages = 0
    while True:
        params = dict(query)
        if operation_id == "listReverseETLSyncStatusesFromModelAndSubscriptionId":
            params["count"] = count
            if cursor is not None:
                params["cursor"] = cursor
        else:
            params["pagination[count]"] = count
            if cursor is not None:
                params["pagination[cursor]"] = cursor
        response = get(http, sim, operation_id, path, params)
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        page = data[key]
        items.extend(page.values() if isinstance(page, dict) else page)
        pages += 1
        assert pages < 10_000
        cursor = data["pagination"].get("next")
        if cursor is None:
            return items, pages


# ---- spec conformance ------------------------------------------------------------------------


@pytest.mark.parametrize("operation_id", SERVED)
def test_every_operation_serves_a_valid_body(simulator: Simulator, http: httpx.Client, operation_id: str) -> None:
    path, query = simulator.example_request(operation_id)
    response = get(http, simulator, operation_id, path, query)
    assert response.status_code == 200, response.text
    op = SPEC.operations[operation_id]
    assert response.headers["content-type"] == op.media_type
    body = response.json()
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator(operation_id).iter_errors(body)]
    assert not errors, errors[:5]
    if op.list_key:
        assert len(body["data"][op.list_key]) >= 1, f"{operation_id} serves no items at scale 1"
    for header in ("X-RateLimit-Consumed", "X-RateLimit-Remaining"):
        assert int(response.headers[header]) >= 0
    assert parsedate_to_datetime(response.headers["X-RateLimit-Reset"]).tzinfo is not None


def test_audience_preview_is_not_found(simulator: Simulator, http: httpx.Client) -> None:
    space = simulator.workspace.list("spaces")[0]["id"]
    response = get(http, simulator, "getAudiencePreview", {"spaceId": space, "id": "prv_x"})
    assert response.status_code == 404
    assert response.json()["errors"][0]["type"]


def test_ids_are_consistent_across_parents_and_children(simulator: Simulator) -> None:
    sources = {s["id"] for s in simulator.items("listSources")}
    warehouses = {w["id"] for w in simulator.items("listWarehouses")}
    destinations = simulator.items("listDestinations")
    assert destinations and all(d["sourceId"] in sources for d in destinations)
    for source in sources:
        connected = simulator.items("listConnectedDestinationsFromSource", {"sourceId": source})
        assert connected == [d for d in destinations if d["sourceId"] == source]
    pairs_by_warehouse = {
        (w, s["id"])
        for w in warehouses
        for s in simulator.items("listConnectedSourcesFromWarehouse", {"warehouseId": w})
    }
    pairs_by_source = {
        (w["id"], s) for s in sources for w in simulator.items("listConnectedWarehousesFromSource", {"sourceId": s})
    }
    assert pairs_by_warehouse == pairs_by_source and pairs_by_source
    catalog = {m["id"] for m in simulator.items("getDestinationsCatalog")}
    assert all(d["metadata"]["id"] in catalog for d in destinations)
    source_catalog = {m["id"] for m in simulator.items("getSourcesCatalog")}
    assert all(s["metadata"]["id"] in source_catalog for s in simulator.items("listSources"))
    for model in simulator.items("listReverseEtlModels"):
        subs = [
            s
            for d in destinations
            for s in simulator.items("listSubscriptionsFromDestination", {"destinationId": d["id"]})
            if s.get("modelId") == model["id"]
        ]
        assert subs
        statuses = simulator.items(
            "listReverseETLSyncStatusesFromModelAndSubscriptionId",
            {"modelId": model["id"], "subscriptionId": subs[0]["id"]},
        )
        assert statuses and {s["modelId"] for s in statuses} == {model["id"]}
    user = simulator.items("listUsers")[0]["id"]
    for group in simulator.items("listUserGroupsFromUser", {"userId": user}):
        members = simulator.items("listUsersFromUserGroup", {"userGroupId": group["id"]})
        assert user in {m["id"] for m in members}
    for group in simulator.items("listUserGroups"):
        assert group["memberCount"] == len(simulator.items("listUsersFromUserGroup", {"userGroupId": group["id"]}))


# ---- pagination ------------------------------------------------------------------------------


@pytest.mark.parametrize("operation_id", PAGINATED)
def test_paging_yields_exactly_the_items(simulator: Simulator, http: httpx.Client, operation_id: str) -> None:
    path, query = simulator.example_request(operation_id)
    expected = simulator.items(operation_id, path, query)
    count = max(1, math.ceil(len(expected) / 4))
    if operation_id == "listFiltersForSpace":
        count = min(count, 10)
    items, pages = page_through(http, simulator, operation_id, path, query, count)
    assert items == expected
    assert pages == max(1, math.ceil(len(expected) / count))
    if operation_id not in ("listSupportedDestinationsFromAudience",):
        assert len({orjson.dumps(i, option=orjson.OPT_SORT_KEYS) for i in items}) == len(
            items
        ) or operation_id.startswith("get")  # time-series buckets may legitimately repeat values


def test_credential_consumers_have_two_independent_cursors(simulator: Simulator, http: httpx.Client) -> None:
    credential = simulator.items("listCredentials")[0]["id"]
    expected = simulator.items("listCredentialConsumers", {"credentialId": credential})
    collected: dict[str, list[Any]] = {"sources": [], "warehouses": []}
    cursors: dict[str, str | None] = {"sources": None, "warehouses": None}
    done: set[str] = set()
    pages = 0
    while len(done) < 2:
        params: dict[str, Any] = {}
        for key in collected:
            params[f"{key}Pagination[count]"] = 1
            if cursors[key]:
                params[f"{key}Pagination[cursor]"] = cursors[key]
        data = get(http, simulator, "listCredentialConsumers", {"credentialId": credential}, params).json()["data"]
        pages += 1
        for key in collected:
            if key in done:
                continue  # a finished side is re-served from its start; a client ignores it
            collected[key] += data[key]
            cursors[key] = data[f"{key}Pagination"].get("next")
            if not cursors[key]:
                done.add(key)
    sources, warehouses = collected["sources"], collected["warehouses"]
    assert sources and warehouses and pages == max(len(sources), len(warehouses))
    assert sources + warehouses == expected


def test_pagination_output_shape(simulator: Simulator, http: httpx.Client) -> None:
    first = get(http, simulator, "listAuditEvents", query={"pagination[count]": 10}).json()["data"]["pagination"]
    assert "previous" not in first and first["next"] and first["current"] and first["totalEntries"] == 3000
    second = get(
        http, simulator, "listAuditEvents", query={"pagination[count]": 10, "pagination[cursor]": first["next"]}
    ).json()["data"]["pagination"]
    assert second["previous"] == first["current"]
    last = get(http, simulator, "listSources", query={"pagination[count]": 1000}).json()["data"]["pagination"]
    assert last["next"] is None


def test_dot_notation_and_default_count(simulator: Simulator, http: httpx.Client) -> None:
    dotted = get(http, simulator, "listAuditEvents", query={"pagination.count": 3}).json()["data"]
    assert len(dotted["events"]) == 3
    default = get(http, simulator, "listAuditEvents").json()["data"]
    assert len(default["events"]) == 200


@pytest.mark.parametrize(
    ("operation_id", "bad"),
    [
        ("listSources", {"pagination[count]": 0}),
        ("listSources", {"pagination[count]": 1001}),
        ("listSources", {"pagination[count]": "ten"}),
        ("listSources", {"pagination[count]": 5, "pagination[cursor]": "%%%"}),
        ("listAudiences", {"pagination[count]": 201}),
        ("listFiltersForSpace", {"pagination[count]": 11}),
        ("listReverseETLSyncStatusesFromModelAndSubscriptionId", {"count": 101}),
    ],
)
def test_count_out_of_range_is_422(
    simulator: Simulator, http: httpx.Client, operation_id: str, bad: dict[str, Any]
) -> None:
    path, query = simulator.example_request(operation_id)
    response = get(http, simulator, operation_id, path, {**query, **bad})
    assert response.status_code == 422
    assert response.json()["errors"][0]["message"]


def test_documented_pagination_exceptions(simulator: Simulator, http: httpx.Client) -> None:
    # unpaginated lists carry no pagination object
    for op in ("listLabels", "listAudienceSchedulesFromSpaceAndAudience", "listSampleValuesFromTrait"):
        path, query = simulator.example_request(op)
        assert "pagination" not in get(http, simulator, op, path, query).json()["data"]
    # listRegulationsFromSource accepts pagination but serves everything, unpaginated
    path, query = simulator.example_request("listRegulationsFromSource")
    data = get(http, simulator, "listRegulationsFromSource", path, {"pagination[count]": 1}).json()["data"]
    assert "pagination" not in data and data["regulations"] == simulator.items("listRegulationsFromSource", path)
    assert len(data["regulations"]) > 1
    # reverse-ETL sync statuses: top-level count (default 10)
    path, query = simulator.example_request("listReverseETLSyncStatusesFromModelAndSubscriptionId")
    data = get(http, simulator, "listReverseETLSyncStatusesFromModelAndSubscriptionId", path).json()["data"]
    assert len(data["syncStatuses"]) == 10 and data["pagination"]["next"]
    # listFiltersForSpace: numeric offset cursors
    space = simulator.items("listSpaces")[0]["id"]
    data = get(http, simulator, "listFiltersForSpace", query={"integrationId": space, "pagination[count]": 1}).json()
    assert data["data"]["pagination"]["current"] == 0 and data["data"]["pagination"]["next"] == 1
    # listTraits is forward-only: no `previous`
    path, _ = simulator.example_request("listTraits")
    first = get(http, simulator, "listTraits", path, {"pagination[count]": 1}).json()["data"]["pagination"]
    second = get(
        http, simulator, "listTraits", path, {"pagination[count]": 1, "pagination[cursor]": first["next"]}
    ).json()["data"]["pagination"]
    assert "previous" not in second
    # listSupportedDestinationsFromAudience pages a map
    path, _ = simulator.example_request("listSupportedDestinationsFromAudience")
    data = get(http, simulator, "listSupportedDestinationsFromAudience", path).json()["data"]
    assert isinstance(data["destinations"], dict) and data["destinations"]


def test_audit_cursor_freezes_end_time() -> None:
    with Simulator(seed=7, now=NOW) as sim, httpx.Client(base_url=sim.url) as http:
        auth = {"Authorization": f"Bearer {sim.token}"}
        first = http.get("/audit-events", params={"pagination[count]": 5}, headers=auth).json()["data"]
        sim.workspace.create("sources", name="Late arrival")
        second = http.get(
            "/audit-events",
            params={"pagination[count]": 5, "pagination[cursor]": first["pagination"]["next"]},
            headers=auth,
        ).json()["data"]
        ids = [e["id"] for e in first["events"] + second["events"]]
        assert ids == [
            e["id"] for e in sim.items("listAuditEvents", query={"endTime": "2024-06-15T12:30:00.001Z"})[:10]
        ]


# ---- errors ----------------------------------------------------------------------------------


def test_auth(simulator: Simulator) -> None:
    with httpx.Client(base_url=simulator.url) as anonymous:
        missing = anonymous.get("/sources")
        wrong = anonymous.get("/sources", headers={"Authorization": "Bearer nope"})
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.json()["errors"][0]["type"]


def test_unknown_path_is_404(http: httpx.Client) -> None:
    response = http.get("/no/such/thing")
    assert response.status_code == 404 and "errors" in response.json()


def test_unknown_parent_is_404(simulator: Simulator, http: httpx.Client) -> None:
    assert get(http, simulator, "listRulesFromTrackingPlan", {"trackingPlanId": "tp_missing"}).status_code == 404
    assert get(http, simulator, "getSource", {"sourceId": "missing"}).status_code == 404


def test_disabled_features_are_403() -> None:
    with Simulator(seed=7, now=NOW, disabled_features=("Protocols", "Audit Trail")) as sim:
        auth = {"Authorization": f"Bearer {sim.token}"}
        assert httpx.get(f"{sim.url}/tracking-plans", headers=auth).status_code == 403
        assert httpx.get(f"{sim.url}/audit-events", headers=auth).status_code == 403
        assert httpx.get(f"{sim.url}/sources", headers=auth).status_code == 200


@pytest.mark.parametrize("operation_id", [op for op in SERVED if SPEC.operations[op].required_query])
def test_missing_required_param_is_422(simulator: Simulator, http: httpx.Client, operation_id: str) -> None:
    path, query = simulator.example_request(operation_id)
    for name in SPEC.operations[operation_id].required_query:
        response = get(http, simulator, operation_id, path, {k: v for k, v in query.items() if k != name})
        assert response.status_code == 422, name
        assert response.json()["errors"][0]["field"] == name


def test_rate_limits_answer_429_with_ms_before_next() -> None:
    with (
        Simulator(seed=7, now=NOW, rate_limits={"listSources": 3, "*": 100}) as sim,
        httpx.Client(base_url=sim.url, headers={"Authorization": f"Bearer {sim.token}"}) as http,
    ):
        statuses = [http.get("/sources") for _ in range(4)]
        assert [r.status_code for r in statuses] == [200, 200, 200, 429]
        assert [int(r.headers["X-RateLimit-Remaining"]) for r in statuses[:3]] == [2, 1, 0]
        error = statuses[3].json()["errors"][0]
        assert error["type"] == "RequestError" and error["message"] == "Too many requests"
        assert error["data"]["remainingPoints"] == 0 and 0 < error["data"]["msBeforeNext"] <= 20_000
        assert http.get("/warehouses").status_code == 200  # per-operation bucket
        assert sim.stats.rate_limited == 1


def test_realistic_rate_limits() -> None:
    sim = Simulator(seed=7, now=NOW, rate_limits="realistic")
    assert sim.limiter.limits["getEventsVolumeFromWorkspace"] == 60
    assert sim.limiter.limits["listSyncsFromWarehouse"] == 2
    assert sim.limiter.limits["*"] > 0


# ---- faults ----------------------------------------------------------------------------------


def test_status_faults(simulator: Simulator, http: httpx.Client) -> None:
    for kind in ("500", "502", "503", "401", "403"):
        simulator.inject(kind, "listWarehouses")
        assert http.get("/warehouses").status_code == int(kind)
    simulator.inject("429", "listWarehouses", ms_before_next=123)
    response = http.get("/warehouses")
    assert response.status_code == 429 and response.json()["errors"][0]["data"]["msBeforeNext"] == 123
    assert http.get("/warehouses").status_code == 200


def test_fault_targets_operation_and_times(simulator: Simulator, http: httpx.Client) -> None:
    simulator.inject("503", "listUsers", times=2)
    assert http.get("/warehouses").status_code == 200
    assert [http.get("/users").status_code for _ in range(3)] == [503, 503, 200]
    simulator.inject("500")  # any operation
    assert http.get("/roles").status_code == 500


def test_wire_faults(simulator: Simulator, http: httpx.Client) -> None:
    simulator.inject("malformed", "listWarehouses")
    response = http.get("/warehouses")
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()
    simulator.inject("truncated", "listWarehouses")
    response = http.get("/warehouses")
    assert response.status_code == 200
    with pytest.raises(ValueError):
        orjson.loads(response.content)
    simulator.inject("reset", "listWarehouses")
    with pytest.raises(httpx.TransportError):
        http.get("/warehouses")
    simulator.inject("timeout", "listWarehouses", seconds=0.5)
    with pytest.raises(httpx.ReadTimeout):
        http.get("/warehouses", timeout=0.1)
    assert http.get("/warehouses").status_code == 200


def test_body_faults(simulator: Simulator, http: httpx.Client) -> None:
    simulator.inject("repeat_cursor", "listDestinations")
    pagination = http.get("/destinations", params={"pagination[count]": 2}).json()["data"]["pagination"]
    assert pagination["next"] == pagination["current"]
    simulator.inject("missing_field", "listWarehouses", field="id")
    assert all("id" not in w for w in http.get("/warehouses").json()["data"]["warehouses"])
    simulator.inject("type_change", "listWarehouses", field="enabled")
    assert all(isinstance(w["enabled"], str) for w in http.get("/warehouses").json()["data"]["warehouses"])
    simulator.inject("missing_field", "listSources")  # default: the first required field
    assert all("id" not in s for s in http.get("/sources").json()["data"]["sources"])
    assert all("id" in w for w in http.get("/warehouses").json()["data"]["warehouses"])


def test_random_faults_are_seeded() -> None:
    def statuses() -> list[int]:
        with (
            Simulator(seed=11, now=NOW, faults="500:0.3,429:0.2") as sim,
            httpx.Client(base_url=sim.url, headers={"Authorization": f"Bearer {sim.token}"}) as http,
        ):
            return [http.get("/labels").status_code for _ in range(40)]

    first = statuses()
    assert first == statuses()
    assert {200, 429, 500} <= set(first)


def test_latency() -> None:
    with Simulator(seed=7, now=NOW, latency_ms=50) as sim:
        started = time.perf_counter()
        httpx.get(f"{sim.url}/", headers={"Authorization": f"Bearer {sim.token}"})
        assert time.perf_counter() - started >= 0.05


# ---- media types and stats -------------------------------------------------------------------


def test_accept_header_is_recorded_and_honoured(simulator: Simulator, http: httpx.Client) -> None:
    simulator.reset_stats()
    beta = "application/vnd.segment.v1beta+json"
    response = http.get("/sources", headers={"Accept": beta})
    assert response.headers["content-type"] == beta
    alpha_only = get(http, simulator, "listSpaces")
    assert alpha_only.headers["content-type"] == "application/vnd.segment.v1alpha+json"
    stats = simulator.stats
    assert stats.last_accept["listSources"] == beta
    assert stats.by_operation["listSources"] == 1 and stats.by_status[200] == 2 and stats.total == 2


# ---- determinism, time windows, mutations -----------------------------------------------------


def test_same_seed_serves_identical_bodies() -> None:
    bodies = []
    for seed in (5, 5, 6):
        with (
            Simulator(seed=seed, now=NOW) as sim,
            httpx.Client(base_url=sim.url, headers={"Authorization": f"Bearer {sim.token}"}) as http,
        ):
            out = []
            for op in SERVED:
                path, query = sim.example_request(op)
                if "startTime" in SPEC.operations[op].parameters and "startTime" not in query:
                    # Without a window the answer is the last hour before the simulator's clock,
                    # which moves: two servers started a minute apart would differ for that reason.
                    query |= {
                        "startTime": f"{NOW - timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}",
                        "endTime": f"{NOW:%Y-%m-%dT%H:%M:%SZ}",
                    }
                out.append(http.get(sim.path(op, path), params=query).content)
            bodies.append(out)
    assert bodies[0] == bodies[1]
    assert bodies[0] != bodies[2]


# Operations whose answer is time-based data read by partition or window: they stay relative
# to the clock. Every other served operation is configuration (or a day-stable history).
TIME_BASED = {
    "listAuditEvents",
    "getEventsVolumeFromWorkspace",
    "listDeliveryMetricsSummaryFromDestination",
    "getDailyWorkspaceAPICallsUsage",
    "getDailyPerSourceAPICallsUsage",
    "getDailyWorkspaceMTUUsage",
    "getDailyPerSourceMTUUsage",
} | {op for op in OPERATIONS if op.endswith("FromDeliveryOverview")}
CONFIGURATION = [op for op in SERVED if op not in TIME_BASED]


def configuration_bodies(sim: Simulator) -> dict[str, list[bytes]]:
    """Every page body of every configuration operation (at its example params) over HTTP,
    following `next` cursors with the largest page size each operation accepts."""
    out: dict[str, list[bytes]] = {}
    with httpx.Client(base_url=sim.url, headers={"Authorization": f"Bearer {sim.token}"}, timeout=10) as http:
        for op in CONFIGURATION:
            path, query = sim.example_request(op)
            spec = SPEC.operations[op]
            bodies: list[bytes] = []
            cursor: Any = None
            while True:
                params = dict(query)
                if op == "listReverseETLSyncStatusesFromModelAndSubscriptionId":
                    params["count"] = 100
                    if cursor is not None:
                        params["cursor"] = cursor
                elif op == "listCredentialConsumers":
                    params.update({"sourcesPagination[count]": 1000, "warehousesPagination[count]": 1000})
                elif spec.pagination_input:
                    params["pagination[count]"] = {
                        "ListFiltersPaginationInput": 10,
                        "ListAudiencesPaginationInput": 200,
                    }.get(spec.pagination_input, 1000)
                    if cursor is not None:
                        params["pagination[cursor]"] = cursor
                response = http.get(sim.path(op, path), params=params)
                assert response.status_code == 200, (op, response.text)
                bodies.append(response.content)
                pagination = response.json()["data"].get("pagination")
                cursor = pagination.get("next") if isinstance(pagination, dict) and spec.pagination_output else None
                if cursor is None or op == "listCredentialConsumers":
                    break
                assert len(bodies) < 1000
            out[op] = bodies
    return out


def every_row(sim: Simulator) -> dict[str, list[dict[str, Any]]]:
    """Every row of every kind, including the children of parents the example params miss."""
    return {kind: sim.workspace.list(kind) for kind in sim.workspace.kinds() if kind != "audit_events"}


def test_configuration_is_identical_on_every_start_of_a_day() -> None:
    """Two starts with clocks 21 hours apart on one UTC day: every configuration body is
    byte-identical, while audit events move with the clock."""
    early = datetime(2025, 3, 9, 1, 5, 7, tzinfo=UTC)
    late = datetime(2025, 3, 9, 22, 41, 3, tzinfo=UTC)
    with Simulator(seed=7, now=early) as first:
        first_bodies, first_rows = configuration_bodies(first), every_row(first)
        first_events = first.items("listAuditEvents")
    with Simulator(seed=7, now=late) as second:
        second_bodies, second_rows = configuration_bodies(second), every_row(second)
        second_events = second.items("listAuditEvents")
    assert set(first_bodies) == set(CONFIGURATION) and len(CONFIGURATION) > 80
    differing = [op for op in CONFIGURATION if first_bodies[op] != second_bodies[op]]
    assert not differing
    assert [kind for kind in first_rows if first_rows[kind] != second_rows[kind]] == []
    assert sum(len(rows) for rows in first_rows.values()) > 900
    # Audit events: the same events, each exactly as much later as the clock.
    shift = late - early
    assert [e["id"] for e in first_events] == [e["id"] for e in second_events] and len(first_events) == 3000
    for a, b in zip(first_events[:50], second_events[:50]):
        assert datetime.fromisoformat(b["timestamp"]) - datetime.fromisoformat(a["timestamp"]) == shift
    for events, now in ((first_events, early), (second_events, late)):
        newest = datetime.fromisoformat(events[0]["timestamp"])
        assert now - timedelta(hours=1) < newest <= now
        assert datetime.fromisoformat(events[-1]["timestamp"]) >= now - timedelta(days=90)


def test_configuration_is_identical_after_a_real_pause() -> None:
    """Two starts on the wall clock, a second apart (what two `segment-assets demo` runs do)."""
    with Simulator(seed=7, scale=0.5) as first:
        first_bodies = configuration_bodies(first)
        first_newest = first.items("listAuditEvents", query={"pagination[count]": 1})[0]
    time.sleep(1.1)
    with Simulator(seed=7, scale=0.5) as second:
        if second.workspace.today != first.workspace.today:
            pytest.skip("midnight UTC passed between the two starts: day-stable histories moved on")
        second_bodies = configuration_bodies(second)
        second_newest = second.items("listAuditEvents", query={"pagination[count]": 1})[0]
    assert [op for op in CONFIGURATION if first_bodies[op] != second_bodies[op]] == []
    assert first_newest["id"] == second_newest["id"]
    assert datetime.fromisoformat(second_newest["timestamp"]) - datetime.fromisoformat(
        first_newest["timestamp"]
    ) >= timedelta(seconds=1)


def test_a_later_day_extends_histories_without_rewriting_them() -> None:
    """Watermarked histories (warehouse syncs, reverse-ETL statuses) add rows on a later day;
    the rows both days serve are identical, so a watermark sync sees only the new ones.
    Regulations stay inside the API's 90-day window."""
    day1 = Simulator(seed=7, now=datetime(2025, 3, 9, 12, tzinfo=UTC)).workspace
    day2 = Simulator(seed=7, now=datetime(2025, 3, 10, 12, tzinfo=UTC)).workspace
    for kind, when in (("warehouse_syncs", "start"), ("reverse_etl_syncs", "startedAt")):
        added_total = 0
        parents = {r.pkey for r in day1.rows(kind)}
        assert parents == {r.pkey for r in day2.rows(kind)} and len(parents) > 3
        for pkey in parents:
            old, new = (
                {
                    orjson.dumps(r.obj, option=orjson.OPT_SORT_KEYS): r.obj[when]
                    for r in day.rows(kind)
                    if r.pkey == pkey
                }
                for day in (day1, day2)
            )
            kept = old.keys() & new.keys()
            added, gone = new.keys() - old.keys(), old.keys() - new.keys()
            assert kept, pkey
            assert all(new[k] > max(old.values()) for k in added)  # only newer rows appear...
            assert all(old[k] < min(new[k2] for k2 in kept) for k in gone)  # ...and the oldest slide out
            added_total += len(added)
        assert added_total >= len(parents) * 2  # at least a day's slots per parent
        assert max(r[when] for r in day2.list(kind)) < "2025-03-10T00:00:00"  # nothing after the start of the day
    for rows, now in ((day1.list("regulations"), day1.anchor), (day2.list("regulations"), day2.anchor)):
        assert rows and all(now - timedelta(days=90) <= datetime.fromisoformat(r["createdAt"]) <= now for r in rows)
        assert len({r["id"] for r in rows}) == len(rows)
    assert len({r["syncId"] for r in day2.list("reverse_etl_syncs")}) == len(day2.list("reverse_etl_syncs"))


def test_audit_window_is_the_union_of_its_days(simulator: Simulator) -> None:
    days = [NOW.replace(hour=0, minute=0) - timedelta(days=d) for d in range(3, 0, -1)]
    whole = simulator.items(
        "listAuditEvents",
        query={"startTime": days[0].isoformat(), "endTime": (days[-1] + timedelta(days=1)).isoformat()},
    )
    parts: list[dict[str, Any]] = []
    for day in reversed(days):
        parts += simulator.items(
            "listAuditEvents", query={"startTime": day.isoformat(), "endTime": (day + timedelta(days=1)).isoformat()}
        )
    assert whole == parts and whole
    assert all(days[0].isoformat()[:10] <= e["timestamp"][:10] <= days[-1].isoformat()[:10] for e in whole)


def test_time_series_are_consistent_across_granularities(simulator: Simulator) -> None:
    start = NOW.replace(hour=0, minute=0) - timedelta(days=2)
    window = {"startTime": start.isoformat(), "endTime": (start + timedelta(days=2)).isoformat(), "groupBy": ["source"]}
    daily = simulator.items("getEventsVolumeFromWorkspace", query={**window, "granularity": "DAY"})
    hourly = simulator.items("getEventsVolumeFromWorkspace", query={**window, "granularity": "HOUR"})
    assert [d["total"] for d in daily] == [h["total"] for h in hourly]
    assert all(len(h["series"]) == 48 for h in hourly)
    first_day = simulator.items(
        "getEventsVolumeFromWorkspace",
        query={**window, "granularity": "DAY", "endTime": (start + timedelta(days=1)).isoformat()},
    )
    assert [d["series"][0] for d in daily] == [d["series"][0] for d in first_day]
    source = simulator.items("listSources")[0]["id"]
    overview = {
        "sourceId": source,
        "granularity": "HOUR",
        "startTime": (NOW - timedelta(hours=6)).isoformat(),
        "endTime": NOW.replace(minute=0).isoformat(),
    }
    assert simulator.items("getIngressSuccessMetricsFromDeliveryOverview", query=overview) == simulator.items(
        "getIngressSuccessMetricsFromDeliveryOverview", query=overview
    )
    usage = simulator.items("getDailyWorkspaceAPICallsUsage", query={"period": "2024-06-01"})
    assert len(usage) == 15 and [int(u["apiCalls"]) for u in usage] == sorted(int(u["apiCalls"]) for u in usage)


def test_mutations_show_up_in_lists_and_audit_events() -> None:
    with (
        Simulator(seed=7, now=NOW) as sim,
        httpx.Client(base_url=sim.url, headers={"Authorization": f"Bearer {sim.token}"}) as http,
    ):
        created = sim.workspace.create("sources", name="Fresh Source")
        listed = http.get("/sources", params={"pagination[count]": 1000}).json()["data"]["sources"]
        assert created in listed
        sim.workspace.update("sources", created["id"], name="Renamed Source")
        assert http.get(f"/sources/{created['id']}").json()["data"]["source"]["name"] == "Renamed Source"
        plan = sim.workspace.list("tracking_plans")[0]["id"]
        sim.workspace.create("rules", trackingPlanId=plan, type="TRACK", key="Brand New Event")
        rules = sim.items("listRulesFromTrackingPlan", {"trackingPlanId": plan})
        assert any(r["key"] == "Brand New Event" for r in rules)
        sim.workspace.delete("sources", created["id"])
        assert http.get(f"/sources/{created['id']}").status_code == 404
        events = http.get("/audit-events", params={"pagination[count]": 4}).json()["data"]["events"]
        assert [e["type"] for e in events] == [
            "Source Deleted",
            "Tracking Plan Modified",
            "Source Modified",
            "Source Created",
        ]
        assert events[0]["resourceId"] == created["id"] and events[0]["resourceType"] == "Source"
        assert sim.workspace.AUDIT_RESOURCE_TYPES["Source"] == "sources"
        added = sim.workspace.add_audit_events(3)
        assert [e["id"] for e in sim.items("listAuditEvents")[:3]] == [e["id"] for e in reversed(added)]


def test_large_collections_start_instantly() -> None:
    started = time.perf_counter()
    with Simulator(seed=7, now=NOW, counts={"audit_events": 2_000_000}) as sim:
        response = httpx.get(
            f"{sim.url}/audit-events",
            params={"pagination[count]": 1000},
            headers={"Authorization": f"Bearer {sim.token}"},
        )
        assert response.json()["data"]["pagination"]["totalEntries"] == 2_000_000
        assert len(response.json()["data"]["events"]) == 1000
    assert time.perf_counter() - started < 3


def test_counts_and_scale() -> None:
    assert len(Simulator(seed=7, counts={"sources": 42}).items("listSources")) == 42
    assert len(Simulator(seed=7, scale=3).items("listUsers")) == 60


# ---- command line ----------------------------------------------------------------------------


@pytest.mark.e2e
def test_command_line_serves(tmp_path: Any) -> None:

    port = free_port()
    proc = popen(
        [
            sys.executable,
            "-m",
            "segment_assets.simulator",
            "--port",
            str(port),
            "--seed",
            "3",
            "--count",
            "sources=4",
            "--token",
            "t1",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert f"http://127.0.0.1:{port}" in line and "t1" not in line
        sources = httpx.get(f"http://127.0.0.1:{port}/sources", headers={"Authorization": "Bearer t1"})
        assert len(sources.json()["data"]["sources"]) == 4
    finally:
        stop(proc)


@pytest.mark.e2e
def test_a_started_simulator_stops_on_sigterm_when_the_test_process_ignores_it() -> None:
    """SIGTERM ignored here (as Dagster's `materialize` leaves it under a background shell) is
    not inherited: the simulator gets SIGTERM's default action and dies of it."""
    import signal

    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        port = free_port()
        proc = popen(
            [sys.executable, "-m", "segment_assets.simulator", "--port", str(port)],
            stdout=subprocess.PIPE,
            text=True,
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    try:
        assert f"http://127.0.0.1:{port}" in proc.stdout.readline()  # type: ignore[union-attr]
        with open(f"/proc/{proc.pid}/status") as status:
            ignored = int(next(line for line in status if line.startswith("SigIgn:")).split()[1], 16)
        assert not ignored & (1 << (signal.SIGTERM - 1)), "the simulator inherited SIGTERM as ignored"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == -signal.SIGTERM, "killed by SIGTERM's default action"
    finally:
        stop(proc)


def test_concurrent_mutations_and_requests() -> None:
    import threading

    with Simulator(seed=7, now=NOW) as sim:
        errors: list[BaseException] = []

        def mutate() -> None:
            try:
                for n in range(150):
                    source = sim.workspace.create("sources", name=f"Churn {n}")
                    sim.workspace.update("sources", source["id"], enabled=False)
                    if n % 2:
                        sim.workspace.delete("sources", source["id"])
            except BaseException as error:
                errors.append(error)

        def read(statuses: list[int]) -> None:
            with httpx.Client(base_url=sim.url, headers={"Authorization": f"Bearer {sim.token}"}) as http:
                for _ in range(60):
                    statuses.append(http.get("/sources", params={"pagination[count]": 50}).status_code)
                    statuses.append(http.get("/audit-events", params={"pagination[count]": 100}).status_code)

        statuses: list[int] = []
        threads = [threading.Thread(target=mutate)] + [
            threading.Thread(target=read, args=(statuses,)) for _ in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and set(statuses) == {200} and len(statuses) == 360
        assert len(sim.items("listSources")) == 10 + 75
        assert sum(e["type"] == "Source Created" for e in sim.items("listAuditEvents")) >= 150


# -- sample values inline in the property lists ------------------------------------------------

SAMPLE_LISTS = {  # property list -> (its sample-value endpoint, the path parameter naming the item)
    "listPropertiesFromEvent": ("listSampleValuesFromEventProperty", "propertyName"),
    "listPropertiesFromEntity": ("listSampleValuesFromEntityProperty", "propertyName"),
    "listTraits": ("listSampleValuesFromTrait", "traitKey"),
}


def _listed_with_samples(
    http: httpx.Client, sim: Simulator, operation_id: str, path: dict[str, str], query: dict[str, Any]
) -> list[dict[str, Any]]:
    response = get(http, sim, operation_id, path, {"pagination[count]": 1000, **query})
    assert response.status_code == 200, response.text
    return response.json()["data"][SPEC.operations[operation_id].list_key]


@pytest.mark.parametrize("operation_id", sorted(SAMPLE_LISTS))
def test_samples_are_the_first_values_of_the_sample_endpoint_and_only_when_asked(
    simulator: Simulator, http: httpx.Client, operation_id: str
) -> None:
    path, _ = simulator.example_request(operation_id)
    endpoint, name_param = SAMPLE_LISTS[operation_id]
    plain = _listed_with_samples(http, simulator, operation_id, path, {})
    assert plain and all("samples" not in item for item in plain), "absent unless includeSampleValues=true"
    off = _listed_with_samples(http, simulator, operation_id, path, {"includeSampleValues": "false"})
    assert all("samples" not in item for item in off)
    for count, query in ((20, {}), (3, {"samplesCount": 3}), (100, {"samplesCount": 100})):
        items = _listed_with_samples(http, simulator, operation_id, path, {"includeSampleValues": "true", **query})
        validator(operation_id).validate(
            {"data": {SPEC.operations[operation_id].list_key: items, "pagination": {"current": "x"}}}
        )
        for item in items:
            name = item["trait"] if operation_id == "listTraits" else item["name"]
            served = get(http, simulator, endpoint, {**path, name_param: name}, {"propertyType": item.get("type")})
            assert served.status_code == 200, served.text
            assert item["samples"] == served.json()["data"]["sampleValues"][:count]


def test_some_properties_have_more_sample_values_than_a_list_inlines(simulator: Simulator) -> None:
    """Both paths of a sync are exercised by the demo: lists shorter than 100, and cut ones."""
    ws = simulator.workspace
    sizes = [len(ws.sample_values(r.pkey[0], r.pkey[1], r.ident)) for r in ws.rows("event_properties")]
    assert any(n > 100 for n in sizes) and any(n < 100 for n in sizes)
    assert max(sizes) <= 1000, "the dedicated endpoints return up to 1,000 values"


@pytest.mark.parametrize("bad", [0, 101, -5, 2.5, "ten"])
@pytest.mark.parametrize("operation_id", sorted(SAMPLE_LISTS))
def test_samples_count_outside_1_to_100_is_422(
    simulator: Simulator, http: httpx.Client, operation_id: str, bad: Any
) -> None:
    path, _ = simulator.example_request(operation_id)
    response = get(http, simulator, operation_id, path, {"includeSampleValues": "true", "samplesCount": bad})
    assert response.status_code == 422, response.text
    error = response.json()["errors"][0]
    assert error["field"] == "samplesCount" and "1 to 100" in error["message"] and error["type"]
