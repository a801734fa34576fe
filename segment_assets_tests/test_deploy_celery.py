"""Steps on Celery workers: a real Redis broker, two `dagster-celery` workers, a Dagster instance
on Postgres (what workers on other machines would share; SQLite files only work on one machine),
and the full configuration sync run with dagster-celery's executor.

The job lives in segment_assets_tests/celery_location.py: the product's assets with that executor.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from segment_assets.orchestration.connections import connection_from_env
from segment_assets_tests.celery_location import CELERY_CONFIG_JOB
from segment_assets_tests.services import (
    PROJECT_ROOT,
    VENV_BIN,
    Postgres,
    Redis,
    ServiceProcess,
    postgres_server,
    redis_server,
    start_process,
    wait_until,
)

pytestmark = [pytest.mark.celery, pytest.mark.timeout(900)]

WORKERS = ("worker-a", "worker-b")
LOCATION_MODULE = "segment_assets_tests.celery_location"
# Tables compared with what the simulator serves: (table, operationId, key field).
COMPARED = (
    ("sources", "listSources", "id"),
    ("destinations", "listDestinations", "id"),
    ("users", "listUsers", "id"),
    ("tracking_plans", "listTrackingPlans", "id"),
    ("spaces", "listSpaces", "id"),
)


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="module")
def broker() -> Iterator[Redis]:
    with redis_server() as server:
        yield server


def worker(name: str, config_yaml: Path, env: dict[str, str], log_dir: Path) -> ServiceProcess:
    # `dagster-celery worker start` writes the broker settings where `celery -A dagster_celery.app`
    # finds them, then runs celery. One task at a time per worker (solo pool): two workers, two
    # steps in parallel, on a two-core machine.
    return start_process(
        name,
        [
            str(VENV_BIN / "dagster-celery"),
            "worker",
            "start",
            "-A",
            "dagster_celery.app",
            "-y",
            str(config_yaml),
            "-n",
            name,
            "--",
            "--pool=solo",
            "--without-gossip",
            "--without-mingle",
        ],
        log_dir / f"{name}.log",
        env=env,
        cwd=PROJECT_ROOT,
        stop_signal=signal.SIGTERM,
    )


def test_config_sync_runs_its_steps_on_two_celery_workers(
    pg: Postgres, broker: Redis, sim: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text() + pg.dagster_storage_yaml())
    duckdb_path = tmp_path / "celery.duckdb"
    execution = {"execution": {"config": {"broker": broker.url(0), "backend": broker.url(1)}}}
    config_yaml = tmp_path / "celery.yaml"
    config_yaml.write_text(yaml.safe_dump(execution))
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SEGMENT_API_TOKEN": sim.token,
        "SEGMENT_API_URL": sim.url,
        "SEGMENT_PACE_REQUESTS": "false",
        "SEGMENT_DUCKDB_PATH": str(duckdb_path),
        # One step per Segment area, spread over the workers; one rate budget for the token, in Redis.
        "SEGMENT_STEP_PER_GROUP": "true",
        "SEGMENT_RATE_LIMIT_STORE": broker.url(2),
        # workers import the job's module by name to rebuild it
        "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p),
        # `dagster-celery worker start` runs `celery` from the PATH
        "PATH": os.pathsep.join((str(VENV_BIN), os.environ.get("PATH", ""))),
    }

    # A 429 on each side of the graph: its pause goes to the token's budget in Redis, for every worker.
    sim.inject("429", "listUsers", times=1, ms_before_next=300)
    sim.inject("429", "listSources", times=1, ms_before_next=300)
    # The instance's tables are created once, before any worker opens it: workers starting together
    # on an empty database would race to create them (what the README's deployment steps say too).
    migrate = subprocess.run(
        [str(VENV_BIN / "dagster"), "instance", "migrate"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-2000:]
    workers = [worker(name, config_yaml, env, tmp_path) for name in WORKERS]
    try:
        for w in workers:
            wait_until(
                lambda w=w: " ready." in w.log_path.read_text(errors="replace"),
                what=f"Celery worker {w.name} to be ready",
                timeout=120,
                process=w,
            )
        started = time.monotonic()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "dagster",
                "job",
                "execute",
                "-m",
                LOCATION_MODULE,
                "-j",
                CELERY_CONFIG_JOB,
                "-c",
                str(config_yaml),
            ],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        seconds = time.monotonic() - started
        assert done.returncode == 0, (
            f"dagster job execute exited {done.returncode}:\n{done.stdout[-3000:]}\n"
            f"{done.stderr[-4000:]}\n" + "\n".join(f"--- {w.name}:\n{w.tail()}" for w in workers)
        )
    finally:
        for w in workers:
            w.stop()

    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with DagsterInstance.get() as instance:
        [run] = instance.get_runs(RunsFilter(job_name=CELERY_CONFIG_JOB))
        assert run.status == DagsterRunStatus.SUCCESS
        # dagster-celery reports, for each step, the worker that ran it.
        on_worker: dict[str, str] = {}
        for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT):
            event = entry.dagster_event
            metadata = event.engine_event_data.metadata if event and event.engine_event_data else {}
            if "Celery worker" in metadata:
                on_worker[event.step_key] = metadata["Celery worker"].value.split("@")[0]
        succeeded = {
            e.dagster_event.step_key for e in instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_SUCCESS)
        }
    groups = {s.group for s in connection_from_env({}).streams() if not s.windowing}
    assert len(succeeded) == len(groups) and set(on_worker) == succeeded, (len(succeeded), set(on_worker) ^ succeeded)
    per_worker = Counter(on_worker.values())
    assert set(per_worker) == set(WORKERS), per_worker
    for w in workers:  # and the workers' own logs say they ran tasks
        assert "succeeded in" in w.log_path.read_text(errors="replace"), f"{w.name} log:\n{w.tail()}"

    with duckdb.connect(str(duckdb_path), read_only=True) as con:
        for table, operation, key in COMPARED:
            stored = {r[0] for r in con.execute(f"SELECT {key} FROM segment.{table}").fetchall()}
            served = {item[key] for item in sim.items(operation)}
            assert served and stored == served, f"{table}: {len(stored)} stored, {len(served)} served"
        tables = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'segment' "
            "AND table_name NOT LIKE '%\\_\\_ct' ESCAPE '\\'"
        ).fetchone()[0]
    # The workers met the 429s with their budget in Redis (its sharing across processes is
    # measured in test_rate_limits.py) and recovered: every table above is complete.
    assert sim.stats["by_status"].get(429) == 2
    print(
        f"\n[celery] {len(succeeded)} steps in {seconds:.1f}s on {dict(per_worker)}; {tables} tables; "
        + ", ".join(f"{t} {len(sim.items(op))} rows" for t, op, _ in COMPARED)
    )
