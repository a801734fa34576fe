"""`segment-assets`: simulate, sync, streams, demo.

`sync` materializes assets in-process against a real Dagster instance (DAGSTER_HOME,
default `.dagster_home/`), so its runs and materializations show in the UI afterwards.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_DAGSTER_HOME = ".dagster_home"


def _instance() -> Any:
    from dagster import DagsterInstance

    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(DEFAULT_DAGSTER_HOME).absolute())))
    home.mkdir(parents=True, exist_ok=True)
    # Dagster creates its SQLite schemas on first use; two syncs starting together on a new
    # home would race there (and can corrupt the migration state), so the first use is serialised.
    with open(home / ".segment-assets.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        project_config = Path(__file__).resolve().parent.parent / "dagster.yaml"
        if not (home / "dagster.yaml").exists() and project_config.exists():
            tmp = home / f".dagster.yaml.{os.getpid()}"
            shutil.copy(project_config, tmp)
            os.replace(tmp, home / "dagster.yaml")
        instance = DagsterInstance.get()
        instance.get_runs(limit=1)  # touches run, event and schedule storage while holding the lock
        return instance


def run_sync(select: Sequence[str] | None, segment: Any = None, storage: Any = None, out: Any = sys.stdout,
             connection: Any = None) -> list[dict[str, Any]]:
    """Materialize the selected streams (default all) of one workspace; returns summary rows.

    One run per partitioning: the configuration streams (read concurrently in dependency order),
    then the last complete day of the daily streams, then the current month of the monthly ones."""
    from dagster import materialize

    from segment_assets.assets import KINDS, build_workspace_assets, window_of
    from segment_assets.automation import connection_partitions
    from segment_assets.connections import connection_from_env
    from segment_assets.resources import segment_resource, storage_resource
    from segment_assets.streams import STREAMS
    from segment_assets.translator import SegmentTranslator

    connection = connection or connection_from_env()
    unknown = [s for s in select or () if s not in STREAMS]
    if unknown:
        raise SystemExit(f"unknown stream(s): {', '.join(unknown)}; `segment-assets streams` lists them")
    available = {s.name: s for s in connection.streams()}
    left_out = [s for s in select or () if s not in available]
    if left_out:
        raise SystemExit(f"stream(s) {', '.join(left_out)} are not selected for connection {connection.name!r} "
                         "(its include/exclude, or a parent left out)")
    wanted = [available[n] for n in (select or available)]
    segment = segment or segment_resource(connection)
    storage = storage or storage_resource(connection)
    translator = SegmentTranslator()
    assets = build_workspace_assets(connection, storage, translator)
    target = storage.get_target()
    print(f"syncing {len(wanted)} stream(s) of {connection.name!r} from {segment.base_url} into "
          f"{target.table_uri('*').replace('#', ' ')}", file=out)
    started = time.monotonic()
    instance = _instance()
    segment_key, storage_key = connection.resource_keys
    results = []
    for window in KINDS:
        streams = [s for s in wanted if window_of(s) is window]
        if not streams:
            continue
        result = materialize(
            assets,
            instance=instance,
            resources={segment_key: segment, storage_key: storage},
            selection=[translator.get_asset_key(s, connection) for s in streams],
            partition_key=connection_partitions(connection, window).get_last_partition_key() if window else None,
            raise_on_error=False,
            tags=connection.run_tags,
            # One INFO line per stream is the progress report; Dagster's DEBUG engine events are not.
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        )
        results.append(result)
        if any(_root_error(e).cls_name == "SegmentAuthError" for e in result.all_events if e.is_step_failure):
            break  # a refused token stops the whole sync: no further run, no further request
    rows = []
    for event in (e for result in results for e in result.get_asset_materialization_events()):
        mat = event.event_specific_data.materialization
        md = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
        rows.append({
            "stream": mat.asset_key.path[-1],
            "rows": md.get("dagster/row_count", 0),
            "requests": md.get("segment/api_requests", 0),
            "seconds": md.get("segment/seconds", 0.0),
            "status": md.get("segment/status", "ok"),
            "changes": f"+{md.get('segment/inserted', 0)} ~{md.get('segment/updated', 0)} -{md.get('segment/deleted', 0)}",
        })
    _print_summary(rows, time.monotonic() - started, out)
    failures = [e for result in results for e in result.all_events if e.is_step_failure]
    lines = []
    for event in failures:
        error = _root_error(event)
        text = error.message.strip()
        if error.cls_name == "Failure":  # our own summary: one line per failed stream
            text = text.split("\n", 1)[-1]
        lines.extend(text.splitlines())
    for line in lines:
        print(f"FAILED {line}", file=out)
    if failures:
        raise SystemExit(f"sync failed: {len(lines)} problem(s), see above")
    return rows


def _root_error(event: Any) -> Any:
    error = event.event_specific_data.error
    while error.cause is not None:  # Dagster wraps the stream's own error; show that one
        error = error.cause
    return error


def _print_summary(rows: list[dict[str, Any]], seconds: float, out: Any) -> None:
    print(f"\n{'stream':44} {'rows':>9} {'requests':>9} {'seconds':>8}  changes", file=out)
    for r in sorted(rows, key=lambda r: r["stream"]):
        status = "" if r["status"] == "ok" else f"  ({r['status']})"
        print(f"{r['stream']:44} {r['rows']:>9} {r['requests']:>9} {r['seconds']:>8.2f}  {r['changes']}{status}", file=out)
    print(f"{'TOTAL':44} {sum(r['rows'] for r in rows):>9} {sum(r['requests'] for r in rows):>9} {seconds:>8.2f}", file=out)


def cmd_streams(args: argparse.Namespace) -> int:
    from segment_assets.streams import STREAMS

    if args.json:
        print(json.dumps([s.as_dict() for s in STREAMS.values()], indent=2))
    else:
        for s in STREAMS.values():
            where = f"segment.{s.table}" if s.materialized else f"(covered by {s.covered_by})"
            print(f"{s.name:44} {s.operation_id:52} {where}")
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    run_sync(args.select)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from segment_assets.resources import DuckDBStorage, SegmentResource, default_duckdb_path
    from segment_assets.simulator import Simulator

    path = args.duckdb or default_duckdb_path()
    with Simulator(seed=args.seed, scale=args.scale) as sim:
        print(f"simulator serving a demo workspace at {sim.url} (seed {args.seed}, scale {args.scale})")
        segment = SegmentResource(api_token=sim.token, api_url=sim.url, connection_name="demo", pace_requests=False)
        storage = DuckDBStorage(path=path)
        run_sync(args.select, segment=segment, storage=storage)
    sample = "SELECT id, name, enabled FROM segment.sources ORDER BY name LIMIT 5"
    print(f"\n{sample};")
    for row in storage.get_target().query(sample):
        print("  ", row)
    print(f"\ntables are in {Path(path).absolute()} (schema `segment`)")
    return 0


def cmd_simulate(args: argparse.Namespace, rest: list[str]) -> int:
    from segment_assets.simulator import main as simulator_main

    return simulator_main(rest)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="segment-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("streams", help="list the stream registry")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("sync", help="materialize streams in-process (SEGMENT_API_TOKEN, SEGMENT_API_URL/SEGMENT_REGION)")
    p.add_argument("--select", nargs="+", metavar="STREAM")
    p = sub.add_parser("demo", help="start the simulator, sync it all into DuckDB, print a summary")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--duckdb", help="DuckDB file (default SEGMENT_DUCKDB_PATH or data/segment_assets.duckdb)")
    p.add_argument("--select", nargs="+", metavar="STREAM")
    sub.add_parser("simulate", help="run the Segment API simulator in the foreground (see `simulate --help`)",
                   add_help=False)
    if argv[:1] == ["simulate"]:
        return cmd_simulate(argparse.Namespace(), argv[1:])
    args = parser.parse_args(argv)
    return {"streams": cmd_streams, "sync": cmd_sync, "demo": cmd_demo}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
