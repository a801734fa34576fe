"""`segment-assets`: sync, demo, sql, snapshot, diff, doctor, init, streams, docs, simulate, ui.

`sync` materializes assets in-process against a real Dagster instance (DAGSTER_HOME,
default `.dagster_home/`), so its runs and materializations show in the UI afterwards.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segment_assets.cli import history

if TYPE_CHECKING:
    from dagster import ComponentTree

    from segment_assets.orchestration.workspaces import Workspace

DEFAULT_DAGSTER_HOME = ".dagster_home"


def _instance() -> Any:
    from dagster import DagsterInstance

    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(DEFAULT_DAGSTER_HOME).absolute())))
    home.mkdir(parents=True, exist_ok=True)
    # Dagster creates its SQLite schemas on first use; two syncs starting together on a new
    # home would race there (and can corrupt the migration state), so the first use is serialised.
    with open(home / ".segment-assets.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        project_config = Path(__file__).resolve().parents[2] / "dagster.yaml"
        if not (home / "dagster.yaml").exists() and project_config.exists():
            tmp = home / f".dagster.yaml.{os.getpid()}"
            shutil.copy(project_config, tmp)
            os.replace(tmp, home / "dagster.yaml")
        instance = DagsterInstance.get()
        instance.get_runs(limit=1)  # touches run, event and schedule storage while holding the lock
        return _sync_instance(home) or instance


# Dagster captures a run's stdout and stderr by pointing the process's file descriptors 1 and 2 at
# a file for the run's duration. The runs of one sync run at once, in threads of one process, and
# would leave those descriptors at another run's file: a sync's runs keep no captured output (what
# they print is the terminal view, and their events are in the event log like any run's).
SYNC_CONFIG = ".segment-assets-sync.yaml"
NO_COMPUTE_LOGS = {"module": "dagster._core.storage.noop_compute_log_manager", "class": "NoOpComputeLogManager"}


def _sync_instance(home: Path) -> Any:
    """The home's instance (same storage, same settings) without compute-log capture; None if the
    home's dagster.yaml cannot be read (the instance as configured is used then)."""
    import yaml
    from dagster import DagsterInstance

    config_file = home / "dagster.yaml"
    try:
        config = (yaml.safe_load(config_file.read_text()) if config_file.exists() else None) or {}
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(config, dict):
        return None
    config["compute_logs"] = NO_COMPUTE_LOGS
    tmp = home / f"{SYNC_CONFIG}.{os.getpid()}"
    tmp.write_text(
        "# Written by segment-assets sync from dagster.yaml, with compute logs off (see cli/commands.py).\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    os.replace(tmp, home / SYNC_CONFIG)
    return DagsterInstance.from_config(str(home), SYNC_CONFIG)


def run_sync(
    select: Sequence[str] | None,
    segment: Any = None,
    storage: Any = None,
    out: Any = sys.stdout,
    workspace: Workspace | None = None,
    verbose: bool = False,
) -> list[dict[str, Any]]:
    """Materialize the selected streams (default all) of one workspace (default: the environment's);
    returns summary rows.

    One run of the workspace's job per partitioning, all at once (`sync_runs.py`): the
    configuration streams (read concurrently in dependency order), the last complete day of the
    daily streams and the current month of the monthly ones. Each run is tagged
    `segment/trigger=cli`, so the UI's Runs list names them as it names the schedules' runs."""
    from dagster import Definitions

    from segment_assets.api.streams import STREAMS
    from segment_assets.cli.sync_runs import CLI_TRIGGER, PlannedRun, SyncRuns, root_error, summary_rows
    from segment_assets.cli.terminal import TerminalProgress, print_summary
    from segment_assets.engine import progress
    from segment_assets.orchestration.assets import (
        PARTITIONINGS,
        build_workspace_assets,
        partitioning_of,
        record_unreported,
    )
    from segment_assets.orchestration.connections import connection_from_env
    from segment_assets.orchestration.jobs import CONFIG_JOB, TRIGGER_TAG, build_jobs
    from segment_assets.orchestration.partitions import partitions_def
    from segment_assets.orchestration.resources import segment_resource, storage_resource
    from segment_assets.orchestration.workspaces import Workspace

    workspace = workspace or Workspace(connection_from_env())
    connection = workspace.connection
    unknown = [s for s in select or () if s not in STREAMS]
    if unknown:
        raise SystemExit(f"unknown stream(s): {', '.join(unknown)}; `segment-assets streams` lists them")
    available = {s.name: s for s in connection.streams()}
    left_out = [s for s in select or () if s not in available]
    if left_out:
        raise SystemExit(
            f"stream(s) {', '.join(left_out)} are not selected for connection {connection.name!r} "
            "(its include/exclude, or a parent left out)"
        )
    wanted = [available[n] for n in (select or available)]
    segment = segment or segment_resource(connection)
    storage = storage or storage_resource(connection)
    segment_key, storage_key = connection.resource_keys
    jobs = build_jobs(workspace)
    defs = Definitions(
        assets=build_workspace_assets(workspace, storage),
        jobs=list(jobs.values()),
        resources={segment_key: segment, storage_key: storage},
    )
    planned = []
    for partitioning in PARTITIONINGS:
        streams = [s for s in wanted if partitioning_of(s) is partitioning]
        if streams:
            job = jobs[CONFIG_JOB if partitioning is None else partitioning.value]
            planned.append(
                PlannedRun(
                    job=defs.resolve_job_def(job.name),
                    partition_key=partitions_def(partitioning, connection).get_last_partition_key()
                    if partitioning
                    else None,
                    streams=streams,
                    asset_keys=[workspace.asset_key(s) for s in streams],
                )
            )
    # The time-based runs start together once the configuration tables they read are written.
    first = {s.name for s in planned[0].streams} if planned and planned[0].partition_key is None else set()
    parents = {s.parent.stream for r in planned[1:] for s in r.streams if s.parent} & first
    for r in planned:
        if r.partition_key is not None:
            r.needs = set(parents)
    target = storage.get_target()
    print(
        f"syncing {len(wanted)} stream(s) of {connection.name!r} from {segment.base_url} into "
        f"{target.table_uri('*').replace('#', ' ')}",
        file=out,
        flush=True,
    )
    started = time.monotonic()
    # Dagster's event lines are for --verbose and the UI; the terminal view says what matters.
    runs = SyncRuns(
        planned,
        instance=_instance(),
        tags={**connection.run_tags, TRIGGER_TAG: CLI_TRIGGER},
        run_config={"loggers": {"console": {"config": {"log_level": "INFO" if verbose else "CRITICAL"}}}},
    )
    view = TerminalProgress(len(wanted), out=out)
    try:
        with (
            progress.watch(runs),
            progress.watch(view) if not verbose else nullcontext(),
            view if not verbose else nullcontext(),
        ):
            runs.run()
    except KeyboardInterrupt:
        _interrupt_streams()
        record_unreported()  # tables committed after Dagster stopped listening, while the instance is open
        print(
            f"\nstopped after {time.monotonic() - started:.1f}s (signal): every table is at its last committed "
            "state; the next sync continues from there",
            file=out,
            flush=True,
        )
        raise SystemExit(130) from None
    rows = summary_rows(runs.outcomes)
    print_summary(rows, time.monotonic() - started, out)
    results = [r.result for r in planned if r.result is not None]
    failures = [e for result in results for e in result.all_events if e.is_step_failure]
    lines = []
    for event in failures:
        error = root_error(event)
        text = error.message.strip()
        if error.cls_name == "Failure":  # our own summary: one line per failed stream
            text = text.split("\n", 1)[-1]
        lines.extend(text.splitlines())
    lines += [f"{r.job.name}: {type(r.error).__name__}: {r.error}" for r in planned if r.error is not None]
    for line in lines:
        print(f"FAILED {line}", file=out)
    if lines:
        raise SystemExit(f"sync failed: {len(lines)} problem(s), see above")
    return rows


def cmd_streams(args: argparse.Namespace) -> int:
    from segment_assets.api.streams import STREAMS

    if args.json:
        print(json.dumps([s.as_dict() for s in STREAMS.values()], indent=2))
    else:
        for s in STREAMS.values():
            where = f"segment.{s.table}" if s.materialized else f"(covered by {s.covered_by})"
            print(f"{s.name:44} {s.operation_id:52} {where}")
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    run_sync(args.select, workspace=pick_workspace(args.connection), verbose=args.verbose)
    return 0


def pick_workspace(name: str | None, components: ComponentTree | None = None) -> Workspace:
    """The workspace a command works on: --connection NAME among the configured ones (component
    YAML files of the dg project the command runs in, and the SEGMENT_CONNECTIONS file), else the
    only one there is."""
    from segment_assets.orchestration.connections import ConnectionConfigError
    from segment_assets.orchestration.workspaces import current_project_components, find_dg_project, resolve_workspaces

    if components is None:
        try:
            components = current_project_components()
        except Exception as exc:  # the user's project fails to import: say which, not a traceback of ours
            raise SystemExit(f"cannot load the dg project in {find_dg_project()}: {exc}") from exc
    try:
        workspaces = resolve_workspaces(components=components)
    except (ConnectionConfigError, ValueError) as exc:
        raise SystemExit(f"configuration error: {exc}") from None
    if name is None:
        if len(workspaces) > 1:
            raise SystemExit(
                "several workspaces are configured ("
                + ", ".join(w.name for w in workspaces)
                + "): choose one with --connection NAME"
            )
        return workspaces[0]
    for w in workspaces:
        if w.name == name:
            return w
    project = find_dg_project()
    where = (
        f"the dg project in {project} has no SegmentWorkspaceComponent named {name!r}"
        if project
        else f"no dg project at or above {Path.cwd()}: run the command in your project's folder "
        "(where its pyproject.toml has [tool.dg])"
    )
    raise SystemExit(
        f"no connection named {name!r}; configured: {', '.join(w.name for w in workspaces)} ({where}; "
        "or name a connections file with SEGMENT_CONNECTIONS)"
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from segment_assets.orchestration.resources import DuckDBStorage, SegmentResource, default_duckdb_path
    from segment_assets.simulator import Simulator

    path = args.duckdb or default_duckdb_path()
    with Simulator(seed=args.seed, scale=args.scale) as sim:
        print(f"simulator serving a demo workspace at {sim.url} (seed {args.seed}, scale {args.scale})")
        segment = SegmentResource(api_token=sim.token, api_url=sim.url, connection_name="demo", pace_requests=False)
        storage = DuckDBStorage(path=path)
        run_sync(args.select, segment=segment, storage=storage, verbose=args.verbose)
    sample = "SELECT id, name, enabled FROM segment.sources ORDER BY name LIMIT 5"
    print(f"\n{sample};")
    for row in storage.get_target().query(sample):
        print("  ", row)
    print(f"\ntables are in {Path(path).absolute()} (schema `segment`)")
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    """Run SQL on a workspace's tables, whichever the target: `SELECT * FROM segment.sources` works
    on a DuckDB file and on a lake alike (the lake's tables are registered in a DuckDB session)."""
    import duckdb

    from segment_assets.orchestration.resources import storage_resource
    from segment_assets.storage import StorageError

    connection = pick_workspace(args.connection).connection
    target = storage_resource(connection).get_target()
    try:
        con = target.sql_session()
    except StorageError as exc:
        raise SystemExit(str(exc)) from None
    try:
        rel = con.sql(args.query)
    except duckdb.Error as exc:
        raise SystemExit(f"query failed: {exc}") from None
    if rel is None:
        return 0
    if args.format == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(rel.columns)
        writer.writerows(rel.fetchall())
    elif args.format == "json":
        rows = [dict(zip(rel.columns, r)) for r in rel.fetchall()]
        print(json.dumps(rows, default=str, indent=2))
    else:
        rel.show(max_rows=args.max_rows, max_width=shutil.get_terminal_size((160, 20)).columns)
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    """Write a connections file with start dates fixed once, so definitions never move with the clock."""
    from datetime import date, timedelta

    import yaml

    from segment_assets.orchestration.connections import Connection

    path = Path(args.file)
    if path.exists():
        raise SystemExit(f"{path} exists; edit it, or choose another file with --file")
    today = date.today()
    month = today.year * 12 + today.month - 1 - 12
    entry: dict[str, Any] = {
        "name": args.name,
        "token_env": args.token_env,
        "region": args.region,
        "duckdb_path": args.duckdb or "data/segment_assets.duckdb",
        # The audit trail keeps 90 days; usage a year: the first partitions worth offering.
        "daily_start": str(today - timedelta(days=89)),
        "monthly_start": str(date(month // 12, month % 12 + 1, 1)),
    }
    Connection.model_validate(entry)  # the same checks the code location applies
    path.write_text(
        "# Segment workspaces replicated by segment_assets; one entry per workspace (one token each).\n"
        "# Tokens never go here: each entry names the environment variable that holds its token.\n"
        + yaml.safe_dump({"connections": [entry]}, sort_keys=False)
    )
    print(
        f"wrote {path}\n\nnext:\n  export {args.token_env}=...   # a Segment Public API token\n"
        f"  export SEGMENT_CONNECTIONS={path.absolute()}\n  segment-assets doctor\n  segment-assets sync"
    )
    return 0


def cmd_simulate(args: argparse.Namespace, rest: list[str]) -> int:
    from segment_assets.simulator import main as simulator_main

    return simulator_main(rest)


def _interrupt(signum: int, frame: object) -> None:
    # Stream threads stop first (their next request or wait ends the stream), then the main
    # thread unwinds wherever it is, as with Ctrl-C. While a run executes, Dagster's own handler
    # stands in for this one: its interrupt reaches the run, which sets its stop itself.
    _interrupt_streams()
    raise KeyboardInterrupt


def _interrupt_streams() -> None:
    stops = sys.modules.get("segment_assets.api.stops")  # not loaded: no sync has started
    if stops is not None:
        stops.stop_all()


def prefer_system_allocator() -> None:
    """Arrow's buffers from the C library's allocator in this process and those it starts (`ui`:
    dagster dev, its code servers and run workers), unless ARROW_DEFAULT_MEMORY_POOL says
    otherwise. Arrow's default here, mimalloc, keeps the pages that many short-lived batches free:
    a sync's peak memory went from 400-510 MiB to 340 MiB without it (bench/RESULTS.md, section
    4). Arrow reads the variable when it first allocates, so this runs before pyarrow is imported;
    `pa.set_memory_pool` would not reach the allocations Arrow's C++ (Parquet) makes itself."""
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    prefer_system_allocator()
    parser = argparse.ArgumentParser(prog="segment-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("streams", help="list the stream registry")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser(
        "sync", help="materialize streams in-process (SEGMENT_API_TOKEN, SEGMENT_API_URL/SEGMENT_REGION)"
    )
    p.add_argument("--select", nargs="+", metavar="STREAM")
    p.add_argument("--connection", metavar="NAME", help="the workspace, when several are configured")
    p.add_argument("--verbose", action="store_true", help="Dagster's event log lines instead of the progress view")
    p = sub.add_parser("demo", help="start the simulator, sync it all into DuckDB, print a summary")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--duckdb", help="DuckDB file (default SEGMENT_DUCKDB_PATH or data/segment_assets.duckdb)")
    p.add_argument("--select", nargs="+", metavar="STREAM")
    p.add_argument("--verbose", action="store_true")
    p = sub.add_parser("sql", help='run SQL on the tables (DuckDB file or lake), e.g. "SELECT * FROM segment.sources"')
    p.add_argument("query")
    p.add_argument("--connection", metavar="NAME")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--max-rows", type=int, default=40)
    p = sub.add_parser("init", help="write a connections file (one workspace) with fixed partition start dates")
    p.add_argument("--file", default="connections.yaml")
    p.add_argument("--name", default="default")
    p.add_argument("--token-env", default="SEGMENT_API_TOKEN")
    p.add_argument("--region", choices=("us", "eu"), default="us")
    p.add_argument("--duckdb", help="DuckDB file (default data/segment_assets.duckdb)")
    history.add_parsers(sub)
    sub.add_parser(
        "simulate", help="run the Segment API simulator in the foreground (see `simulate --help`)", add_help=False
    )
    sub.add_parser(
        "doctor",
        help="check the token, region and features; estimate a full sync (see `doctor --help`)",
        add_help=False,
    )
    sub.add_parser(
        "docs", help="write docs/tables.md, the table reference (--check: fail if out of date)", add_help=False
    )
    sub.add_parser(
        "ui",
        help="the Dagster UI and daemon (dagster dev; its options pass through), showing warnings, errors, "
        "runs and one line per backfill",
        add_help=False,
    )
    if argv[:1] == ["simulate"]:
        return cmd_simulate(argparse.Namespace(), argv[1:])
    if argv[:1] == ["doctor"]:
        from segment_assets.cli.doctor.report import main as doctor_main

        return doctor_main(argv[1:])
    if argv[:1] == ["docs"]:
        from segment_assets.cli.reference import main as docs_main

        return docs_main(argv[1:])
    if argv[:1] == ["ui"]:
        from segment_assets.cli.ui import main as ui_main

        return ui_main(argv[1:])
    args = parser.parse_args(argv)
    # SIGTERM (Kubernetes, Docker, systemd) stops a sync like Ctrl-C: threads end at their next
    # request or wait, staging files are removed, committed tables stay as they are.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    if args.command in history.COMMANDS:
        return history.COMMANDS[args.command](args)
    return {"streams": cmd_streams, "sync": cmd_sync, "demo": cmd_demo, "sql": cmd_sql, "init": cmd_init}[args.command](
        args
    )


if __name__ == "__main__":
    raise SystemExit(main())
