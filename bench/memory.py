"""6. Memory flat in requests, and 7. requests estimated before a stream starts vs made.

6: `segment-assets sync --select` the fan-out-heavy space-schema selection (spaces, their events,
entity paths and traits, the properties of each, and the sample values of each property and
trait: inline in the property lists, plus one request per property whose inline list is full),
pacing off, against an unlimited simulator at growing scales, each into a fresh DuckDB file; peak
RSS of the whole process (`wait4`) and the requests the simulator answered. Growth = peak at the largest scale less peak
at the smallest.

7: For the sample-value streams, after each of those syncs: the requests the product's planner
derives from the parent tables before the stream starts (`ParentKeys.inline(...).requested` +
`plan_requests`: one per parent row whose inline list is full, as the runner counts them), the share one run may
read (`cycles.budget_requests`: 30 minutes of the endpoint's limit), against the requests the
simulator answered for that operation and the stream's own count (`segment/api_requests`).
"""

from __future__ import annotations

import sys
import tracemalloc
from pathlib import Path
from typing import Any

from bench import instance
from bench.figures import Figure, Section, Table, mib, prose
from bench.processes import Run
from bench.processes import run as run_process
from bench.settings import Settings, Workdir, sync, sync_env

FANOUT = [
    "spaces",
    "space_events",
    "space_event_properties",
    "space_event_property_sample_values",
    "space_entity_paths",
    "space_entity_properties",
    "space_entity_property_sample_values",
    "space_traits",
    "space_trait_sample_values",
]
SAMPLES = ["space_event_property_sample_values", "space_entity_property_sample_values", "space_trait_sample_values"]
TARGET_GROWTH_MB = 60  # 10^6 bytes


def _estimates(db: Path) -> dict[str, dict[str, Any]]:
    from segment_assets.api.streams import STREAMS
    from segment_assets.engine.cycles import DEFAULT_BUDGET_MINUTES, budget_requests
    from segment_assets.engine.reading import ParentKeys, plan_requests
    from segment_assets.storage import DuckDBTarget

    target = DuckDBTarget(db)
    try:
        out = {}
        for name in SAMPLES:
            stream = STREAMS[name]
            planned = len(plan_requests(stream, ParentKeys(target).inline(stream).requested))
            budget = budget_requests(stream, DEFAULT_BUDGET_MINUTES)
            out[name] = {"planned": planned, "budget": budget, "this_run": min(planned, budget) if budget else planned}
        return out
    finally:
        target.close()


