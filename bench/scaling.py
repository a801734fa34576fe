"""6. Scaling: full syncs of the demo workspace at growing sizes.

`scale` multiplies the simulator's top-level collections (sources, destinations, users,
functions...); child collections keep their per-parent size, so they grow with their
parents, except tracking-plan rules, which grow with scale per plan (quadratic in total).
The catalog does not grow. Requests should grow linearly with the parents; time with
requests and rows.
"""

from __future__ import annotations

from bench.figures import Figure, Section, Spread, Table, mib
from bench.workspace_sync import SyncRun


def run(results: dict[float, list[SyncRun]]) -> Section:
    section = Section(6, "Scaling", method=(
        "Full sync (`run_sync` of every stream, latest partition of the time-based ones) of the simulator's demo "
        "workspace (seed 7) at each scale, simulator in its own process with 0 ms latency, a fresh DuckDB file "
        "per run, whole sync process timed. " + __doc__.split("\n\n", 1)[1].replace("\n", " ")
    ))
    scales = sorted(results)
    base = scales[0]
    table = Table(["scale", "runs", "rows", "requests", "whole process s", "inside assets s (Σ streams)",
                   "requests/s", "peak RSS MiB"])
    medians: dict[float, dict[str, float]] = {}
    for scale in scales:
        runs = results[scale]
        wall = Spread.of([r.wall_seconds for r in runs])
        inner = Spread.of([sum(s["seconds"] for s in r.streams) for r in runs])
        medians[scale] = {"rows": runs[0].rows, "requests": runs[0].requests, "seconds": wall.median,
                          "inner": inner.median}
        table.rows.append([f"×{scale:g}", str(len(runs)), f"{runs[0].rows:,}", f"{runs[0].requests:,}",
                           wall.fmt(".1f"), inner.fmt(".1f"),
                           Spread.of([r.requests / r.wall_seconds for r in runs]).fmt(",.0f"),
                           Spread.of([mib(r.peak_rss) for r in runs]).fmt(",.0f")])
    section.tables.append(table)
    if len(scales) > 1:
        growth = Table(["from → to", "size ×", "rows ×", "requests ×", "seconds × (whole process)",
                        "seconds × (inside assets)"])
        for scale in scales[1:]:
            m, b = medians[scale], medians[base]
            growth.rows.append([f"×{base:g} → ×{scale:g}", f"{scale / base:g}", f"{m['rows'] / b['rows']:.1f}",
                                f"{m['requests'] / b['requests']:.1f}", f"{m['seconds'] / b['seconds']:.1f}",
                                f"{m['inner'] / b['inner']:.1f}"])
            section.figures.append(Figure(
                f"growth ×{base:g} → ×{scale:g}: requests / rows / seconds",
                f"{m['requests'] / b['requests']:.1f}× / {m['rows'] / b['rows']:.1f}× / {m['seconds'] / b['seconds']:.1f}×",
                f"≤ {scale / base:g}× (linear)", m["requests"] / b["requests"] <= scale / base * 1.05
                and m["seconds"] / b["seconds"] <= scale / base * 1.05))
        section.tables.append(growth)
    return section
