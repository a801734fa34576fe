"""1. Full sync under the documented limits, and 3. the re-sync of the unchanged workspace.

The simulator enforces the documented per-endpoint limits (`rate_limits="realistic"`: a token
bucket of capacity N refilled N per minute per operation, and 1200/min per token) with 20 ms
latency; `segment-assets sync` runs as a child process with pacing on and the default `file`
rate-limit store in a scratch DAGSTER_HOME, exactly as a user would run it, into a fresh DuckDB
file. The re-sync is the same command again right after, into the same file (the store still
holds the first sync's recent starts, as it would in production).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from bench import instance, limits, request_count
from bench.figures import Figure, Section, Table, prose
from bench.settings import Settings, Workdir, sync, sync_env

TARGET_RATIO = 1.2
QUIET_TICKS = 5


def _share_429(events: list[tuple[float, str, int]]) -> float:
    return sum(1 for *_, s in events if s == 429) / len(events) if events else 0.0


def _changes(streams: dict[str, dict[str, Any]]) -> tuple[int, list[str]]:
    """Change rows written by reload-and-compare and watermark streams, and which streams wrote them."""
    rows, where = 0, []
    for name, md in streams.items():
        n = int(md.get("segment/change_rows", 0) or 0)
        if n and "segment/window" not in md:  # a partition replaces its window: no change rows to speak of
            rows += n
            where.append(
                f"{name} (+{md.get('segment/inserted', 0)} ~{md.get('segment/updated', 0)} "
                f"-{md.get('segment/deleted', 0)})"
            )
    return rows, where


def run(settings: Settings, work: Workdir, resync: bool = True) -> list[Section]:
    home = work.home("limits-home")
    db = work.file("limits", ".duckdb")
    config = {
        "seed": 7,
        "scale": settings.limits_scale,
        "latency_ms": settings.limits_latency_ms,
        "rate_limits": "realistic",
    }
    with work.simulator(**config) as sim:
        env = sync_env(sim, home, db=db, pace=True)
        sim.reset()
        first = sync(work, env, label="limits-first")
        events1 = sim.events()
        runs1 = instance.runs(home)
        streams1 = instance.streams(runs1)
        minimum = request_count.minimum_requests(db, sorted(streams1), sim)
        second = events2 = streams2 = ticks = None
        if resync:
            before = {r.run_id for r in runs1}
            sim.reset()
            second = sync(work, env, label="limits-second")
            events2 = sim.events()
            streams2 = instance.streams(instance.runs(home, exclude=before))
            ticks = _sensor_ticks(sim, QUIET_TICKS)
    sections = [_first(settings, first, events1, streams1, minimum)]
    if second is not None and events2 is not None and streams2 is not None:
        sections.append(_second(settings, first, events1, second, events2, streams2, ticks))
    db.unlink(missing_ok=True)
    return sections


def _first(
    settings: Settings,
    first: Any,
    events: list[tuple[float, str, int]],
    streams: dict[str, dict[str, Any]],
    minimum: dict[str, dict[str, int]],
) -> Section:
    needed = limits.needed(events)
    bound = limits.rate_bound(needed)
    wall = first.wall_seconds
    ratio = wall / bound.seconds if bound.seconds else float("inf")
    share = _share_429(events)
    section = Section(
        1,
        "Full sync under the documented limits",
        method=(
            prose(__doc__)
            + f" Demo workspace: seed 7, scale {settings.limits_scale:g}. Wall time = the whole `segment-assets sync` "
            "process (interpreter start to exit: the configuration run, then yesterday's daily partition, then the "
            "current month). Bound = "
            + prose(limits.__doc__)
            + " Requests per operation are the requests the simulator answered (429s excluded: they are not needed)."
        ),
    )
    first_t = min(t for t, *_ in events)
    last_t = max(t for t, *_ in events)
    section.figures += [
        Figure("rate-limit bound of the full sync", f"{bound.seconds / 60:.0f} min ({bound.seconds:.0f} s)"),
        Figure("full sync wall time (whole process)", f"{wall:.0f} s"),
        Figure("wall / bound", f"{ratio:.2f}×", f"≤ {TARGET_RATIO}×", ratio <= TARGET_RATIO),
        Figure(
            "requests answered 429",
            f"{100 * share:.2f} % ({sum(1 for *_, s in events if s == 429)} of {len(events)})",
            "< 1 %",
            share < 0.01,
        ),
    ]
    made = sum(needed.values())
    floor = sum(m["minimum"] for m in minimum.values())
    section.figures.append(
        Figure(
            "requests made over the fewest that read the same items",
            f"{made:,} vs {floor:,} ({made - floor:+,})",
            "+0",
            made <= floor,
            note=prose(request_count.__doc__).replace("\n", " "),
        )
    )
    chain = Table(
        ["bound made of (critical chain)", "operation", "requests", "limit /min", "own minimum min"],
        [[s, op, str(n), f"{lim:g}" if lim else "none", str(m)] for s, op, n, lim, m in bound.chain],
    )
    section.tables.append(chain)
    slow = Table(
        ["slowest limited endpoints", "operation", "requests", "limit /min", "own minimum min"],
        [[s, op, str(n), f"{lim:g}", str(m)] for s, op, n, lim, m in bound.per_operation[:6]],
    )
    section.tables.append(slow)
    waits = sorted(
        ((md.get("segment/rate_limit_wait_seconds", 0.0) or 0.0, name, md) for name, md in streams.items()),
        key=lambda r: -r[0],
    )[:5]
    section.tables.append(
        Table(
            [
                "top 5 endpoints by rate-limit wait",
                "stream",
                "wait s (Σ over its threads)",
                "requests",
                "429s",
                "stream seconds",
            ],
            [
                [
                    md.get("segment/operation_id", "?"),
                    name,
                    f"{w:.1f}",
                    str(md.get("segment/api_requests", 0)),
                    str(md.get("segment/rate_limited_429", 0)),
                    f"{md.get('segment/seconds', 0):.1f}",
                ]
                for w, name, md in waits
            ],
        )
    )
    waits_to_start = limits.start_waits(events)
    if waits_to_start:
        child, parent, longest = waits_to_start[0]
        section.figures.append(
            Figure(
                "longest from a parent's last request to its child's first (same run)",
                f"{max(0.0, longest):.1f} s ({child} after {parent})",
                "< 5 s",
                longest < 5,
                note="The critical path never waits for a slot: a stream paced by its endpoint's own limit holds "
                "none, and a freed slot goes to the longest remaining chain of rate-limited work.",
            )
        )
        section.tables.append(
            Table(
                ["slowest starts", "after parent", "s from the parent's last request to its first"],
                [[c, p, f"{max(0.0, w):.1f}"] for c, p, w in waits_to_start[:5]],
            )
        )
    section.notes += [
        f"Requests: {len(events):,} seen by the simulator, the first {first_t - first.started:.1f} s after the process "
        f"started and the last {first.ended - last_t:.1f} s before it exited.",
        f"The per-token limit ({limits.GLOBAL_PER_MINUTE}/min) alone would need {bound.global_minutes} min for "
        f"{made:,} requests.",
        "Wait seconds come from each stream's materialization metadata (`segment/rate_limit_wait_seconds`); a "
        "fan-out waits on several threads at once, so a stream's sum can exceed its own duration.",
        "Caveat: the simulator's buckets refill continuously (N per minute), the real API's windows may differ; "
        "a client within 'at most N starts in any 60 s' fits both. The ratio is measured on the demo workspace, "
        "whose bound is short; the start-up and the daily and monthly runs weigh less in a longer sync.",
        "The bound assumes the slowest chain starts at once; the sync first reads the parents (unlimited "
        "endpoints, a few seconds) and ends with the daily and monthly runs, which the ratio includes.",
    ]
    return section


def _second(
    settings: Settings,
    first: Any,
    events1: list[tuple[float, str, int]],
    second: Any,
    events2: list[tuple[float, str, int]],
    streams2: dict[str, dict[str, Any]],
    ticks: tuple[list[int], str] | None,
) -> Section:
    section = Section(
        3,
        "Re-sync of an unchanged workspace under the limits",
        method=(
            "Right after benchmark 1's sync, the same `segment-assets sync` again (same simulator, same DuckDB file, "
            "same Dagster home and rate-limit store, pacing on). Configuration streams reload and compare (no change "
            "rows expected: the simulator's configuration is identical), watermark streams stop paging at the stored "
            "watermark, partitioned streams replace their window."
        ),
    )
    n1, n2 = len(events1), len(events2)
    bound2 = limits.rate_bound(limits.needed(events2))
    changes, where = _changes(streams2)
    section.figures += [
        Figure(
            "re-sync wall time vs the first sync",
            f"{second.wall_seconds:.0f} s vs {first.wall_seconds:.0f} s "
            f"({second.wall_seconds / first.wall_seconds:.2f}×)",
        ),
        Figure("re-sync requests vs the first sync", f"{n2:,} vs {n1:,} ({n2 - n1:+,})"),
        Figure(
            "re-sync requests answered 429", f"{100 * _share_429(events2):.2f} %", "< 1 %", _share_429(events2) < 0.01
        ),
        Figure("change rows written by the re-sync", f"{changes:,}", "0", changes == 0),
    ]
    ops1, ops2 = limits.needed(events1), limits.needed(events2)
    fewer = Counter({op: ops1[op] - ops2.get(op, 0) for op in ops1 if ops1[op] > ops2.get(op, 0)})
    if fewer:
        section.tables.append(
            Table(
                ["operation with fewer requests", "first sync", "re-sync"],
                [[op, str(ops1[op]), str(ops2.get(op, 0))] for op, _ in fewer.most_common()],
            )
        )
    section.notes.append(
        f"Rate-limit bound of the re-sync's own requests: {bound2.seconds / 60:.0f} min "
        f"(chain: {' → '.join(r[0] for r in bound2.chain)}); it starts with the first sync's "
        "starts still in the store's sliding window, so the slowest endpoint may wait up to a "
        "minute more before its first request."
    )
    if where:
        section.notes.append("Change rows on an unchanged workspace: " + "; ".join(where))
    if ticks:
        per_tick, outcome = ticks
        section.figures.append(
            Figure(
                "requests per audit-trail sensor tick, unchanged workspace",
                " / ".join(map(str, per_tick)) + f" ({len(per_tick)} ticks)",
                "1",
                max(per_tick) <= 1,
            )
        )
        section.notes.append(
            f"Audit-trail sensor (`segment_assets.orchestration.sensors`), evaluated in-process against the "
            f"same simulator: a first tick sets its cursor, then {len(per_tick)} quiet ticks, each "
            f"tick's requests counted by the simulator; last tick: {outcome}."
        )
    return section


def _sensor_ticks(sim: Any, ticks: int) -> tuple[list[int], str]:
    """Requests per quiet tick of the audit-trail sensor (the first tick only sets its cursor)."""
    from dagster import DagsterInstance, SensorResult, build_sensor_context

    from segment_assets.orchestration.connections import ZERO_CONFIG
    from segment_assets.orchestration.resources import SegmentResource
    from segment_assets.orchestration.sensors import build_audit_sensor
    from segment_assets.orchestration.workspaces import Workspace

    sensor = build_audit_sensor(Workspace(ZERO_CONFIG))
    segment = SegmentResource(api_token=sim.token, api_url=sim.url, pace_requests=False, rate_limit_store="memory")
    cursor: str | None = None
    per_tick: list[int] = []
    outcome = ""
    with DagsterInstance.ephemeral() as ephemeral:
        for tick in range(ticks + 1):
            sim.reset()
            context = build_sensor_context(instance=ephemeral, cursor=cursor, resources={"segment": segment})
            result = sensor(context)
            if isinstance(result, SensorResult) and result.cursor:
                cursor = result.cursor
            if tick:
                per_tick.append(sim.stats()["total"])
                runs = len(result.run_requests or []) if isinstance(result, SensorResult) else 0
                skip = result.skip_reason if isinstance(result, SensorResult) else result
                outcome = f"{runs} run request(s); skip reason: {getattr(skip, 'skip_message', skip)}"
    return per_tick, outcome
