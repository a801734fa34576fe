"""5. The UI path: "Materialize all" of the configuration assets through a real `dagster dev`,
against the CLI sync of the same selection; and what a sync's start-up is made of.

`dagster dev -w workspace.yaml` (webserver and daemon, its own process group, free port, a
scratch DAGSTER_HOME with the project's dagster.yaml, stopped whatever happens) serves the code
location with the simulator's URL and token in its environment, pacing off, no rate limits.
The benchmark does what the UI's "Materialize all" button does: it asks GraphQL for the asset
nodes (`LaunchAssetLoaderQuery`'s fields), picks the job they all share as the UI does
(`getCommonJob`), and sends the UI's `LaunchPipelineExecution` mutation with the asset keys and
their checks, the code location's default executor deciding how the run executes; then it polls
the run until it ends. UI time = mutation sent → run seen successful (polled every 0.2 s); the
run's own creation, start and end timestamps split it into queueing (the daemon dequeues and
launches a run worker) and the run. CLI time = `segment-assets sync --select <the same streams>`,
whole process. Runs alternate, each tool writing its own DuckDB file (the first run of each is
an initial load, later ones re-syncs).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from statistics import median
from typing import Any

import httpx

from bench.figures import Figure, Section, Spread, Table, prose
from bench.processes import REPO
from bench.processes import run as run_process
from bench.settings import Settings, Workdir, sync, sync_env

TARGET_RATIO = 1.5
LOCATION = "segment_assets"

ASSET_NODES = """
query LaunchAssetLoaderQuery($assetKeys: [AssetKeyInput!]!) {
  assetNodes(assetKeys: $assetKeys) {
    assetKey { path }
    jobNames
    assetChecksOrError { ... on AssetChecks { checks { name jobNames } } }
    repository { name location { name } }
  }
}"""
LAUNCH = """
mutation LaunchPipelineExecution($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { id runId pipelineName } }
    ... on PythonError { message stack }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PipelineNotFoundError { message }
  }
}"""
RUN = """
query RunTimes($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status creationTime startTime endTime }
  }
}"""
LOCATIONS = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DagsterDev:
    """`dagster dev` in its own process group; `stop()` ends the whole group."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/graphql"
        self.log = open(log, "w")
        dagster = Path(sys.executable).parent / "dagster"
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [str(dagster), "dev", "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(self.port)],
            cwd=REPO,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.http = httpx.Client(timeout=60)

    def gql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        r = self.http.post(self.url, json={"query": query, "variables": variables or {}})
        r.raise_for_status()
        body = r.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL error: {body['errors']}")
        return body["data"]

    def wait_loaded(self, timeout: float = 300) -> float:
        """Seconds from start until the code location is loaded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {self.proc.returncode}; see {self.log.name}")
            try:
                data = self.gql(LOCATIONS)["workspaceOrError"]
            except (httpx.HTTPError, RuntimeError):
                time.sleep(0.5)
                continue
            entries = data.get("locationEntries") or []
            entry = next((e for e in entries if e["name"] == LOCATION), None)
            if entry and entry["loadStatus"] == "LOADED":
                if entry["locationOrLoadError"]["__typename"] == "PythonError":
                    raise RuntimeError(f"code location failed to load: {entry['locationOrLoadError']['message']}")
                return time.monotonic() - self.started
            time.sleep(0.5)
        raise TimeoutError(f"dagster dev did not load {LOCATION} in {timeout:.0f} s; see {self.log.name}")

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        try:  # anything of the group still alive (run workers, code servers)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.log.close()


def _execution_params(dev: DagsterDev, keys: list[list[str]]) -> dict[str, Any]:
    """What the UI's Materialize button sends for these assets (executionParamsForAssetJob)."""
    nodes = dev.gql(ASSET_NODES, {"assetKeys": [{"path": k} for k in keys]})["assetNodes"]
    if len(nodes) != len(keys):
        raise RuntimeError(f"GraphQL knows {len(nodes)} of the {len(keys)} configuration assets")
    common = [j for j in nodes[0]["jobNames"] if all(j in n["jobNames"] for n in nodes)]
    if not common:
        raise RuntimeError("the configuration assets share no job; the UI would refuse to launch them together")
    job = common[0]
    checks = [
        {"name": c["name"], "assetKey": {"path": n["assetKey"]["path"]}}
        for n in nodes
        for c in (n["assetChecksOrError"] or {}).get("checks", [])
        if not c["jobNames"] or job in c["jobNames"]
    ]
    repo = nodes[0]["repository"]
    return {
        "mode": "default",
        "executionMetadata": {"tags": []},
        "runConfigData": "{}",
        "selector": {
            "repositoryLocationName": repo["location"]["name"],
            "repositoryName": repo["name"],
            "pipelineName": job,
            "assetSelection": [{"path": k} for k in keys],
            "assetCheckSelection": checks,
        },
    }


def _launch(dev: DagsterDev, params: dict[str, Any], timeout: float = 900) -> dict[str, Any]:
    sent = time.monotonic()
    result = dev.gql(LAUNCH, {"executionParams": params})["launchPipelineExecution"]
    if result["__typename"] != "LaunchRunSuccess":
        raise RuntimeError(f"launch refused: {result}")
    run_id = result["run"]["runId"]
    deadline = sent + timeout
    while time.monotonic() < deadline:
        run = dev.gql(RUN, {"runId": run_id})["runOrError"]
        if run.get("status") in ("SUCCESS", "FAILURE", "CANCELED"):
            seen = time.monotonic()
            if run["status"] != "SUCCESS":
                raise RuntimeError(f"run {run_id} ended {run['status']}; see the dagster dev log")
            return {
                "launch_to_success": seen - sent,
                "queued": run["startTime"] - run["creationTime"],
                "run": run["endTime"] - run["startTime"],
                "job": result["run"]["pipelineName"],
                "run_id": run_id,
            }
        time.sleep(0.2)
    raise TimeoutError(f"run {run_id} did not end in {timeout:.0f} s")


def run(settings: Settings, work: Workdir) -> Section:
    from segment_assets.api.streams import materialized_streams

    names = [s.name for s in materialized_streams() if s.windowing is None]
    keys = [["segment", n] for n in names]
    ui_home, cli_home = work.home("ui-home"), work.home("ui-cli-home")
    ui_db, cli_db = work.file("ui", ".duckdb"), work.file("ui-cli", ".duckdb")
    ui: list[dict[str, float]] = []
    cli: list[float] = []
    first_request: list[float] = []
    with work.simulator(seed=7, scale=settings.limits_scale) as sim:
        dev = DagsterDev(sync_env(sim, ui_home, db=ui_db, pace=False), work.log("dagster-dev"))
        try:
            loaded = dev.wait_loaded()
            params = _execution_params(dev, keys)
            for i in range(settings.ui_runs):
                sim.reset()
                ui.append(_launch(dev, params))
                sim.reset()
                r = sync(work, sync_env(sim, cli_home, db=cli_db, pace=False), names, label="ui-cli")
                cli.append(r.wall_seconds)
                first_request.append(min(t for t, *_ in sim.events()) - r.started)
                print(f"  run {i + 1}: UI {ui[-1]['launch_to_success']:.1f} s, CLI {cli[-1]:.1f} s", flush=True)
        finally:
            dev.stop()
        startup = [_startup(work, sim, cli_home) for _ in range(settings.startup_runs)]
    for path in (ui_db, cli_db):
        path.unlink(missing_ok=True)
    shutil.rmtree(ui_home, ignore_errors=True)

    section = Section(
        5,
        "UI path: Materialize all through dagster dev vs the CLI",
        method=(
            prose(__doc__) + f" {len(names)} configuration assets with their checks, demo workspace at scale "
            f"{settings.limits_scale:g}, {settings.ui_runs} run(s) per path."
        ),
    )
    ui_total = Spread.of([u["launch_to_success"] for u in ui])
    cli_total = Spread.of(cli)
    ratio = ui_total.median / cli_total.median
    section.tables.append(
        Table(
            ["path", "runs", "total s", "queued s (created → started)", "run s (started → ended)"],
            [
                [
                    "UI (GraphQL launch → success seen)",
                    str(len(ui)),
                    ui_total.fmt(".1f"),
                    Spread.of([u["queued"] for u in ui]).fmt(".1f"),
                    Spread.of([u["run"] for u in ui]).fmt(".1f"),
                ],
                [
                    "CLI (`segment-assets sync --select ...`, whole process)",
                    str(len(cli)),
                    cli_total.fmt(".1f"),
                    "—",
                    "—",
                ],
            ],
        )
    )
    section.figures += [
        Figure(
            "UI Materialize all vs CLI sync, medians",
            f"{ratio:.2f}× ({ui_total.median:.1f} s vs {cli_total.median:.1f} s)",
            f"≤ {TARGET_RATIO}×",
            ratio <= TARGET_RATIO,
        ),
        Figure("CLI: process start → first request", Spread.of(first_request).fmt(".1f", " s")),
    ]
    section.notes.append(
        f"The UI launched job `{ui[0]['job']}` (the job every configuration asset shares); "
        f"`dagster dev` took {loaded:.0f} s to load the code location (not counted)."
    )
    section.notes.append(
        "Caveats: the UI time includes the daemon's dequeue interval and a run worker process that "
        "loads the code location again (Dagster's default run launcher), both of which the CLI "
        "skips; the status is polled every 0.2 s."
    )
    section.tables.append(_startup_table(startup))
    section.notes.append(
        "Fixed cost of a one-stream sync (`segment-assets sync --select workspace`, one request), medians over "
        f"{len(startup)} run(s), measured by `bench/startup_job.py` (the command's own code, timers wrapped around "
        "its calls). Ours: segment_assets' imports, the asset definitions, the stream itself. Dagster's: its "
        "imports, the instance, run creation, the event-log writes and the rest of `materialize` (step "
        "orchestration, resources, checks)."
    )
    return section


def _startup(work: Workdir, sim: Any, home: Path) -> dict[str, float]:
    db = work.file("startup", ".duckdb")
    sim.reset()
    r = run_process(
        [sys.executable, "-m", "bench.startup_job", "workspace"],
        work.log("startup"),
        sync_env(sim, home, db=db, pace=False),
    ).check()
    events = sim.events()
    db.unlink(missing_ok=True)
    res, t = r.result, r.result["timings"]
    inside = t["run creation"] + t["event log writes"] + t["the stream itself (plan, requests, write)"]
    phases = {
        "interpreter start (process created → first line of the job)": res["main"] - r.started,
        "import dagster": t["import dagster"],
        "import segment_assets (its modules, dagster already loaded)": t["import segment_assets"],
        "asset definitions (build_workspace_assets)": t["asset definitions"],
        "Dagster instance (open the SQLite storages)": t["Dagster instance (open storages)"],
        "run creation (create_run_for_job: plan, snapshots, run record)": t["run creation"],
        f"event log writes ({res['counts'].get('event log writes', 0)} events)": t["event log writes"],
        "the stream itself (plan, 1 request, write)": t["the stream itself (plan, requests, write)"],
        "rest of materialize (executor, step, resources, checks)": t["materialize"] - inside,
        "interpreter exit": r.ended - res["done"],
        "whole process": r.wall_seconds,
        "process start → first request": min(x for x, *_ in events) - r.started,
    }
    return phases


def _startup_table(runs: list[dict[str, float]]) -> Table:
    keys = list(runs[0])
    return Table(
        ["one-stream sync, where the time goes", "seconds (median)"],
        [[k, f"{median(r[k] for r in runs):.2f}"] for k in keys],
    )
