"""5. Quiet-workspace change capture: what a run costs when nothing changed.

Reload and compare: the configuration streams are synced again into the tables of the
request-count sync, with the simulator unchanged. Each stream should make exactly the
requests of its read (its minimum from benchmark 2) and write no change rows.
Audit-trail sensor: `segment_assets.automation`'s sensor evaluated tick after tick (one
tick to set its cursor, then quiet ticks), each tick's requests counted by the simulator.
"""

from __future__ import annotations

from bench.figures import Figure, Section, Spread, Table
from bench.processes import SimulatorProcess
from bench.settings import Workdir
from bench.workspace_sync import SyncRun, full_sync

QUIET_TICKS = 5


def _config_streams(names: tuple[str, ...] | None) -> list[str]:
    from segment_assets.streams import materialized_streams

    config = [s.name for s in materialized_streams() if s.windowing is None]
    return [n for n in config if n in names] if names else config


def _sensor_ticks(sim: SimulatorProcess, ticks: int) -> tuple[list[int], str]:
    """Requests per quiet tick of the audit-trail sensor; raises ImportError/AttributeError if it is not there."""
    from dagster import DagsterInstance, SensorResult, build_sensor_context

    from segment_assets.automation import build_audit_sensor
    from segment_assets.resources import SegmentResource

    sensor = build_audit_sensor()
    segment = SegmentResource(api_token=sim.token, api_url=sim.url, pace_requests=False)
    cursor: str | None = None
    per_tick: list[int] = []
    outcome = ""
    with DagsterInstance.ephemeral() as instance:
        for tick in range(ticks + 1):
            sim.reset()
            context = build_sensor_context(instance=instance, cursor=cursor, resources={"segment": segment})
            result = sensor(context)
            if isinstance(result, SensorResult) and result.cursor:
                cursor = result.cursor
            if tick:  # tick 0 only sets the cursor
                per_tick.append(sim.stats()["total"])
                runs = len(result.run_requests or []) if isinstance(result, SensorResult) else 0
                skip = result.skip_reason if isinstance(result, SensorResult) else result
                outcome = f"{runs} run request(s); skip reason: {getattr(skip, 'skip_message', skip)}"
    return per_tick, outcome


def run(work: Workdir, sim: SimulatorProcess, first: SyncRun, minimum: dict[str, dict[str, int]],
        names: tuple[str, ...] | None) -> Section:
    section = Section(5, "Quiet-workspace change capture", method=__doc__.split("\n\n", 1)[1].replace("\n", " "))
    streams = _config_streams(names)
    rerun = full_sync(work, sim, db=first.db, select=streams)
    before = {s["stream"]: s for s in first.streams}
    table = Table(["streams re-synced", "requests (first sync)", "requests (quiet re-sync)", "their minimum",
                   "change rows written", "streams over their read"])
    over = [s["stream"] for s in rerun.streams if s["requests"] > minimum[s["stream"]]["minimum"]]
    changes = [(s["stream"], s["changes"]) for s in rerun.streams if s["changes"] != "+0 ~0 -0"]
    first_requests = sum(before[s["stream"]]["requests"] for s in rerun.streams)
    floor = sum(minimum[s["stream"]]["minimum"] for s in rerun.streams)
    table.rows.append([str(len(rerun.streams)), f"{first_requests:,}", f"{rerun.requests:,}", f"{floor:,}",
                       str(len(changes)) + (" streams" if changes else ""), ", ".join(over) or "none"])
    section.tables.append(table)
    section.figures.append(Figure(
        "requests per quiet reload-and-compare run (all config streams together)",
        f"{rerun.requests:,} (read minimum {floor:,})", "= the read itself", rerun.requests <= floor))
    section.figures.append(Figure("change rows written by the quiet re-sync", str(len(changes)), "0", not changes))
    if changes:
        section.notes.append("Changes reported on an unchanged workspace: "
                             + "; ".join(f"{n} {c}" for n, c in changes))
    smaller = [s["stream"] for s in rerun.streams if s["requests"] < before[s["stream"]]["requests"]]
    if smaller:
        section.notes.append("Fewer requests than the first sync (watermark streams stop paging below the stored "
                             f"watermark): {', '.join(smaller)}.")
    try:
        per_tick, outcome = _sensor_ticks(sim, QUIET_TICKS)
    except (ImportError, AttributeError) as exc:
        section.figures.append(Figure("requests per audit-trail sensor tick, quiet workspace", "pending", "1", None,
                                      f"the sensor is not importable yet ({exc})"))
    else:
        spread = Spread.of(per_tick)
        section.figures.append(Figure("requests per audit-trail sensor tick, quiet workspace",
                                      spread.fmt(".0f").replace("runs", "ticks"), "1", spread.max <= 1))
        section.notes.append(f"Sensor: {QUIET_TICKS} quiet ticks after the first; last tick: {outcome}.")
    return section
