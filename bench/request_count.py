"""The fewest requests a sync could make, from the simulator's ground truth.

Per stream: the sum over its parameter sets (parent ids x fan-out values x time windows, what
the product's planner derives from the parent tables just loaded) of ceil(items / the
endpoint's largest page), at least 1 per set. Item counts come from the simulator
(`Simulator.items`, unpaginated); the largest page is the API's documented maximum, not what
the stream declaration asks for, so a declaration that pages smaller than it could shows up
as excess.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.processes import SimulatorProcess


def largest_page(operation_id: str) -> int | None:
    """The API's page-size maximum for an operation; None when it is not paginated (one request)."""
    from segment_assets.simulator.api import PAGE_LIMITS, RETL_SYNCS
    from segment_assets.simulator.spec import load_spec

    op = load_spec().operations[operation_id]
    if operation_id == RETL_SYNCS:
        return 100
    if op.pagination_output is None:  # unpaginated, or (listRegulationsFromSource) one page regardless
        return None
    return PAGE_LIMITS.get(op.pagination_input or "PaginationInput", (1000, 200))[0]


def parameter_sets(stream: Any, target: Any) -> list[Any]:
    """The requests a default sync (latest partition of time-based streams) plans for `stream`."""
    from segment_assets.engine.reading import parent_rows, plan_requests
    from segment_assets.engine.windows import clamp_to_retention, window_queries
    from segment_assets.orchestration.connections import connection_from_env
    from segment_assets.orchestration.partitions import partitions_def

    windows = None
    if stream.windowing:
        pdef = partitions_def(stream.windowing.partitioning, connection_from_env({}))
        window = pdef.time_window_for_partition_key(pdef.get_last_partition_key())
        clamped = clamp_to_retention(stream.windowing, window.start, window.end)
        if clamped is None:
            return []
        windows = window_queries(stream.windowing, *clamped)
    return plan_requests(stream, parent_rows(stream, target), windows)


def minimum_requests(db: Path, names: list[str], sim: SimulatorProcess) -> dict[str, dict[str, int]]:
    """Per stream: parameter sets, items served and the fewest requests that read them."""
    from segment_assets.api.streams import STREAMS
    from segment_assets.storage import DuckDBTarget

    target = DuckDBTarget(db)
    out: dict[str, dict[str, int]] = {}
    try:
        for name in names:
            stream = STREAMS[name]
            requests = parameter_sets(stream, target)
            counts = sim.item_counts([(stream.operation_id, r.path, r.params) for r in requests]) if requests else []
            page = largest_page(stream.operation_id)
            minimum = sum(1 if page is None else max(1, math.ceil(n / page)) for n in counts)
            out[name] = {"sets": len(requests), "items": sum(counts), "minimum": minimum}
    finally:
        target.close()
    return out
