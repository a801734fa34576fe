"""The engine alone in benchmark 4: the configuration set read by `segment_assets.engine.runner`
(`run_streams` + `sync_stream`) into a fresh DuckDB file, with no Dagster in the process.

Built the way `orchestration/assets.py::materialize_streams` builds its `StreamRun` from the
resources `segment-assets sync` binds, with their defaults and pacing off: one pooled
`SegmentClient` (connections 4 × the fan-out concurrency, the rate-limit store a SQLite file as
the sync's `file` store, no per-endpoint or global limits), a `DuckDBTarget`, each stream's own
update method, the default fan-out budgets, 16 streams at a time and 8 requests per fan-out.
What it leaves out is what Dagster adds: the instance, the run and its event log, asset
definitions, materialization events and checks. It asserts at the end that `dagster` was never
imported (`segment_assets.api`, `engine` and `storage` import nothing from it).

`--profile FILE` records cProfile statistics of the main thread and of every stream thread
(one profiler per stream, merged into FILE), for `pstats`.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
import uuid

STARTED = time.monotonic()  # as close to the process start as this job can see
# Arrow's allocator as `segment-assets` chooses it for its processes (cli/commands.py,
# prefer_system_allocator), set the same way: before pyarrow is first imported.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

# The number of parallel streams and fan-out requests (SegmentResource's defaults).
MAX_STREAMS = 16
FANOUT_CONCURRENCY = 8


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_job")
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--rate-limit-dir", required=True, help="the SQLite rate-limit store's directory")
    parser.add_argument("--streams", required=True, help="comma-separated stream names")
    parser.add_argument("--profile", help="write merged cProfile statistics (main and stream threads) here")
    args = parser.parse_args()

    from segment_assets.api.client import SegmentClient
    from segment_assets.api.streams import STREAMS, StreamSpec
    from segment_assets.engine.cycles import DEFAULT_BUDGET_MINUTES, budget_requests
    from segment_assets.engine.runner import StreamOutcome, StreamRun, run_streams, sync_stream
    from segment_assets.storage import DuckDBTarget

    imported = time.monotonic()
    streams = [STREAMS[n] for n in args.streams.split(",")]
    client = SegmentClient(
        args.token,
        args.url,
        rate_limits={},
        global_rate_limit=None,
        max_connections=max(8, FANOUT_CONCURRENCY * 4),
        rate_limit_store=f"file:{args.rate_limit_dir}",
    )
    target = DuckDBTarget(args.db)
    run = StreamRun(
        client=client,
        target=target,
        run_id=uuid.uuid4().hex,
        method_for=lambda stream: stream.update_method,
        fanout_concurrency=FANOUT_CONCURRENCY,
        budget_for=lambda stream: budget_requests(stream, DEFAULT_BUDGET_MINUTES),
    )

    profiles: list[cProfile.Profile] = []

    def sync_one(stream: StreamSpec, parent_unavailable: str | None) -> StreamOutcome:
        if not args.profile:
            return sync_stream(stream, run, parent_unavailable)
        p = cProfile.Profile()
        profiles.append(p)  # list.append is atomic: threads may add theirs at once
        return p.runcall(sync_stream, stream, run, parent_unavailable)

    if args.profile:
        profiles.append(cProfile.Profile())
        profiles[0].enable()
    began = time.monotonic()
    outcomes: list[StreamOutcome] = []
    try:
        for outcome in run_streams(streams, sync_one, max_parallel=MAX_STREAMS, stop=client.stop, paced=run.paced):
            outcomes.append(outcome)
    finally:
        client.close()
        target.close()
    finished = time.monotonic()
    if args.profile:
        profiles[0].disable()
        stats = pstats.Stats(profiles[0])
        for p in profiles[1:]:
            stats.add(p)
        stats.dump_stats(args.profile)

    failed = {o.stream.name: f"{o.status}: {o.error!r}" for o in outcomes if o.status not in ("ok", "unavailable")}
    if failed:
        print(f"streams failed: {failed}", file=sys.stderr)
        return 1
    from bench.processes import report

    report(
        {
            "streams": len(outcomes),
            "rows": sum(int(o.metadata.get("dagster/row_count", 0)) for o in outcomes),
            "requests": sum(int(o.metadata.get("segment/api_requests", 0)) for o in outcomes),
            "longest_stream": max((o.metadata.get("segment/seconds", 0.0) for o in outcomes), default=0.0),
            "write_seconds": sum(o.metadata.get("segment/write_seconds", 0.0) for o in outcomes),
            # time.monotonic() is CLOCK_MONOTONIC, comparable with the parent's and the simulator's
            "started": STARTED,
            "imported": imported,
            "run_began": began,
            "run_ended": finished,
            "dagster_imported": "dagster" in sys.modules,
        }
    )
    assert "dagster" not in sys.modules, "the engine alone imported dagster"
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
