"""End to end: Dagster materializations against the simulator into a real DuckDB file."""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa
import pytest
from dagster import DagsterEventType, DagsterInstance, materialize

from segment_assets.api import spec
from segment_assets.api.streams import STREAMS, StreamSpec, materialized_streams
from segment_assets.api.tables import table_def
from segment_assets.cli.commands import run_sync
from segment_assets.definitions import defs as code_location_defs
from segment_assets.engine.reading import parent_rows, plan_requests
from segment_assets.engine.windows import clamp_to_retention, window_queries
from segment_assets.orchestration.assets import asset_key, build_assets
from segment_assets.orchestration.partitions import partitions_def
from segment_assets.orchestration.resources import DuckDBStorage
from segment_assets.simulator import Simulator
from segment_assets.storage import DuckDBTarget
from segment_assets_tests.conftest import materializations, segment_for
from segment_assets_tests.ground_truth import independent, served, stored_row

CONFIG_STREAMS = [s for s in materialized_streams() if not s.windowing]


def latest_window_queries(stream: StreamSpec) -> list[dict[str, Any]] | None:
    """The request windows `run_sync` reads for a time-based stream: its latest partition."""
    if not stream.windowing:
        return None
    pdef = partitions_def(stream.windowing.partitioning)
    window = pdef.time_window_for_partition_key(pdef.get_last_partition_key())
    clamped = clamp_to_retention(stream.windowing, window.start, window.end)
    return window_queries(stream.windowing, *clamped) if clamped else []


def _shaped_by_the_production_code(stream: StreamSpec, target: DuckDBTarget, sim: Simulator) -> list[dict[str, Any]]:
    """Only for the shapes ground_truth.py does not know (exploded arrays, maps, bare strings...):
    the production planner and shaper applied to what the simulator serves. Not independent of
    the code under test; test_streams checks those shapes against hand-written rows."""
    table = table_def(stream.name)
    batches = []
    for request in plan_requests(stream, parent_rows(stream, target), latest_window_queries(stream)):
        records = sim.items(stream.operation_id, request.path, {**stream.query, **request.params})
        if stream.map_key_column:  # the simulator lists a map's values, each carrying its key as id
            records = [{stream.map_key_column: r["id"], "value": r} for r in records]
        if len(stream.data_keys) > 1:  # the simulator lists sources then warehouses, unmarked
            sources = {s["id"] for s in sim.items("listSources")}
            for r in records:
                kind = "sources" if r["id"] in sources else "warehouses"
                batches.append(table.shaper().batch([r], {**request.context, "recordKind": kind}, {}))
        elif stream.data_fields and records and stream.data_key in records[0]:  # getSource: [data]
            batches.append(table.shaper().batch([records[0][stream.data_key]], request.context, records[0]))
        else:
            batches.append(table.shaper().batch(records, request.context, {}))
    rows = pa.Table.from_batches(batches, schema=table.arrow_schema()).to_pylist() if batches else []
    if stream.dedupe:
        rows = list({tuple(r[k] for k in stream.primary_key): r for r in rows}.values())
    return [stored_row(r) for r in rows]


def expected_rows(stream: StreamSpec, target: DuckDBTarget, sim: Simulator) -> list[dict[str, Any]]:
    """What the stream's table should hold, in ground_truth's plain form: from the simulator's
    items walked parent to child when ground_truth knows the shape (`independent`)."""
    if independent(stream):
        return list(served(stream, sim).values())
    return _shaped_by_the_production_code(stream, target, sim)


def loaded_rows(stream: StreamSpec, target: DuckDBTarget) -> list[dict[str, Any]]:
    """Every row of the stream's table in ground_truth's plain form (duplicates kept, to be counted)."""
    con = target.sql_session()
    try:
        rel = con.execute(f'SELECT * FROM "{stream.name}"')
        columns = [d[0] for d in rel.description]
        return [stored_row(dict(zip(columns, values))) for values in rel.fetchall()]
    finally:
        con.close()


