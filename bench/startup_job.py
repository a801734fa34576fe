"""`segment-assets sync --select <stream>` in-process, timed phase by phase (benchmark 5).

The command is run through `segment_assets.cli.main`, unchanged; timers are wrapped around the
calls it makes (the asset factory, the Dagster instance, `dagster.materialize`, run creation,
each event-log write, the stream's own work) so a single-stream sync's fixed cost splits into
what is segment_assets' and what is Dagster's. Imports are done first, Dagster's then ours, each
timed (the command would import the same modules lazily). Every timestamp is CLOCK_MONOTONIC,
which the parent and the simulator share.
"""

from __future__ import annotations

import time

MAIN = time.monotonic()  # the interpreter is up and this module is running

import functools  # noqa: E402
import io  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

from bench.processes import report  # noqa: E402

timings: dict[str, float] = {}
counts: dict[str, int] = {}
local = threading.local()  # timed calls in progress per thread; a nested call is charged to its caller


def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        active = local.__dict__.setdefault("active", [])
        nested = name != "materialize" and any(a != "materialize" for a in active)
        active.append(name)
        start = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            active.pop()
            if not nested:
                timings[name] = timings.get(name, 0.0) + time.monotonic() - start
                counts[name] = counts.get(name, 0) + 1

    return wrapper


def main() -> int:
    streams = sys.argv[1:] or ["workspace"]
    t = time.monotonic()
    import dagster

    timings["import dagster"] = time.monotonic() - t
    t = time.monotonic()
    import segment_assets.cli
    import segment_assets.cli.terminal
    import segment_assets.orchestration.assets
    import segment_assets.orchestration.connections
    import segment_assets.orchestration.freshness
    import segment_assets.orchestration.jobs
    import segment_assets.orchestration.resources
    import segment_assets.orchestration.sensors
    import segment_assets.orchestration.translator

    timings["import segment_assets"] = time.monotonic() - t
    imported = time.monotonic()
    assets = segment_assets.orchestration.assets
    assets.build_workspace_assets = timed("asset definitions", assets.build_workspace_assets)
    segment_assets.cli._instance = timed("Dagster instance (open storages)", segment_assets.cli._instance)
    segment_assets.orchestration.assets.sync_stream = timed(
        "the stream itself (plan, requests, write)", segment_assets.orchestration.assets.sync_stream
    )
    dagster.materialize = timed("materialize", dagster.materialize)
    instance_cls = dagster.DagsterInstance
    instance_cls.create_run_for_job = timed("run creation", instance_cls.create_run_for_job)
    instance_cls.handle_new_event = timed("event log writes", instance_cls.handle_new_event)
    out = io.StringIO()
    code = 0
    try:
        _sync(streams, out)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    report(
        {
            "main": MAIN,
            "imported": imported,
            "done": time.monotonic(),
            "timings": timings,
            "counts": counts,
            "exit": code,
            "output": out.getvalue()[-2000:],
        }
    )
    return code


def _sync(streams: list[str], out: io.StringIO) -> None:
    # What `segment-assets sync --select ...` does (cmd_sync), its output kept off stdout.
    from segment_assets.cli.commands import pick_workspace, run_sync

    run_sync(streams, workspace=pick_workspace(None), out=out)


if __name__ == "__main__":
    raise SystemExit(main())
