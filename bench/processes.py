"""Child processes: the simulator (its own process, so it never shares a GIL with what is
measured), the `segment-assets` command and the comparison jobs, each timed from its start to
its exit with its own peak RSS (from `wait4`, the kernel's figure for that one process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULT_PREFIX = "BENCH_RESULT "
REPO = Path(__file__).resolve().parent.parent


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child: this one without any SEGMENT_* setting of the user's (a
    connections file or token would change what is measured), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGMENT_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    env.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    env.update(extra)
    return env


def segment_assets_command() -> list[str]:
    """`segment-assets` as installed next to this interpreter (the console script users run)."""
    script = Path(sys.executable).parent / "segment-assets"
    return [str(script)] if script.exists() else [sys.executable, "-m", "segment_assets"]


class SimulatorProcess:
    """`Simulator(**config)` served from `python -m bench.simserver`; counters on request."""

    def __init__(self, log_dir: Path, **config: Any) -> None:
        self.config = config
        self.log = open(log_dir / f"simulator-{int(time.time() * 1000)}.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.simserver", json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            cwd=REPO,
            env=child_env(),
        )
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"simulator did not start; see {self.log.name}")
        hello = json.loads(line)
        self.url: str = hello["url"]
        self.token: str = hello["token"]
        self._lock = threading.Lock()

    def _ask(self, command: dict[str, Any]) -> Any:
        with self._lock:
            self.proc.stdin.write(json.dumps(command) + "\n")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
            return json.loads(self.proc.stdout.readline())  # type: ignore[union-attr]

    def stats(self, events: bool = False) -> dict[str, Any]:
        """Counters since the last reset; with `events`, every answered request as
        (CLOCK_MONOTONIC seconds, operationId, status), comparable with this process's clock."""
        return self._ask({"cmd": "stats", "events": events})

    def events(self) -> list[tuple[float, str, int]]:
        return [tuple(e) for e in self.stats(events=True)["events"]]  # type: ignore[misc]

    def reset(self) -> None:
        self._ask({"cmd": "reset"})

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
class Run:
    """One child process, from just before its start to its exit."""

    argv: list[str]
    returncode: int
    started: float  # time.monotonic() just before the process was created
    ended: float  # time.monotonic() when it was reaped
    peak_rss: int  # bytes: ru_maxrss of this process (and of any child it waited for)
    stdout: str
    log: Path
    signalled_at: float | None = None  # when SIGTERM was sent, if it was
    started_epoch: float = 0.0  # time.time() at the start, to compare with Dagster's run timestamps
    result: dict[str, Any] = field(default_factory=dict)  # a job's BENCH_RESULT line
    cpu_seconds: float = 0.0  # user + system CPU time of this process (and of any child it waited for)

    @property
    def wall_seconds(self) -> float:
        return self.ended - self.started

    def check(self) -> Run:
        if self.returncode != 0:
            tail = self.log.read_text()[-3000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(self.argv[:4])} ... failed (exit {self.returncode}); log {self.log}:\n"
                f"{self.stdout[-2000:]}\n{tail}"
            )
        return self


class Child:
    """A child process whose stdout is read line by line (callers can wait for a line) and
    whose exit is reaped with `wait4`, so its own peak RSS is known."""

    def __init__(
        self,
        argv: list[str],
        log: Path,
        env: dict[str, str] | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        self.argv = argv
        self.log = log
        self._err = open(log, "w")
        self.lines: list[str] = []
        self._on_line = on_line
        self._changed = threading.Condition()
        self.signalled_at: float | None = None
        self.started_epoch = time.time()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=self._err, text=True, cwd=REPO, env=env or child_env()
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
            if self._on_line:
                self._on_line(line)
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float) -> bool:
        """Wait until `predicate(lines so far)` holds, the process ends, or `timeout` passes."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or not self._reader.is_alive():
                    return predicate(self.lines)
                self._changed.wait(min(left, 1.0))
        return True

    def terminate(self) -> None:
        # os.kill, not Popen.send_signal: that one may reap the process (poll) before wait4 can.
        if self.proc.returncode is None:
            self.signalled_at = time.monotonic()
            os.kill(self.proc.pid, signal.SIGTERM)

    def reap(self, timeout: float | None = None) -> Run:
        """Wait for the exit (SIGKILL after `timeout` seconds, if given) and collect the figures."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG if deadline else 0)
            if pid:
                break
            if deadline and time.monotonic() > deadline:
                os.kill(self.proc.pid, signal.SIGKILL)
                deadline = None
            time.sleep(0.02)
        ended = time.monotonic()
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self._reader.join(10)
        self._err.close()
        out = "".join(self.lines)
        result: dict[str, Any] = {}
        results = [ln for ln in out.splitlines() if ln.startswith(RESULT_PREFIX)]
        if results:
            result = json.loads(results[-1][len(RESULT_PREFIX) :])
        return Run(
            self.argv,
            self.proc.returncode,
            self.started,
            ended,
            usage.ru_maxrss * 1024,
            out,
            self.log,
            self.signalled_at,
            self.started_epoch,
            result,
            usage.ru_utime + usage.ru_stime,
        )


def run(argv: list[str], log: Path, env: dict[str, str] | None = None, timeout: float | None = None) -> Run:
    return Child(argv, log, env).reap(timeout)


def report(result: dict[str, Any]) -> None:
    """Called by a child job: print its result line."""
    print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)
