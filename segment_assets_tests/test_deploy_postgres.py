"""A Dagster instance on PostgreSQL (runs, event log, schedules): what a deployment past one
machine uses. A real server on loopback; the project's commands run as subprocesses against the
simulator; the records are read back from Postgres, the rows from DuckDB."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter

from segment_assets_tests.ground_truth import served_audit_event_ids
from segment_assets_tests.services import PROJECT_ROOT, VENV_BIN, Postgres, postgres_server

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(600)]

KEY_PREFIX = ("segment",)
SYNCED = ("sources", "destinations")
DAILY = "audit_events"


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    with postgres_server() as server:
        yield server


def instance_yaml(pg: Postgres) -> str:
    """The project's instance settings with the storage moved to Postgres."""
    return (PROJECT_ROOT / "dagster.yaml").read_text() + pg.dagster_storage_yaml()


def run_command(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (
        f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout + done.stderr


def test_sync_and_backfill_recorded_in_postgres(
    pg: Postgres, sim: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml(pg))
    duckdb_path = tmp_path / "pg.duckdb"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SEGMENT_API_TOKEN": sim.token,
        "SEGMENT_API_URL": sim.url,
        "SEGMENT_PACE_REQUESTS": "false",
        "SEGMENT_DUCKDB_PATH": str(duckdb_path),
    }
    today = sim.now().astimezone(UTC).date()
    first, last = today - timedelta(days=3), today - timedelta(days=1)

    out = run_command([str(VENV_BIN / "segment-assets"), "sync", "--select", *SYNCED], env, tmp_path)
    assert "TOTAL" in out
    run_command(
        [
            sys.executable,
            "-m",
            "dagster",
            "asset",
            "materialize",
            "-m",
            "segment_assets.definitions",
            "--select",
            "/".join((*KEY_PREFIX, DAILY)),
            "--partition-range",
            f"{first}...{last}",
        ],
        env,
        tmp_path,
    )

    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with DagsterInstance.get() as instance:
        from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        runs = instance.get_runs(RunsFilter())
        assert len(runs) == 2 and all(r.status == DagsterRunStatus.SUCCESS for r in runs), [
            (r.run_id, r.status) for r in runs
        ]
        backfill_run = next(r for r in runs if r.tags.get("dagster/asset_partition_range_start"))
        assert (
            backfill_run.tags["dagster/asset_partition_range_start"],
            backfill_run.tags["dagster/asset_partition_range_end"],
        ) == (str(first), str(last))
        for stream in SYNCED:
            assert instance.get_latest_materialization_event(AssetKey([*KEY_PREFIX, stream])) is not None, stream
        partitions = instance.get_materialized_partitions(AssetKey([*KEY_PREFIX, DAILY]))
        assert partitions == {str(first + timedelta(days=d)) for d in range(3)}

    # The same records, read with SQL from Postgres itself; nothing went to SQLite.
    with pg.connect() as con, con.cursor() as cur:
        cur.execute("SELECT run_id, status FROM runs")
        assert sorted(cur.fetchall()) == sorted((r.run_id, "SUCCESS") for r in runs)
        cur.execute("SELECT asset_key, partition FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'")
        materialized = cur.fetchall()
    keys = {key for key, _ in materialized}
    assert {AssetKey([*KEY_PREFIX, s]).to_string() for s in (*SYNCED, DAILY)} <= keys
    assert sorted(p for k, p in materialized if k == AssetKey([*KEY_PREFIX, DAILY]).to_string()) == [
        str(first + timedelta(days=d)) for d in range(3)
    ]
    assert not list(home.rglob("*.db")), "a SQLite storage file was created next to the Postgres instance"

    # The rows: what the simulator serves.
    served_events = served_audit_event_ids(sim, first, last)
    with duckdb.connect(str(duckdb_path), read_only=True) as con:
        assert {r[0] for r in con.execute("SELECT id FROM segment.sources").fetchall()} == {
            s["id"] for s in sim.items("listSources")
        }
        assert {r[0] for r in con.execute("SELECT id FROM segment.destinations").fetchall()} == {
            d["id"] for d in sim.items("listDestinations")
        }
        stored_events = {r[0] for r in con.execute("SELECT id FROM segment.audit_events").fetchall()}
    assert served_events and stored_events == served_events
    print(
        f"\n[postgres] runs: {len(runs)}; materializations recorded: {len(materialized)}; "
        f"rows: sources {len(sim.items('listSources'))}, destinations {len(sim.items('listDestinations'))}, "
        f"audit_events {len(stored_events)} over {first}...{last}"
    )
