"""Schedules, the audit-trail sensor and freshness policies, against the simulator and a real instance."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from dagster import (
    DagsterInstance,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    SensorResult,
    build_schedule_context,
    build_sensor_context,
    materialize,
)

from segment_assets.api.streams import Partitioning, materialized_streams
from segment_assets.orchestration.assets import asset_key, build_assets
from segment_assets.orchestration.connections import ZERO_CONFIG, Connection
from segment_assets.orchestration.definitions import build_definitions
from segment_assets.orchestration.freshness import largest_cron_gap
from segment_assets.orchestration.jobs import config_streams, monthly_partition_keys, partitioned_streams
from segment_assets.orchestration.resources import DuckDBStorage, SegmentResource
from segment_assets.orchestration.sensors import (
    AUDIT_RESOURCE_STREAMS,
    AuditCursor,
    build_audit_sensor,
    streams_for_resource_type,
)
from segment_assets.orchestration.workspaces import Workspace
from segment_assets.simulator import AUDIT_RESOURCE_TYPES, Simulator
from segment_assets.storage import DuckDBTarget
from segment_assets_tests.conftest import segment_for

CONFIG = {s.name for s in config_streams(ZERO_CONFIG)}
SOURCES_AND_DESCENDANTS = {
    "sources",
    "source_details",
    "source_connected_destinations",
    "source_connected_warehouses",
    "source_schema_settings",
    "source_live_plugins",
    "source_regulations",
}


def names(request: RunRequest) -> set[str]:
    return {key.path[-1] for key in request.asset_selection or ()}


class Ticker:
    """Runs sensor ticks the way the daemon does: the cursor a tick returns feeds the next one."""

    def __init__(self, sim: Simulator, segment: SegmentResource, instance: DagsterInstance, **sensor_args: Any) -> None:
        self.sim, self.segment, self.instance = sim, segment, instance
        self.cursor: str | None = None
        self.sensor = build_audit_sensor(Workspace(ZERO_CONFIG), **sensor_args)
        self.requests: list[int] = []  # API requests per tick

    def tick(self) -> SensorResult:
        self.sim.reset_stats()
        context = build_sensor_context(instance=self.instance, cursor=self.cursor, resources={"segment": self.segment})
        result = self.sensor(context)
        self.requests.append(self.sim.stats.total)
        if isinstance(result, SensorResult) and result.cursor is not None:
            self.cursor = result.cursor
        return result


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as instance:
        yield instance


@pytest.fixture
def ticker(sim: Simulator, instance: DagsterInstance) -> Ticker:
    t = Ticker(sim, segment_for(sim), instance)
    t.tick()  # the first tick sets the cursor
    return t


# -- the audit-trail sensor ----------------------------------------------------------------


def test_quiet_workspace_costs_one_request_and_requests_no_run(ticker: Ticker) -> None:
    before = ticker.cursor
    for _ in range(3):
        result = ticker.tick()
        assert isinstance(result, SensorResult) and not result.run_requests
        assert "no new audit events" in result.skip_reason.skip_message
    assert ticker.requests[1:] == [1, 1, 1]
    assert ticker.cursor == before


def test_source_update_requests_exactly_sources_and_descendants(sim: Simulator, ticker: Ticker) -> None:
    source = sim.workspace.list("sources")[3]
    sim.workspace.update("sources", source["id"], name="Renamed by test")
    before = AuditCursor.loads(ticker.cursor)
    result = ticker.tick()
    [request] = result.run_requests
    assert names(request) == SOURCES_AND_DESCENDANTS
    assert request.tags["segment/audit_events"] == "1"
    assert request.tags["segment/audit_resources"] == f"Source:{source['id']}"
    assert ticker.requests[-1] == 1
    [event] = sim.items("listAuditEvents", {}, {"resourceId": source["id"], "startTime": before.timestamp})
    assert AuditCursor.loads(ticker.cursor) == AuditCursor(event["timestamp"], frozenset({event["id"]}))
    assert AuditCursor.loads(ticker.cursor).timestamp > before.timestamp
    again = ticker.tick()
    assert not again.run_requests and ticker.requests[-1] == 1


def test_run_request_launches_a_run_that_writes_the_change(
    sim: Simulator, storage: DuckDBStorage, target: DuckDBTarget, ticker: Ticker, instance: DagsterInstance
) -> None:
    assets, resources = build_assets(), {"segment": segment_for(sim), "storage": storage}
    assert materialize(assets, resources=resources, selection=[asset_key("labels")]).success
    label = sim.workspace.list("labels")[1]
    sim.workspace.update("labels", f"{label['key']}:{label['value']}", description="Edited in the UI")
    [request] = ticker.tick().run_requests
    assert names(request) == {"labels"}
    run = materialize(
        assets, resources=resources, selection=request.asset_selection, tags=request.tags, instance=instance
    )
    assert run.success
    assert target.query(
        "SELECT header__change_oper, key, value, description FROM labels__ct WHERE header__run_id = ?", [run.run_id]
    ) == [("U", label["key"], label["value"], "Edited in the UI")]


def test_events_on_many_pages_are_all_seen(sim: Simulator, instance: DagsterInstance) -> None:
    ticker = Ticker(sim, segment_for(sim, page_size=2), instance)
    ticker.tick()
    ws = sim.workspace
    plan = ws.list("tracking_plans")[0]
    mutations = [
        lambda: ws.update("sources", ws.list("sources")[0]["id"], name="a"),
        lambda: ws.delete("destinations", ws.list("destinations")[0]["id"]),
        # a new rule is logged as "Tracking Plan Modified"
        lambda: ws.create("rules", trackingPlanId=plan["id"], type="TRACK", key="Paged Event"),
        lambda: ws.create("labels", key="team", value="paging"),
        lambda: ws.update("users", ws.list("users")[0]["id"], name="b"),
        lambda: ws.update("warehouses", ws.list("warehouses")[0]["id"], enabled=False),
        lambda: ws.update("functions", ws.list("functions")[0]["id"], displayName="c"),
        lambda: ws.update("spaces", ws.list("spaces")[0]["id"], name="d"),
        lambda: ws.update("credentials", ws.list("credentials")[0]["id"], name="e"),
    ]
    for mutate in mutations:
        mutate()
        time.sleep(0.003)  # one event per millisecond, so the quiet tick below reads one small page
    result = ticker.tick()
    [request] = result.run_requests
    expected = set()
    for rtype in (
        "Source",
        "Destination",
        "Tracking Plan",
        "Label",
        "User",
        "Warehouse",
        "Function",
        "Space",
        "Credential",
    ):
        expected |= streams_for_resource_type(rtype)
    assert names(request) == expected
    assert request.tags["segment/audit_events"] == "9"
    assert ticker.requests[-1] == 5  # 9 events, 2 a page
    assert "segment/audit_overflow" not in request.tags
    assert not ticker.tick().run_requests and ticker.requests[-1] == 1


def test_backlog_beyond_page_cap_resyncs_every_config_stream(sim: Simulator, instance: DagsterInstance) -> None:
    ticker = Ticker(sim, segment_for(sim, page_size=2), instance, max_pages=2)
    ticker.tick()
    start = sim.now()
    added = [e for i in range(9) for e in sim.workspace.add_audit_events(1, at=start + timedelta(milliseconds=i))]
    [request] = ticker.tick().run_requests
    assert names(request) == CONFIG
    assert request.tags["segment/audit_overflow"] == "more than 2 pages of new events"
    assert request.tags["segment/audit_events"] == "4" and ticker.requests[-1] == 2
    assert AuditCursor.loads(ticker.cursor) == AuditCursor(
        added[-1]["timestamp"], frozenset({added[-1]["id"]}), whole_ms=True
    )
    assert not ticker.tick().run_requests and ticker.requests[-1] == 1


def test_backlog_in_one_millisecond_is_resynced_once(sim: Simulator, instance: DagsterInstance) -> None:
    ticker = Ticker(sim, segment_for(sim, page_size=2), instance, max_pages=2)
    ticker.tick()
    sim.workspace.add_audit_events(9, at=sim.now())
    [request] = ticker.tick().run_requests
    assert names(request) == CONFIG
    # The unread five share the newest millisecond: covered by that full re-sync, not run again.
    assert not ticker.tick().run_requests and ticker.requests[-1] == 2


def test_events_in_the_cursor_millisecond_are_neither_skipped_nor_counted_twice(
    sim: Simulator, instance: DagsterInstance
) -> None:
    at = sim.now() + timedelta(seconds=1)
    ticker = Ticker(sim, segment_for(sim), instance)
    ticker.tick()
    first = sim.workspace.add_audit_events(3, at=at)
    r1 = ticker.tick()
    assert r1.run_requests[0].tags["segment/audit_events"] == "3"
    assert AuditCursor.loads(ticker.cursor).ids == {e["id"] for e in first}
    late = sim.workspace.add_audit_events(2, at=at)  # same millisecond, written after the tick
    r2 = ticker.tick()
    [request] = r2.run_requests
    assert request.tags["segment/audit_events"] == "2"
    assert AuditCursor.loads(ticker.cursor).ids == {e["id"] for e in first + late}
    assert names(request) == set().union(*(streams_for_resource_type(e["resourceType"]) for e in late))
    assert not ticker.tick().run_requests


def test_unknown_resource_types_are_logged_and_ignored(sim: Simulator, ticker: Ticker) -> None:
    sim.workspace.audit.append("Gizmo", "Created", "gz1", "A gizmo", sim.now())
    result = ticker.tick()
    assert not result.run_requests
    assert result.skip_reason.skip_message == "1 new audit event(s), none on a replicated resource type"
    assert not ticker.tick().run_requests  # the cursor moved past it
    sim.workspace.audit.append("Gizmo", "Deleted", "gz1", "A gizmo", sim.now())
    sim.workspace.create("labels", key="team", value="mixed")
    [request] = ticker.tick().run_requests
    assert names(request) == {"labels"} and request.tags["segment/audit_events"] == "2"


def test_without_audit_trail_the_sensor_skips_and_says_why(instance: DagsterInstance) -> None:
    with Simulator(seed=7, disabled_features=("Audit Trail",)) as sim:
        ticker = Ticker(sim, segment_for(sim), instance)
        result = ticker.tick()
    assert "not available" in result.skip_message and "Audit Trail feature" in result.skip_message
    assert ticker.cursor is None and ticker.requests == [1]


def test_first_tick_starts_a_short_lookback_before_now(sim: Simulator, instance: DagsterInstance) -> None:
    ticker = Ticker(sim, segment_for(sim), instance)
    result = ticker.tick()
    assert not result.run_requests and ticker.requests == [1]
    start = datetime.fromisoformat(AuditCursor.loads(ticker.cursor).timestamp.replace("Z", "+00:00"))
    assert timedelta(minutes=4) < datetime.now(UTC) - start < timedelta(minutes=6)


def test_resource_type_table_covers_the_simulator_and_names_config_streams() -> None:
    assert set(AUDIT_RESOURCE_TYPES) <= set(AUDIT_RESOURCE_STREAMS)
    for rtype, roots in AUDIT_RESOURCE_STREAMS.items():
        for name in roots:
            assert name in CONFIG, (rtype, name)
    assert streams_for_resource_type("Source") == SOURCES_AND_DESCENDANTS
    assert streams_for_resource_type("tracking plan") == {
        "tracking_plans",
        "tracking_plan_rules",
        "tracking_plan_sources",
        "source_details",
    }
    assert streams_for_resource_type("Destination") == {
        "destinations",
        "destination_filters",
        "destination_subscriptions",
        "reverse_etl_sync_statuses",
        "source_connected_destinations",
    }  # delivery metrics are partitioned: the daily schedule has them
    assert streams_for_resource_type("Gizmo") is None


def test_cursor_round_trips_as_json() -> None:
    cursor = AuditCursor("2026-01-02T03:04:05.678Z", frozenset({"b", "a"}))
    assert json.loads(cursor.dumps()) == {"timestamp": "2026-01-02T03:04:05.678Z", "ids": ["a", "b"]}
    assert AuditCursor.loads(cursor.dumps()) == cursor and AuditCursor.loads(None) is None


# -- schedules -----------------------------------------------------------------------------


def test_schedules_and_sensor_are_declared_stopped_with_their_jobs() -> None:
    repo = build_definitions().get_repository_def()
    schedules = {s.name: s for s in repo.schedule_defs}
    assert set(schedules) == {"segment_config_schedule", "segment_daily_schedule", "segment_monthly_schedule"}
    assert all(s.default_status is DefaultScheduleStatus.STOPPED and s.description for s in schedules.values())
    assert {n: (s.cron_schedule, s.execution_timezone) for n, s in schedules.items()} == {
        "segment_config_schedule": ("0 * * * *", "UTC"),
        "segment_daily_schedule": ("0 1 * * *", "UTC"),
        "segment_monthly_schedule": ("30 1 * * *", "UTC"),
    }
    graph = repo.asset_graph

    def selected(job: str) -> set[str]:
        return {k.path[-1] for k in repo.get_job(job).asset_layer.selected_asset_keys}

    assert selected("segment_config") == CONFIG
    assert selected("segment_daily") == {s.name for s in partitioned_streams(Partitioning.DAILY, ZERO_CONFIG)}
    assert selected("segment_monthly") == {s.name for s in partitioned_streams(Partitioning.MONTHLY, ZERO_CONFIG)}
    assert CONFIG | selected("segment_daily") | selected("segment_monthly") == {s.name for s in materialized_streams()}
    assert {k.path[-1] for k in graph.get_all_asset_keys()} == {s.name for s in materialized_streams()}
    [sensor] = repo.sensor_defs
    assert sensor.name == "segment_audit_trail_sensor" and sensor.default_status is DefaultSensorStatus.STOPPED


def test_config_cron_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGMENT_CONFIG_CRON", "*/15 * * * *")
    repo = build_definitions().get_repository_def()
    schedule = repo.get_schedule_def("segment_config_schedule")
    assert schedule.cron_schedule == "*/15 * * * *" and "*/15 * * * *" in schedule.description
    policy = repo.asset_graph.get(asset_key("sources")).freshness_policy
    assert (policy.warn_window.to_timedelta(), policy.fail_window.to_timedelta()) == (
        timedelta(minutes=75),
        timedelta(minutes=135),
    )


def test_daily_schedule_requests_yesterday() -> None:
    repo = build_definitions().get_repository_def()
    schedule = repo.get_schedule_def("segment_daily_schedule")
    today = datetime.now(UTC).replace(hour=1, minute=0, second=0, microsecond=0)
    with DagsterInstance.ephemeral() as instance:
        context = build_schedule_context(instance=instance, scheduled_execution_time=today, repository_def=repo)
        [request] = schedule.evaluate_tick(context).run_requests
    assert request.partition_key == (today - timedelta(days=1)).strftime("%Y-%m-%d")
    assert request.tags["dagster/partition"] == request.partition_key


def _month(months_ago: int) -> datetime:
    today = datetime.now(UTC)
    n = today.year * 12 + today.month - 1 - months_ago
    return datetime(n // 12, n % 12 + 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("day", "months"), [(15, [2]), (1, [3, 2]), (2, [3, 2]), (3, [2])])
def test_monthly_schedule_rereads_the_current_month_daily(day: int, months: list[int]) -> None:
    repo = build_definitions().get_repository_def()
    schedule = repo.get_schedule_def("segment_monthly_schedule")
    when = _month(2).replace(day=day, hour=1, minute=30)
    with DagsterInstance.ephemeral() as instance:
        requests = schedule.evaluate_tick(
            build_schedule_context(instance=instance, scheduled_execution_time=when, repository_def=repo)
        ).run_requests
    expected = [f"{_month(m):%Y-%m-%d}" for m in months]
    assert [r.partition_key for r in requests] == expected
    assert [r.run_key for r in requests] == [f"{k}@{when:%Y-%m-%d}" for k in expected]


def test_monthly_schedule_skips_a_month_before_the_first_partition() -> None:
    connection = Connection(name="default", default_names=True, monthly_start=f"{_month(2):%Y-%m-%d}")
    assert monthly_partition_keys(_month(2), connection) == [f"{_month(2):%Y-%m-%d}"]


# -- freshness -----------------------------------------------------------------------------


def test_every_asset_has_a_freshness_policy() -> None:
    graph = build_definitions().get_repository_def().asset_graph
    for stream in materialized_streams():
        policy = graph.get(asset_key(stream.name)).freshness_policy
        windows = (policy.warn_window.to_timedelta(), policy.fail_window.to_timedelta())
        assert windows == (
            (timedelta(hours=25), timedelta(hours=26)) if stream.windowing else (timedelta(hours=2), timedelta(hours=3))
        ), stream.name


def test_freshness_passes_after_a_run_warns_then_fails(
    sim: Simulator, storage: DuckDBStorage, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagster._core.definitions.freshness_evaluator as evaluator_module
    from dagster._core.definitions.freshness import FreshnessState
    from dagster._core.definitions.freshness_evaluator import TimeWindowFreshnessPolicyEvaluator
    from dagster._core.loader import LoadingContextForTest

    node = build_definitions().get_repository_def().asset_graph.get(asset_key("labels"))

    def state(after: timedelta) -> FreshnessState:
        now = datetime.now(UTC) + after
        monkeypatch.setattr(evaluator_module, "get_current_timestamp", lambda: now.timestamp())
        return asyncio.run(
            TimeWindowFreshnessPolicyEvaluator().evaluate_freshness(LoadingContextForTest(instance), node)
        )

    assert state(timedelta(0)) is FreshnessState.UNKNOWN
    assert materialize(
        build_assets(),
        resources={"segment": segment_for(sim), "storage": storage},
        selection=[asset_key("labels")],
        instance=instance,
    ).success
    assert [state(timedelta(hours=h)) for h in (0, 1.5, 2.5, 3.5)] == [
        FreshnessState.PASS,
        FreshnessState.PASS,
        FreshnessState.WARN,
        FreshnessState.FAIL,
    ]


def test_largest_cron_gap_sees_weekends() -> None:
    assert largest_cron_gap("0 * * * *") == timedelta(hours=1)
    assert largest_cron_gap("0 9 * * 1-5") == timedelta(days=3)
