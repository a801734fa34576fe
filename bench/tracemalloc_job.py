"""`segment-assets sync --select ...` in-process under tracemalloc (benchmark 6's profile).

Python's allocations after the imports are traced (10 frames); a thread keeps the snapshot taken at the highest
traced memory seen (checked every 0.2 s, a new snapshot when it grew by 4 MiB) and samples the
RSS, so the parent can compare where memory stood at the peak of a small and a large run.
Native memory (DuckDB, Arrow buffers, SQLite) is not traced: the RSS beside the traced peak says
how much of the growth tracemalloc can explain at all.
"""

from __future__ import annotations

import argparse
import io
import os
import threading
import tracemalloc

from bench.processes import report

STEP = 4 * 2**20


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tracemalloc_job")
    parser.add_argument("--snapshot", required=True, help="file the peak snapshot is dumped to")
    parser.add_argument("streams", nargs="+")
    args = parser.parse_args()
    # What the sync imports is the same at every scale: imported before tracing starts, so the
    # snapshots (taken as traced memory grows) follow the sync, not the imports.

    from segment_assets.cli.commands import pick_workspace, run_sync

    tracemalloc.start(10)
    best: dict[str, object] = {"size": 0, "snapshot": None, "rss": 0}
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.2):
            best["rss"] = max(int(best["rss"]), _rss())  # type: ignore[call-overload]
            current, _ = tracemalloc.get_traced_memory()
            if current > int(best["size"]) + STEP:  # type: ignore[call-overload]
                best["snapshot"] = tracemalloc.take_snapshot()
                best["size"] = current

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    run_sync(args.streams, workspace=pick_workspace(None), out=io.StringIO())
    stop.set()
    thread.join()
    _, peak = tracemalloc.get_traced_memory()
    snapshot = best["snapshot"] or tracemalloc.take_snapshot()
    snapshot.dump(args.snapshot)  # type: ignore[union-attr]
    report({"traced_peak": peak, "snapshot_size": best["size"], "rss_peak": best["rss"]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
