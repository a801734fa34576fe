"""Full syncs of a simulated workspace (`run_sync` of every stream, in a child process),
shared by the request-count, change-capture and scaling benchmarks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.processes import SimulatorProcess
from bench.settings import Workdir


@dataclass
class SyncRun:
    db: Path
    wall_seconds: float
    sync_seconds: float
    peak_rss: int
    streams: list[dict[str, Any]]  # run_sync's summary rows
    served: dict[str, Any]  # the simulator's counters for this run alone
    rows: int = field(init=False)
    requests: int = field(init=False)

    def __post_init__(self) -> None:
        self.rows = sum(s["rows"] for s in self.streams)
        self.requests = sum(s["requests"] for s in self.streams)


def full_sync(work: Workdir, sim: SimulatorProcess, db: Path | None = None, select: list[str] | None = None,
              label: str = "sync") -> SyncRun:
    """One `run_sync` into `db` (a fresh file unless given); the simulator's counters are reset first."""
    db = db or work.file(label, ".duckdb")
    sim.reset()
    job = work.sync(sim, db, *(["--select", *select] if select else []))
    return SyncRun(db, job.wall_seconds, job.result["sync_seconds"], job.result["peak_rss"]["self"],
                   job.result["rows"], sim.stats())
