"""One segment_assets sync in a process of its own (what `python -m bench` times and measures).

Modes:
  --select S ...        `run_sync` (the `segment-assets sync` code path): latest partition of time-based streams
  --all-partitions S    one run over every daily partition of stream S (a range backfill, as one run)
Prints one result line: the summary rows, the peak RSS and where the time went; with
--rss-phases also the peak RSS while fetching and while writing to DuckDB.
"""

from __future__ import annotations

import time

STARTED = time.time()  # before the heavy imports: the interpreter's own start is added from psutil

import argparse  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from typing import Any  # noqa: E402

from bench.processes import peak_rss, report  # noqa: E402


class PhaseSampler:
    """Samples RSS every 10 ms and files each sample under what the main thread is doing:
    'fetch' (client, record shaping, Parquet staging), 'duckdb' (the rest of storage.py),
    or 'dagster' (anything else)."""

    def __init__(self) -> None:
        import psutil

        self.process = psutil.Process()
        self.peaks: dict[str, float] = {}
        self.main = threading.main_thread().ident
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _phase(self) -> str:
        frame = sys._current_frames().get(self.main)
        while frame is not None:
            path, name = frame.f_code.co_filename, frame.f_code.co_name
            if "segment_assets" in path:
                if path.endswith("storage.py") and name != "_staged":
                    return "duckdb"
                return "fetch"
            frame = frame.f_back
        return "dagster"

    def _run(self) -> None:
        while not self.stopped.wait(0.01):
            rss = self.process.memory_info().rss
            phase = self._phase()
            self.peaks[phase] = max(self.peaks.get(phase, 0), rss)

    def __enter__(self) -> PhaseSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join()


def _segment(args: argparse.Namespace) -> Any:
    from segment_assets.resources import SegmentResource

    overrides = dict(o.split("=", 1) for o in args.rate_limit_override)
    return SegmentResource(
        api_token=args.token, api_url=args.url, connection_name="bench", page_size=args.page_size,
        pace_requests=args.pace, rate_limit_overrides={k: float(v) for k, v in overrides.items()},
        **({"global_rate_limit_per_minute": args.global_rate_limit} if args.global_rate_limit else {}),
    )


def _materialize_range(stream: str, segment: Any, storage: Any) -> list[dict[str, Any]]:
    """Every partition of a daily stream in one run, the way a Dagster range backfill runs it."""
    from dagster import DagsterInstance, materialize

    from segment_assets.assets import asset_key, build_assets, partitions_def
    from segment_assets.streams import STREAMS

    windowing = STREAMS[stream].windowing
    keys = partitions_def(windowing.partition).get_partition_keys()
    result = materialize(
        build_assets(), instance=DagsterInstance.get(), resources={"segment": segment, "storage": storage},
        selection=[asset_key(stream)], raise_on_error=True,
        tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
    )
    # One materialization event per partition of the range, all with the run's metadata: keep one.
    event = result.get_asset_materialization_events()[0]
    md = {k: getattr(v, "value", v) for k, v in event.event_specific_data.materialization.metadata.items()}
    return [{"stream": stream, "rows": md.get("dagster/row_count", 0), "requests": md.get("segment/api_requests", 0),
             "seconds": md.get("segment/seconds", 0.0), "window": md.get("segment/window"), "partitions": len(keys),
             "materialization_events": len(result.get_asset_materialization_events())}]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sync_job")
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--select", nargs="*")
    parser.add_argument("--all-partitions", metavar="STREAM")
    parser.add_argument("--page-size", type=int)
    parser.add_argument("--pace", action="store_true")
    parser.add_argument("--global-rate-limit", type=float)
    parser.add_argument("--rate-limit-override", action="append", default=[], metavar="OP=PER_MINUTE")
    parser.add_argument("--rss-phases", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("DAGSTER_HOME", os.path.join(os.path.dirname(os.path.abspath(args.db)), "dagster_home"))
    os.makedirs(os.environ["DAGSTER_HOME"], exist_ok=True)

    import psutil

    from segment_assets.assets import build_assets
    from segment_assets.cli import run_sync
    from segment_assets.resources import DuckDBStorage

    build_assets()  # what every Dagster entry point does first; counted as start-up
    segment = _segment(args)
    storage = DuckDBStorage(path=args.db)
    ready = time.time()
    sampler = PhaseSampler() if args.rss_phases else None
    if sampler:
        sampler.__enter__()
    try:
        if args.all_partitions:
            rows = _materialize_range(args.all_partitions, segment, storage)
        else:
            rows = run_sync(args.select or None, segment=segment, storage=storage, out=io.StringIO())
    finally:
        if sampler:
            sampler.__exit__()
    done = time.time()
    report({
        "rows": rows,
        "startup_seconds": ready - psutil.Process().create_time(),
        "imports_seconds": ready - STARTED,
        "sync_seconds": done - ready,
        "peak_rss": peak_rss(),
        "rss_phases": sampler.peaks if sampler else {},
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