def by_key(stream: StreamSpec, rows: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    # Data-level fields of list pages (enableEventTables) are not in the simulator's item list.
    skip = {spec.snake_case(f) for f in stream.data_fields} if stream.data_key != "source" else set()
    return {tuple(r.get(k) for k in stream.primary_key): {c: v for c, v in r.items() if c not in skip} for r in rows}


def test_definitions_load_with_parent_child_dependencies() -> None:
    graph = code_location_defs().resolve_asset_graph()
    assert graph.get(asset_key("tracking_plan_rules")).parent_keys == {asset_key("tracking_plans")}
    assert graph.get(asset_key("source_connected_destinations")).parent_keys == {asset_key("sources")}
    assert graph.get(asset_key("delivery_failed_delivery")).parent_keys == {asset_key("source_connected_destinations")}
    assert len(list(graph.get_all_asset_keys())) == len(materialized_streams())


@pytest.mark.e2e
def test_full_sync_equals_what_the_simulator_serves(
    sim: Simulator, storage: DuckDBStorage, target: DuckDBTarget
) -> None:
    out = io.StringIO()
    summary = run_sync(None, segment=segment_for(sim), storage=storage, out=out)
    assert {r["stream"] for r in summary} == {s.name for s in materialized_streams()}
    mismatched = []
    for stream in materialized_streams():
        expected, loaded = expected_rows(stream, target, sim), loaded_rows(stream, target)
        if by_key(stream, expected) != by_key(stream, loaded) or len(expected) != len(loaded):
            mismatched.append((stream.name, len(expected), len(loaded)))
    assert not mismatched
    assert sum(independent(s) for s in materialized_streams()) >= 45, "most tables checked against ground truth"
    rows = {r["stream"]: r["rows"] for r in summary}
    assert all(rows[s.name] > 0 for s in materialized_streams()), "the demo workspace fills every stream"
    assert "TOTAL" in out.getvalue()
    instance = DagsterInstance.get()
    runs = instance.get_runs()
    # The workspace's own jobs, tagged as the CLI's: the Runs list reads like the schedules' runs.
    assert sorted(r.job_name for r in runs) == ["segment_config", "segment_daily", "segment_monthly"]
    assert all(r.tags["segment/trigger"] == "cli" and r.tags["segment/connection"] == "default" for r in runs)
    # A workspace that follows the spec shows no warning: every field it sends is documented, and
    # the parent-key columns are not fields.
    checks = [
        e.dagster_event.event_specific_data
        for r in runs
        for e in instance.all_logs(r.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    assert len(checks) == 2 * len(materialized_streams())
    assert [f"{c.asset_key.path[-1]}: {c.check_name}" for c in checks if not c.passed] == []


def test_feature_gated_streams_succeed_empty_and_say_why(storage: DuckDBStorage, target: DuckDBTarget) -> None:
    with Simulator(seed=7, disabled_features=("Protocols",)) as sim:
        result = materialize(
            build_assets(),
            resources={"segment": segment_for(sim), "storage": storage},
            selection=[asset_key("tracking_plans"), asset_key("tracking_plan_rules")],
            instance=DagsterInstance.get(),
        )
    assert result.success
    md = materializations(result, "tracking_plans")[0].metadata
    assert md["segment/status"].value == "unavailable"
    assert "Protocols" in md["segment/unavailable_reason"].value
    child = materializations(result, "tracking_plan_rules")[0].metadata
    assert child["segment/status"].value == "unavailable", "a child of an unavailable parent says so"
    assert "parent stream tracking_plans is unavailable" in child["segment/unavailable_reason"].value
    assert child["segment/api_requests"].value == 0
    assert target.query("SELECT count(*) FROM tracking_plans") == [(0,)]
    assert target.query("SELECT count(*) FROM tracking_plan_rules") == [(0,)]


def test_alpha_streams_can_be_switched_off(sim: Simulator, storage: DuckDBStorage) -> None:
    result = materialize(
        build_assets(),
        resources={"segment": segment_for(sim, stabilities=["v1", "beta"]), "storage": storage},
        selection=[asset_key("spaces")],
        instance=DagsterInstance.get(),
    )
    md = materializations(result, "spaces")[0].metadata
    assert md["segment/status"].value == "unavailable" and md["segment/api_requests"].value == 0
    assert "alpha" in md["segment/unavailable_reason"].value


def test_materialization_reports_metadata_and_key_check(sim: Simulator, storage: DuckDBStorage) -> None:
    result = materialize(
        build_assets(),
        resources={"segment": segment_for(sim, page_size=2), "storage": storage},
        selection=[asset_key("sources")],
        instance=DagsterInstance.get(),
    )
    md = materializations(result, "sources")[0].metadata
    n = len(sim.items("listSources"))
    assert md["dagster/row_count"].value == n
    assert md["segment/api_requests"].value == md["segment/pages"].value == -(-n // 2)
    assert [c.name for c in md["dagster/column_schema"].value.columns][:3] == ["id", "slug", "name"]
    assert md["dagster/table_name"].value == "segment.sources"
    checks = result.get_asset_check_evaluations()
    assert sorted((c.check_name, c.passed) for c in checks) == [
        ("primary_key_unique_not_null", True),
        ("schema_drift", True),
    ]


def test_failed_materialization_keeps_previous_table(
    sim: Simulator, storage: DuckDBStorage, target: DuckDBTarget
) -> None:
    assets, resources = build_assets(), {"segment": segment_for(sim, max_retries=1), "storage": storage}
    assert materialize(assets, resources=resources, selection=[asset_key("sources")]).success
    before = target.query("SELECT * FROM sources ORDER BY id")
    sim.inject("malformed", "listSources", times=5)
    result = materialize(assets, resources=resources, selection=[asset_key("sources")], raise_on_error=False)
    assert not result.success
    assert target.query("SELECT * FROM sources ORDER BY id") == before


def test_child_without_parent_table_explains(sim: Simulator, storage: DuckDBStorage) -> None:
    result = materialize(
        build_assets(),
        resources={"segment": segment_for(sim), "storage": storage},
        selection=[asset_key("tracking_plan_rules")],
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "materialize the parent asset (tracking_plans) first" in failure.event_specific_data.error.to_string()


@pytest.mark.parametrize("stream", ["audit_events"])
def test_partitioned_stream_loads_its_window(
    sim: Simulator, storage: DuckDBStorage, target: DuckDBTarget, stream: str
) -> None:
    spec = STREAMS[stream]
    pdef = partitions_def(spec.windowing.partitioning)
    key = pdef.get_last_partition_key()
    resources = {"segment": segment_for(sim), "storage": storage}
    for _ in range(2):  # a re-run replaces, never duplicates
        assert materialize(
            build_assets(), resources=resources, selection=[asset_key(stream)], partition_key=key
        ).success
    window = pdef.time_window_for_partition_key(key)
    served = sim.items(
        spec.operation_id,
        {},
        {
            "startTime": window.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "endTime": window.end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    )
    loaded = target.query("SELECT id FROM audit_events ORDER BY id")
    assert served and sorted(e["id"] for e in served) == [r[0] for r in loaded]


def test_watermark_stream_reads_only_new_pages_and_never_deletes(storage: DuckDBStorage, target: DuckDBTarget) -> None:
    with Simulator(seed=7, counts={"warehouse_syncs": 40}) as sim:
        resources = {"segment": segment_for(sim, page_size=10), "storage": storage}
        selection = [asset_key("warehouses"), asset_key("warehouse_syncs")]
        first = materialize(build_assets(), resources=resources, selection=selection)
        served = sum(
            len(sim.items("listSyncsFromWarehouse", {"warehouseId": w["id"]})) for w in sim.items("listWarehouses")
        )
        md = materializations(first, "warehouse_syncs")[0].metadata
        assert md["dagster/row_count"].value == served and md["segment/api_requests"].value == -(-served // 10)

        warehouse = sim.items("listWarehouses")[0]["id"]
        source = sim.items("listSyncsFromWarehouse", {"warehouseId": warehouse})[0]["sourceId"]
        new = sim.workspace.create(
            "warehouse_syncs", sourceId=source, start=sim.now().strftime("%Y-%m-%dT%H:%M:%S.000Z")
        )
        second = materialize(build_assets(), resources=resources, selection=[asset_key("warehouse_syncs")])
        md = materializations(second, "warehouse_syncs")[0].metadata
    assert md["segment/watermark_stops"].value == 3
    assert md["segment/api_requests"].value == 3, "one page per warehouse: the first reaches the watermark"
    assert (md["segment/inserted"].value, md["segment/deleted"].value) == (1, 0)
    assert md["dagster/row_count"].value == served + 1, "rows older than the re-read pages are kept"
    assert target.query(
        "SELECT header__change_oper, source_id FROM warehouse_syncs__ct WHERE header__run_id = ?", [second.run_id]
    ) == [("I", new["sourceId"])]


def test_parent_deleted_after_its_table_was_loaded_is_skipped(
    sim: Simulator, storage: DuckDBStorage, target: DuckDBTarget
) -> None:
    resources = {"segment": segment_for(sim), "storage": storage}
    assert materialize(build_assets(), resources=resources, selection=[asset_key("user_groups")]).success
    gone = sim.items("listUserGroups")[0]["id"]
    sim.workspace.delete("user_groups", gone)
    result = materialize(build_assets(), resources=resources, selection=[asset_key("user_group_users")])
    md = materializations(result, "user_group_users")[0].metadata
    assert md["segment/parents_gone"].value == 1
    assert target.query("SELECT count(*) FROM user_group_users WHERE user_group_id = ?", [gone]) == [(0,)]
    assert md["dagster/row_count"].value == sum(
        len(sim.items("listUsersFromUserGroup", {"userGroupId": g["id"]})) for g in sim.items("listUserGroups")
    )


def test_schema_drift_check_warns_once_about_fields_the_api_starts_sending(
    sim: Simulator, storage: DuckDBStorage, target: DuckDBTarget
) -> None:
    resources = {"segment": segment_for(sim), "storage": storage}

    def drift(result: Any) -> Any:
        [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "schema_drift"]
        return check

    first = materialize(build_assets(), resources=resources, selection=[asset_key("labels")])
    assert drift(first).passed
    label = sim.workspace.list("labels")[0]
    sim.workspace.update("labels", f"{label['key']}:{label['value']}", colorHex="#ff0000")
    second = materialize(build_assets(), resources=resources, selection=[asset_key("labels")])
    check = drift(second)
    assert not check.passed and check.severity.value == "WARN"
    assert check.metadata["new_fields"].value == "colorHex"
    assert target.query("SELECT _extra->>'$.colorHex' FROM labels WHERE _extra IS NOT NULL") == [("#ff0000",)]
    third = materialize(build_assets(), resources=resources, selection=[asset_key("labels")])
    assert drift(third).passed, "known since the last run: no second warning"
    assert drift(third).metadata["undocumented_fields"].value == "colorHex"


def test_audiences_carry_their_schedules_as_the_schedule_list_serves_them(
    sim: Simulator, storage: DuckDBStorage, target: DuckDBTarget
) -> None:
    # listAudiences sends `schedules` only with include=schedules; without it the column is empty.
    names = ("spaces", "audiences", "audience_schedules")
    result = materialize(
        build_assets(),
        resources={"segment": segment_for(sim), "storage": storage},
        selection=[asset_key(n) for n in names],
        instance=DagsterInstance.get(),
    )
    assert result.success
    listed = target.query(
        "SELECT a.id, s.id FROM audiences a, unnest(json_extract_string(a.schedules, '$[*].id')) AS s(id)"
    )
    scheduled = target.query("SELECT audience_id, id FROM audience_schedules")
    assert scheduled, "the demo has audiences with schedules"
    assert sorted(listed) == sorted(scheduled)
    assert target.query("SELECT count(*) FROM audiences WHERE schedules IS NULL") == [(0,)]
