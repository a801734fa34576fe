"""Sizes and repetitions of every benchmark (full and --quick presets), and the scratch directory."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.processes import REPO, JobResult, SimulatorProcess, child_env, run_job


@dataclass
class Settings:
    quick: bool = False
    # 1. throughput: rows actually loaded (the simulator serves a little more, see throughput.py)
    throughput_rows: int = 200_000
    throughput_runs: int = 3
    dlt_default_runs: int = 1  # dlt with its default loader file format: the slowest job here
    dlt_parquet_runs: int = 3
    # 3. rate limits
    rate_seconds: float = 30.0
    rate_runs: int = 3
    rate_scenarios: bool = True  # also per-endpoint, drained-budget and shared-token runs (1 run each)
    # 4. memory
    memory_counts: tuple[int, ...] = (100_000, 1_000_000)
    memory_runs: dict[int, int] = field(default_factory=lambda: {100_000: 3, 1_000_000: 1})
    # 2., 5., 6. full syncs of the demo workspace
    scales: tuple[float, ...] = (1, 10, 100)
    scale_runs: dict[float, int] = field(default_factory=lambda: {1: 3, 10: 1, 100: 1})
    cdc_streams: tuple[str, ...] | None = None  # None: every reload-and-compare stream

    @classmethod
    def quick_preset(cls) -> Settings:
        return cls(quick=True, throughput_rows=20_000, throughput_runs=1, dlt_default_runs=1, dlt_parquet_runs=1,
                   rate_seconds=10.0, rate_runs=1, rate_scenarios=False, memory_counts=(20_000, 100_000),
                   memory_runs={20_000: 1, 100_000: 1}, scales=(1,), scale_runs={1: 1},
                   cdc_streams=("sources", "destinations", "users", "labels"))

    def runs_for_memory(self, count: int) -> int:
        return self.memory_runs.get(count, 1)

    def runs_for_scale(self, scale: float) -> int:
        return self.scale_runs.get(scale, 1)


class Workdir:
    """A scratch directory for one `python -m bench`: DuckDB files, logs, one Dagster home."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else Path(tempfile.mkdtemp(prefix="segment-bench-"))
        self.path.mkdir(parents=True, exist_ok=True)
        self.logs = self.path / "logs"
        self.logs.mkdir(exist_ok=True)
        # One Dagster home for every sync, set up like `segment-assets sync` sets up its own: a
        # fresh instance per job would add SQLite schema creation to every timed run.
        self.dagster_home = self.path / "dagster_home"
        self.dagster_home.mkdir(exist_ok=True)
        shutil.copy(REPO / "dagster.yaml", self.dagster_home / "dagster.yaml")
        subprocess.run([sys.executable, "-c", "from dagster import DagsterInstance; "
                        "DagsterInstance.get().get_runs(limit=1)"], env=self.env(), check=True, capture_output=True)
        self._ids = itertools.count(1)

    def file(self, stem: str, suffix: str) -> Path:
        return self.path / f"{stem}-{next(self._ids)}{suffix}"

    def simulator(self, **config: Any) -> SimulatorProcess:
        return SimulatorProcess(self.logs, **config)

    def env(self) -> dict[str, str]:
        return child_env(DAGSTER_HOME=str(self.dagster_home))

    def sync(self, sim: SimulatorProcess, db: Path, *args: str) -> JobResult:
        """`bench.sync_job` against `sim` into `db` (see sync_job.py for the arguments)."""
        return run_job("bench.sync_job", ["--url", sim.url, "--token", sim.token, "--db", str(db), *args],
                       self.logs / f"{db.stem}.log", self.env())

    def dlt(self, sim: SimulatorProcess, db: Path, *args: str) -> JobResult:
        return run_job("bench.dlt_job", ["--url", sim.url, "--token", sim.token, "--db", str(db),
                                         "--pipelines-dir", str(self.path / f"{db.stem}-pipelines"), *args],
                       self.logs / f"{db.stem}.log", self.env())

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
