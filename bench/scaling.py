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
        pairs = list(zip(scales, scales[1:]))
        if len(scales) > 2:
            pairs.append((scales[0], scales[-1]))
        for a, b in pairs:
            m, n = medians[b], medians[a]
            factor = b / a
            growth.rows.append([f"×{a:g} → ×{b:g}", f"{factor:g}", f"{m['rows'] / n['rows']:.1f}",
                                f"{m['requests'] / n['requests']:.1f}", f"{m['seconds'] / n['seconds']:.1f}",
                                f"{m['inner'] / n['inner']:.1f}"])
            section.figures.append(Figure(
                f"growth ×{a:g} → ×{b:g}: requests / rows / seconds",
                f"{m['requests'] / n['requests']:.1f}× / {m['rows'] / n['rows']:.1f}× / "
                f"{m['seconds'] / n['seconds']:.1f}×",
                f"requests and seconds ≤ {factor:g}× (linear)",
                m["requests"] / n["requests"] <= factor * 1.05 and m["seconds"] / n["seconds"] <= factor * 1.05))
        section.tables.append(growth)
        section.notes.append("Rows grow faster than the scale because tracking-plan rules grow with it per plan "
                             "(rules per plan × plans); requests for them grow linearly (one chain per plan).")
        top = scales[-1]
        biggest = max(results[top][0].streams, key=lambda r: r["rows"])
        section.notes.append(f"Peak RSS at ×{top:g}: {mib(results[top][0].peak_rss):,.0f} MiB; its largest table is "
                             f"{biggest['stream']} ({biggest['rows']:,} rows, {biggest['requests']:,} requests).")
        section.notes.append(f"Seconds grow less than linearly from a small scale because a sync has a fixed cost: "
                             f"at ×{scales[0]:g}, {medians[scales[0]]['inner']:.0f} s of "
                             f"{medians[scales[0]]['seconds']:.0f} s are inside the assets, the rest is start-up "
                             f"and Dagster's per-asset overhead (run, events, checks), against "
                             f"{medians[top]['inner']:.0f} of {medians[top]['seconds']:.0f} s at ×{top:g}.")
    return section
