"""11. Launch latency: "Materialize" on one asset in the UI, click to success, with the project's
run-queue settings (`dagster.yaml`: the daemon dequeues every second, on threads) and with
Dagster's defaults (every 5 s).

`dagster dev` as in 5 (scratch DAGSTER_HOME, free port, simulator, pacing off); the launch is the
UI's `LaunchPipelineExecution` mutation for one asset (`segment/sources`, one request) and its
checks, then the run is polled every 0.2 s until it ends. Click to success = mutation sent → success
seen; the run's own timestamps split it into queued (created → started: the daemon's next look at
the queue, then a run worker process that loads the code location) and the run (started → ended).
Overhead = click to success − the run.
"""

from __future__ import annotations

from statistics import median

import yaml

from bench.figures import Figure, Section, Spread, Table, prose
from bench.processes import REPO
from bench.settings import Settings, Workdir, sync_env
from bench.ui_path import DagsterDev, _execution_params, _launch

TARGET_OVERHEAD_SECONDS = 3.0
ASSET = ["segment", "sources"]
EVENTS = """
query RunEvents($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename ... on EventConnection { events { __typename ... on MessageEvent { timestamp } } }
  }
}"""


def _phases(dev: DagsterDev, run_id: str) -> dict[str, float]:
    """Where the queued time goes, from the run's own events: waiting for the daemon's look at the
    queue (enqueued → starting), and the run worker's start (starting → the run's start:
    the launch, a new process that imports Dagster and loads the code location)."""
    events = dev.gql(EVENTS, {"runId": run_id})["logsForRun"]["events"]
    first: dict[str, float] = {}
    for e in events:
        if e.get("timestamp"):
            first.setdefault(e["__typename"], int(e["timestamp"]) / 1000)
    return {
        "wait_for_daemon": first["RunStartingEvent"] - first["RunEnqueuedEvent"],
        "worker_start": first["RunStartEvent"] - first["RunStartingEvent"],
    }


def _measure(settings: Settings, work: Workdir, sim: object, label: str, instance_yaml: str) -> dict[str, object]:
    home = work.home(f"launch-{label}")
    (home / "dagster.yaml").write_text(instance_yaml)
    dev = DagsterDev(
        sync_env(sim, home, db=work.file(f"launch-{label}", ".duckdb"), pace=False), work.log(f"dev-{label}")
    )
    try:
        dev.wait_loaded()
        params = _execution_params(dev, [ASSET])
        _launch(dev, params)  # the first run also creates the file and warms the code server
        runs = [_launch(dev, params) for _ in range(settings.launch_runs)]
        for r in runs:
            r.update(_phases(dev, r["run_id"]))
    finally:
        dev.stop()
    for r in runs:
        r["overhead"] = float(r["launch_to_success"]) - float(r["run"])
    print(f"  {label}: click to success {median(float(r['launch_to_success']) for r in runs):.1f} s", flush=True)
    return {"label": label, "runs": runs}


def run(settings: Settings, work: Workdir) -> Section:
    project = yaml.safe_load((REPO / "dagster.yaml").read_text())
    default = {k: v for k, v in project.items() if k != "run_queue"}
    with work.simulator(seed=7, scale=1) as sim:
        results = [
            _measure(settings, work, sim, "project", yaml.safe_dump(project)),
            _measure(settings, work, sim, "dagster-default", yaml.safe_dump(default)),
        ]
    section = Section(
        11,
        "Launch latency: Materialize one asset, click to success",
        method=prose(__doc__) + f" {settings.launch_runs} launches per setting after one warm-up launch.",
    )
    rows = []
    for res, what in zip(
        results,
        (
            "project (`run_queue: dequeue_interval_seconds: 1`, `dequeue_use_threads: true`)",
            "Dagster's default run queue (dequeue every 5 s)",
        ),
    ):
        runs = res["runs"]
        rows.append(
            [
                what,
                str(len(runs)),
                Spread.of([r["launch_to_success"] for r in runs]).fmt(".1f"),
                Spread.of([r["queued"] for r in runs]).fmt(".1f"),
                Spread.of([r["wait_for_daemon"] for r in runs]).fmt(".1f"),
                Spread.of([r["worker_start"] for r in runs]).fmt(".1f"),
                Spread.of([r["run"] for r in runs]).fmt(".1f"),
                Spread.of([r["overhead"] for r in runs]).fmt(".1f"),
            ]
        )
    section.tables.append(
        Table(
            [
                "instance settings",
                "launches",
                "click → success s",
                "queued s",
                "of which waiting for the daemon s",
                "of which the run worker's start s",
                "run s",
                "overhead s",
            ],
            rows,
        )
    )
    overhead = median(r["overhead"] for r in results[0]["runs"])
    section.figures.append(
        Figure(
            "UI launch overhead (click to success − the run), project settings, median",
            f"{overhead:.1f} s",
            f"< {TARGET_OVERHEAD_SECONDS:g} s",
            overhead < TARGET_OVERHEAD_SECONDS,
        )
    )
    section.notes.append(
        "What is left of the overhead is the run worker: Dagster's default run launcher starts a process "
        "per run that imports Dagster and loads the code location again before the run starts (see 5 for "
        "what a start-up costs); the daemon's look at the queue costs at most the dequeue interval."
    )
    return section
