"""2. Request count: a full sync of the demo workspace against the fewest requests it could make.

The minimum, per stream, is the sum over its parameter sets (parent ids x fan-out values x
time windows: what `plan_requests` derives from the parent tables just loaded) of
ceil(items / the endpoint's largest page), at least 1 per set. Item counts are the
simulator's ground truth (`Simulator.items`, unpaginated); the largest page is the API's
documented maximum (1000; 200 for listAudiences, 10 for listFiltersForSpace, 100 for the
top-level count of RETL sync statuses), not what the stream declaration asks for, so a
declaration that pages smaller than it could shows up as excess.
"""

from __future__ import annotations

import math
from typing import Any

from bench.figures import Figure, Section, Table
from bench.processes import SimulatorProcess
from bench.workspace_sync import SyncRun


def _largest_page(operation_id: str) -> int | None:
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
    """The requests `materialize_stream` plans for a stream in a default sync (latest partition)."""
    from segment_assets.assets import clamp_to_retention, partitions_def, plan_requests, window_queries

    windows = None
    if stream.windowing:
        pdef = partitions_def(stream.windowing.partition)
        window = pdef.time_window_for_partition_key(pdef.get_last_partition_key())
        clamped = clamp_to_retention(stream.windowing, window.start, window.end)
        if clamped is None:
            return []
        windows = window_queries(stream.windowing, *clamped)
    return plan_requests(stream, target, windows)


def minimum_requests(run: SyncRun, sim: SimulatorProcess) -> dict[str, dict[str, int]]:
    """Per stream: parameter sets, items served and the fewest requests that read them."""
    from segment_assets.storage import DuckDBTarget
    from segment_assets.streams import STREAMS

    target = DuckDBTarget(run.db)
    out: dict[str, dict[str, int]] = {}
    for summary in run.streams:
        stream = STREAMS[summary["stream"]]
        requests = parameter_sets(stream, target)
        counts = sim.item_counts([(stream.operation_id, r.path, r.params) for r in requests]) if requests else []
        page = _largest_page(stream.operation_id)
        minimum = sum(1 if page is None else max(1, math.ceil(n / page)) for n in counts)
        out[stream.name] = {"sets": len(requests), "items": sum(counts), "minimum": minimum}
    return out


def run(run: SyncRun, sim: SimulatorProcess, scale: float) -> tuple[Section, dict[str, dict[str, int]]]:
    from segment_assets.streams import STREAMS

    section = Section(2, "Request count", method=(
        f"One full sync (`run_sync` of every stream; time-based streams read their latest partition) of the demo "
        f"workspace (seed 7, scale {scale:g}) against the simulator in its own process. Requests counted by the "
        "client (the `segment/api_requests` metadata in the sync summary) and by the simulator. " + __doc__.split(
            "\n\n", 1)[1].replace("\n", " ")
    ))
    minimum = minimum_requests(run, sim)
    by_op: dict[str, int] = run.served["by_operation"]
    excess_rows = []
    total_min = sum(m["minimum"] for m in minimum.values())
    mismatched = []
    for s in sorted(run.streams, key=lambda s: s["stream"]):
        m = minimum[s["stream"]]
        op = STREAMS[s["stream"]].operation_id
        if by_op.get(op, 0) != s["requests"]:
            mismatched.append(f"{s['stream']}: summary {s['requests']}, simulator {by_op.get(op, 0)}")
        if s["requests"] != m["minimum"]:
            excess_rows.append([s["stream"], op, str(m["sets"]), str(m["items"]), str(m["minimum"]),
                                str(s["requests"]), f"{s['requests'] - m['minimum']:+d}"])
    served = run.served["total"]
    section.figures += [
        Figure("requests made (client summary)", f"{run.requests:,}"),
        Figure("requests served (simulator)", f"{served:,}", "= client summary", served == run.requests),
        Figure("theoretical minimum Σ ceil(items / largest page), ≥ 1 per parameter set", f"{total_min:,}"),
        Figure("excess over the minimum", f"{run.requests - total_min:+,}", "0", run.requests == total_min),
    ]
    overview = Table(["streams", "parameter sets", "items served", "minimum requests", "requests made",
                      "streams at the minimum"])
    overview.rows.append([str(len(run.streams)), f"{sum(m['sets'] for m in minimum.values()):,}",
                          f"{sum(m['items'] for m in minimum.values()):,}", f"{total_min:,}", f"{run.requests:,}",
                          f"{len(run.streams) - len(excess_rows)} of {len(run.streams)}"])
    section.tables.append(overview)
    if excess_rows:
        table = Table(["stream", "operation", "parameter sets", "items", "minimum", "made", "excess"], excess_rows)
        section.tables.append(table)
    else:
        section.notes.append("Every stream made exactly its minimum number of requests.")
    if mismatched:
        section.notes.append("Client and simulator counts differ for: " + "; ".join(mismatched))
    return section, minimum
