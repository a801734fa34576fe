"""Where a process's time goes, from py-spy's sampled stacks (benchmark 4's `--profile-throughput`).

`py-spy record --format raw` writes one line per distinct stack (root first, frames joined by
`;`, then the sample count). Each stack is charged to one cost, chosen from its leaf upwards:
the first frame that names a cost decides. Two samplings of the same job are compared: every
thread that is not idle (py-spy's default: threads running Python, C code or waiting on a lock
that py-spy cannot see through count, sleeping in a socket or a queue do not), and only the
thread holding the GIL (`--gil`: the Python work itself, DuckDB's and Arrow's C work left out
as it releases the GIL).
"""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from pathlib import Path

# (what the frame's text contains, whether it must be the leaf, the cost). Order matters
# within one frame only; frames are tried leaf first.
RULES: tuple[tuple[str, bool, str], ...] = (
    ("_find_and_load ", False, "imports"),
    ("DuckDBTarget.connect (", True, "waiting for the DuckDB file's one connection (a lock)"),
    ("FileStore._reserve (", True, "waiting for the rate-limit store's lock"),
    ("_FileConnection.close (", False, "closing the DuckDB file (checkpoint)"),
    ("segment_assets/storage/staging.py", False, "staging pages as Parquet files"),
    ("segment_assets/storage/", False, "DuckDB statements (the write)"),
    ("httpx/", False, "HTTP (httpx, httpcore, h11, sockets)"),
    ("httpcore/", False, "HTTP (httpx, httpcore, h11, sockets)"),
    ("h11/", False, "HTTP (httpx, httpcore, h11, sockets)"),
    ("segment_assets/api/tables.py", False, "shaping records into Arrow"),
    ("segment_assets/api/rate_limits.py", False, "rate-limit store (SQLite)"),
    ("segment_assets/api/client.py", False, "client (requests, paging, JSON)"),
    ("segment_assets/engine/", False, "engine (plan, parents, scheduling)"),
    ("sqlalchemy/", False, "Dagster (instance, run, event log, plan)"),
    ("dagster", False, "Dagster (instance, run, event log, plan)"),
    ("_worker (concurrent/futures/thread.py", True, "idle threads (waiting for work or results)"),
    ("wait (threading.py", True, "idle threads (waiting for work or results)"),
    ("wait (concurrent/futures", True, "idle threads (waiting for work or results)"),
    ("get (queue.py", True, "idle threads (waiting for work or results)"),
)
OTHER = "other"


def cost_of(frames: list[str]) -> str:
    if any("_find_and_load " in f for f in frames):  # whatever runs while a module loads is its import
        return "imports"
    for depth, frame in enumerate(reversed(frames)):
        for text, leaf_only, cost in RULES:
            if text in frame and (depth == 0 or not leaf_only):
                return cost
    return OTHER


def costs(raw: str, rate: float) -> dict[str, float]:
    """Seconds (summed over threads) per cost, most first."""
    out: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            out[cost_of(stack.split(";"))] += int(count) / rate
    return dict(out.most_common())


def py_spy() -> str | None:
    """py-spy next to this interpreter or on PATH."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")
