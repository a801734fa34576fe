"""Child processes: the simulator (its own process, so it never shares a GIL with what is
measured) and the timed jobs (a sync, a dlt pipeline), each reporting one JSON result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULT_PREFIX = "BENCH_RESULT "
REPO = Path(__file__).resolve().parent.parent


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    env.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    env.update(extra)
    return env


class SimulatorProcess:
    """`Simulator(**config)` served from `python -m bench.simserver`; counters on request."""

    def __init__(self, log_dir: Path, **config: Any) -> None:
        self.config = config
        self.log = open(log_dir / f"simulator-{int(time.time() * 1000)}.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.simserver", json.dumps(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, cwd=REPO, env=child_env(),
        )
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"simulator did not start; see {self.log.name}")
        hello = json.loads(line)
        self.url: str = hello["url"]
        self.token: str = hello["token"]

    def _ask(self, command: dict[str, Any]) -> Any:
        self.proc.stdin.write(json.dumps(command) + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        return json.loads(self.proc.stdout.readline())  # type: ignore[union-attr]

    def stats(self, events: bool = False) -> dict[str, Any]:
        return self._ask({"cmd": "stats", "events": events})

    def reset(self) -> None:
        self._ask({"cmd": "reset"})

    def drain(self, operation_id: str) -> int:
        return self._ask({"cmd": "drain", "operation_id": operation_id})["spent"]

    def item_counts(self, requests: list[tuple[str, dict[str, str], dict[str, Any]]]) -> list[int]:
        return self._ask({"cmd": "items", "requests": requests})

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._ask({"cmd": "quit"})
            except (BrokenPipeError, ValueError):
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def __enter__(self) -> SimulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class JobResult:
    wall_seconds: float  # the whole child process, interpreter start to exit
    result: dict[str, Any]  # what the child reported


def run_job(module: str, args: list[str], log: Path, env: dict[str, str] | None = None) -> JobResult:
    """Run `python -m <module> <args>`, timing the whole process; its last result line is the result."""
    with open(log, "w") as err:
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", module, *args], stdout=subprocess.PIPE, stderr=err, text=True,
                              cwd=REPO, env=env or child_env())
        wall = time.perf_counter() - started
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"{module} {' '.join(args)} failed (exit {proc.returncode}); log {log}:\n{tail}")
    return JobResult(wall, json.loads(lines[-1][len(RESULT_PREFIX):]))


def report(result: dict[str, Any]) -> None:
    """Called by a child job: print its result line (stdout is otherwise unused)."""
    print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)


def peak_rss() -> dict[str, int]:
    """Peak resident set size in bytes of this process, and of the largest child it waited for."""
    import resource

    return {"self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}