def run(settings: Settings, work: Workdir, profile: bool = False) -> list[Section]:
    from segment_assets.api.streams import STREAMS

    home = work.home("memory-home")
    results: dict[float, dict[str, Any]] = {}
    for scale in settings.memory_scales:
        with work.simulator(seed=7, scale=scale) as sim:
            db = work.file(f"memory-x{scale:g}", ".duckdb")
            before = instance.run_ids(home)
            sim.reset()
            r = sync(work, sync_env(sim, home, db=db, pace=False), FANOUT, label=f"memory-x{scale:g}")
            events = sim.events()
            md = instance.streams(instance.runs(home, exclude=before))
            results[scale] = {
                "run": r,
                "requests": len(events),
                "by_op": _by_op(events),
                "md": md,
                "estimates": _estimates(db),
            }
            db.unlink(missing_ok=True)
        print(
            f"  scale {scale:g}: {results[scale]['requests']:,} requests, peak RSS {mib(r.peak_rss):,.0f} MiB",
            flush=True,
        )
    low, high = min(results), max(results)
    growth = (results[high]["run"].peak_rss - results[low]["run"].peak_rss) / 1e6
    six = Section(6, "Memory flat in requests", method=prose(__doc__).split("\n\n")[0][3:])
    six.tables.append(
        Table(
            ["scale", "requests", "rows", "peak RSS MiB", "whole process s"],
            [
                [
                    f"×{x:g}",
                    f"{res['requests']:,}",
                    f"{sum(int(m.get('dagster/row_count', 0) or 0) for m in res['md'].values()):,}",
                    f"{mib(res['run'].peak_rss):,.0f}",
                    f"{res['run'].wall_seconds:.1f}",
                ]
                for x, res in sorted(results.items())
            ],
        )
    )
    six.figures.append(
        Figure(
            f"peak RSS growth ×{low:g} → ×{high:g} ({results[low]['requests']:,} → {results[high]['requests']:,} "
            "requests)",
            f"{growth:+.0f} MB",
            f"≤ {TARGET_GROWTH_MB} MB",
            growth <= TARGET_GROWTH_MB,
        )
    )
    if len(results) == 1:
        six.notes.append("Only one scale was run: no growth to speak of.")
    if growth > TARGET_GROWTH_MB or profile:
        six.notes += _profile(work, settings, low, high)
    seven = Section(
        7, "Requests estimated from the parent tables vs made (sample-value streams)", method=(prose(__doc__, 2)[3:])
    )
    table = Table(
        [
            "scale",
            "stream",
            "estimated (one per parent)",
            "run budget",
            "this run's share",
            "made (simulator)",
            "made (stream metadata)",
            "cycle parents done / total",
        ]
    )
    exact = True
    for x, res in sorted(results.items()):
        for name in SAMPLES:
            e = res["estimates"][name]
            made = res["by_op"].get(STREAMS[name].operation_id, 0)
            md = res["md"].get(name, {})
            exact &= made == e["this_run"]
            cycle = (
                f"{md['segment/cycle_parents_done']} / {md['segment/cycle_parents_total']}"
                if "segment/cycle_parents_total" in md
                else "no cycle"
            )
            table.rows.append(
                [
                    f"×{x:g}",
                    name,
                    f"{e['planned']:,}",
                    f"{e['budget']:,}" if e["budget"] else "none",
                    f"{e['this_run']:,}",
                    f"{made:,}",
                    str(md.get("segment/api_requests", "—")),
                    cycle,
                ]
            )
    seven.tables.append(table)
    seven.figures.append(
        Figure(
            "sample-value streams: requests made = this run's share of the estimate",
            "every stream, every scale" if exact else "differs (see the table)",
            "equal",
            exact,
        )
    )
    seven.notes.append(
        "A sample-value endpoint is unpaginated, so a parent whose inline list is full costs exactly one request; "
        "a difference would be retries, parents gone (404) or a plan the estimate does not see."
    )
    return [six, seven]


def _by_op(events: list[tuple[float, str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for _, op, status in events:
        if status != 429:
            out[op] = out.get(op, 0) + 1
    return out


def _profile(work: Workdir, settings: Settings, low: float, high: float) -> list[str]:
    """Peak tracemalloc snapshots of the smallest and largest run, compared by line."""
    home = work.home("memory-profile-home")
    snaps: dict[float, tuple[Path, Run]] = {}
    for scale in (low, high):
        with work.simulator(seed=7, scale=scale) as sim:
            db = work.file(f"memory-profile-x{scale:g}", ".duckdb")
            snap = work.file(f"memory-profile-x{scale:g}", ".tracemalloc")
            r = run_process(
                [sys.executable, "-m", "bench.tracemalloc_job", "--snapshot", str(snap), *FANOUT],
                work.log(f"memory-profile-x{scale:g}"),
                sync_env(sim, home, db=db, pace=False),
            ).check()
            snaps[scale] = (snap, r)
            db.unlink(missing_ok=True)
    a, b = (tracemalloc.Snapshot.load(str(snaps[x][0])) for x in (low, high))
    ignore = [tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"), tracemalloc.Filter(False, "<unknown>")]
    diff = b.filter_traces(ignore).compare_to(a.filter_traces(ignore), "lineno")[:10]
    ra, rb = snaps[low][1].result, snaps[high][1].result
    notes = [
        f"Profile (`bench/tracemalloc_job.py`, the same syncs at ×{low:g} and ×{high:g}): traced Python peak "
        f"{mib(ra['traced_peak']):,.0f} → {mib(rb['traced_peak']):,.0f} MiB, RSS peak under tracing "
        f"{mib(ra['rss_peak']):,.0f} → {mib(rb['rss_peak']):,.0f} MiB (the rest of the growth is native: "
        "DuckDB, Arrow, SQLite). Top allocation sites by growth between the two peaks:"
    ]
    notes += [
        f"`{d.traceback[0].filename.split('site-packages/')[-1]}:{d.traceback[0].lineno}` "
        f"{d.size_diff / 2**20:+.1f} MiB ({d.count_diff:+,} blocks)"
        for d in diff
    ]
    return notes
