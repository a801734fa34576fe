"""The stream registry: coverage of the API, and declarations that hold together."""

from __future__ import annotations

import pytest

from segment_assets.api import spec
from segment_assets.api.streams import EXCLUDED, STREAMS, Paging, UpdateMethod, materialized_streams
from segment_assets.api.tables import EXTRA_COLUMN, table_def


def test_every_get_operation_is_declared_or_excluded_with_a_reason() -> None:
    declared = {s.operation_id for s in STREAMS.values()}
    operations = set(spec.operations())
    assert len(operations) == 100
    assert operations - declared == set(EXCLUDED), "undeclared GETs must be listed in EXCLUDED with a reason"
    assert set(EXCLUDED) == {"echo", "getAudiencePreview"}
    assert all(EXCLUDED.values())
    assert declared <= operations, f"declarations name unknown operations: {declared - operations}"
    assert len(declared) == 98


def test_each_operation_is_declared_once() -> None:
    ops = [s.operation_id for s in STREAMS.values()]
    assert len(ops) == len(set(ops))


@pytest.mark.parametrize("stream", list(STREAMS.values()), ids=lambda s: s.name)
def test_declaration_is_consistent(stream) -> None:  # type: ignore[no-untyped-def]
    op = stream.operation
    if stream.covered_by:
        cover = STREAMS[stream.covered_by]
        assert cover.materialized and stream.decision
        return
    table = table_def(stream.name)
    assert stream.primary_key and set(stream.primary_key) <= set(table.column_names)
    assert table.column_names[-1] == EXTRA_COLUMN
    # Every path parameter and required query parameter has a source: parent, fan-out, fixed, or window.
    sources = set(stream.parent.params if stream.parent else ()) | set(stream.fan_out) | set(stream.query)
    if stream.windowing:
        w = stream.windowing
        sources |= {p for p in (w.start_param, w.end_param, w.period_param) if p} | (
            {"granularity"} if w.granularity else set()
        )
    missing = (set(op.path_params) | set(op.required_query)) - sources
    assert not missing, f"{stream.name}: no value for {missing}"
    if stream.parent:
        parent = STREAMS[stream.parent.stream]
        assert parent.materialized and not parent.windowing
        assert set(stream.parent.params.values()) <= set(table_def(parent.name).column_names)
    has_pagination = "pagination" in spec.properties(op.data_schema) or any(
        k.endswith("Pagination") for k in spec.properties(op.data_schema)
    )
    assert (stream.paging in (Paging.NONE, Paging.SINGLE)) == (not has_pagination or stream.paging is Paging.SINGLE)
    if stream.windowing:
        assert stream.update_method is UpdateMethod.INCREMENTAL
        assert stream.windowing.time_column in table.column_names
    if stream.update_method is UpdateMethod.WATERMARK:
        assert stream.watermark and spec.snake_case(stream.watermark) in table.column_names


def test_feature_gates_and_stabilities_come_from_the_spec() -> None:
    assert STREAMS["tracking_plans"].feature_gate == "Protocols"
    assert STREAMS["spaces"].stability == "alpha"
    assert STREAMS["warehouse_syncs"].rate_limit_per_minute == 2
    assert STREAMS["delivery_successfully_received"].stability == "beta"


def test_materialized_streams_have_unique_tables() -> None:
    tables = [s.table for s in materialized_streams()]
    assert len(tables) == len(set(tables)) == 75


def test_every_request_to_a_slow_endpoint_is_explained() -> None:
    """Endpoints limited below 60/min say in their declaration why each request is needed."""
    slow = [s for s in STREAMS.values() if s.rate_limit_per_minute and s.rate_limit_per_minute < 60]
    assert slow and [s.name for s in slow if "request" not in s.decision] == []
