"""The simulator in a process of its own, driven over stdin/stdout by `bench.processes.SimulatorProcess`.

`segment-assets simulate` cannot report what it served; this wrapper can. One JSON command
per line in, one JSON answer per line out:
  {"cmd": "stats"}                      the simulator's counters, plus 200/429 timestamps
  {"cmd": "reset"}                      zero them
  {"cmd": "items", "requests": [[op, path_params, query], ...]}   item counts, unpaginated
  {"cmd": "drain", "operation_id": op}  spend the token's budget for op (and the global one)
  {"cmd": "quit"}                       stop (so does closing stdin)
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

from segment_assets.simulator import Simulator


class _Clock:
    """Monotonic timestamps of answered requests, for request-rate figures."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[float, str, int]] = []

    def wrap(self, record: Any) -> Any:
        def timed(operation_id: str, status: int, accept: str | None) -> None:
            with self.lock:
                self.events.append((time.monotonic(), operation_id, status))
            record(operation_id, status, accept)

        return timed


def _warm(sim: Simulator) -> None:
    # Data generation is the simulator's cost, not the client's: do it before anything is timed.
    for kind in sim.workspace.kinds():
        if kind != "audit_events":
            sim.workspace.rows(kind)
    sim.workspace.audit._ensure_pool()


def main() -> int:
    config = json.loads(sys.argv[1])
    warm = config.pop("warm", True)
    sim = Simulator(**config)
    clock = _Clock()
    sim.stats.record = clock.wrap(sim.stats.record)  # type: ignore[method-assign]
    if warm:
        _warm(sim)
    sim.start()
    print(json.dumps({"url": sim.url, "token": sim.token}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        cmd = command["cmd"]
        if cmd == "quit":
            break
        if cmd == "stats":
            stats = sim.stats.as_dict()
            stats.pop("last_accept", None)
            stats["by_status"] = {str(k): v for k, v in stats["by_status"].items()}
            with clock.lock:
                stats["events"] = clock.events if command.get("events") else []
            answer: Any = stats
        elif cmd == "reset":
            sim.reset_stats()
            with clock.lock:
                clock.events = []
            answer = {"ok": True}
        elif cmd == "drain":
            # As if another run had just used the token: empty its buckets without HTTP.
            spent = 0
            while sim.limiter.check(sim.token, command["operation_id"]).allowed:
                spent += 1
            answer = {"spent": spent}
        elif cmd == "items":
            answer = [len(sim.items(op, path, query)) for op, path, query in command["requests"]]
        else:
            answer = {"error": f"unknown command {cmd!r}"}
        print(json.dumps(answer), flush=True)
    sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
