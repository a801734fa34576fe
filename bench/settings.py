"""Sizes and repetitions of every benchmark (full and --quick presets), and the scratch directory."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.processes import REPO, Child, Run, SimulatorProcess, child_env, segment_assets_command


@dataclass
class Settings:
    quick: bool = False
    # 1, 2, 3, 8 (under the documented limits), 5 and 9: the demo workspace at this scale
    limits_scale: float = 1.0
    limits_latency_ms: float = 20.0
    # 2: concurrent syncs on one token, stopped (SIGTERM) after this long if still running
    shared_processes: int = 4
    shared_seconds: float = 180.0
    # 4: throughput on the configuration set
    throughput_scale: float = 20.0
    throughput_runs: int = 3
    throughput_profile: bool = False  # one more run of the sync and the engine each under py-spy
    # 5: the UI path
    ui_runs: int = 2
    startup_runs: int = 3
    # 10: launch latency of one asset through the UI
    launch_runs: int = 5
    # 6, 7: memory of the fan-out selection
    memory_scales: tuple[float, ...] = (1.0, 5.0, 20.0)
    # 8: SIGTERM once this many streams are written
    sigterm_after_streams: int = 20
    # 9: lake vs DuckDB
    lake_runs: int = 2

    @classmethod
    def quick_preset(cls) -> Settings:
        return cls(
            quick=True,
            limits_scale=0.25,
            shared_seconds=90.0,
            throughput_scale=5.0,
            throughput_runs=1,
            ui_runs=1,
            startup_runs=1,
            launch_runs=2,
            memory_scales=(1.0, 5.0),
            lake_runs=1,
        )


class Workdir:
    """A scratch directory for one `python -m bench`: DuckDB files, lakes, logs, Dagster homes."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else Path(tempfile.mkdtemp(prefix="segment-bench-"))
        self.path.mkdir(parents=True, exist_ok=True)
        self.logs = self.path / "logs"
        self.logs.mkdir(exist_ok=True)
        self._ids = itertools.count(1)

    def file(self, stem: str, suffix: str = "") -> Path:
        """A new path in the scratch directory (numbered, never reused)."""
        return self.path / f"{stem}-{next(self._ids)}{suffix}"

    def log(self, stem: str) -> Path:
        return self.logs / f"{stem}-{next(self._ids)}.log"

    def home(self, stem: str = "dagster-home") -> Path:
        """A fresh DAGSTER_HOME set up like `segment-assets sync` sets up its own, schemas created
        (their one-off creation is not what a sync costs), holding its own rate-limit store."""
        home = self.file(stem)
        home.mkdir()
        shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
        subprocess.run(
            [sys.executable, "-c", "from dagster import DagsterInstance; DagsterInstance.get().get_runs(limit=1)"],
            env=child_env(DAGSTER_HOME=str(home)),
            check=True,
            capture_output=True,
        )
        return home

    def simulator(self, **config: Any) -> SimulatorProcess:
        return SimulatorProcess(self.logs, **config)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def sync_env(
    sim: SimulatorProcess, home: Path, *, db: Path | None = None, lake: Path | None = None, pace: bool
) -> dict[str, str]:
    """What `segment-assets sync` reads: the token, the API URL, the target, pacing, the Dagster home."""
    extra = {
        "SEGMENT_API_TOKEN": sim.token,
        "SEGMENT_API_URL": sim.url,
        "DAGSTER_HOME": str(home),
        "SEGMENT_PACE_REQUESTS": "true" if pace else "false",
    }
    if lake is not None:
        extra.update(SEGMENT_TARGET="lake", SEGMENT_LAKE_URL=lake.absolute().as_uri())
    elif db is not None:
        extra["SEGMENT_DUCKDB_PATH"] = str(db)
    return child_env(**extra)


def start_sync(work: Workdir, env: dict[str, str], select: list[str] | None = None, label: str = "sync") -> Child:
    """`segment-assets sync [--select ...]` as a child process (the command users run)."""
    argv = [*segment_assets_command(), "sync", *(["--select", *select] if select else [])]
    return Child(argv, work.log(label), env)


def sync(work: Workdir, env: dict[str, str], select: list[str] | None = None, label: str = "sync") -> Run:
    return start_sync(work, env, select, label).reap().check()
