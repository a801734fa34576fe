"""The `segment-assets` command, run as a user would: a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from segment_assets.api.streams import STREAMS
from segment_assets.simulator import Simulator


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "segment_assets", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_streams_json_lists_every_declared_operation() -> None:
    out = cli("streams", "--json")
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    assert len(listed) == 98 == len({s["operation_id"] for s in listed})
    sources = next(s for s in listed if s["name"] == "sources")
    assert sources["table"] == "segment.sources" and sources["primary_key"] == ["id"]
    assert sources["update_method"] == "reload_and_compare"
    rules = next(s for s in listed if s["name"] == "tracking_plan_rules")
    assert rules["parent"] == "tracking_plans" and rules["primary_key"] == ["tracking_plan_id", "type", "key"]


@pytest.mark.e2e
def test_demo_loads_the_simulator_workspace(tmp_path: Path) -> None:
    db = tmp_path / "demo.duckdb"
    out = cli(
        "demo",
        "--duckdb",
        str(db),
        "--select",
        "sources",
        "destinations",
        "tracking_plans",
        "tracking_plan_rules",
        env={"DAGSTER_HOME": str(tmp_path / "home")},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "TOTAL" in out.stdout and "FROM segment.sources" in out.stdout
    with Simulator(seed=7) as sim:
        expected = {"sources": len(sim.items("listSources")), "destinations": len(sim.items("listDestinations"))}
    con = duckdb.connect(str(db), read_only=True)
    for table, n in expected.items():
        assert con.execute(f"SELECT count(*) FROM demo.segment.{table}").fetchone()[0] == n


@pytest.mark.e2e
def test_sync_against_a_workspace_from_the_environment(tmp_path: Path) -> None:
    with Simulator(seed=11, tokens=("tok-env-123",)) as sim:
        env = {
            "SEGMENT_API_TOKEN": "tok-env-123",
            "SEGMENT_API_URL": sim.url,
            "SEGMENT_PACE_REQUESTS": "false",
            "SEGMENT_DUCKDB_PATH": str(tmp_path / "w.duckdb"),
            "DAGSTER_HOME": str(tmp_path / "home"),
        }
        out = cli("sync", "--select", "workspace", "labels", env=env)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "tok-env-123" not in out.stdout + out.stderr
        bad = cli("sync", "--select", "labels", env={**env, "SEGMENT_API_TOKEN": "wrong"})
    assert bad.returncode != 0
    assert "SEGMENT_API_TOKEN" in bad.stdout + bad.stderr and "labels" in bad.stdout


def test_unknown_stream_is_a_clear_error() -> None:
    out = cli("sync", "--select", "nope", env={"SEGMENT_API_TOKEN": "x"})
    assert out.returncode != 0 and "unknown stream(s): nope" in out.stderr


def test_simulate_help() -> None:
    out = cli("simulate", "--help")
    assert out.returncode == 0 and "--scale" in out.stdout
    assert all(name in STREAMS for name in ("sources", "audit_events"))


# What the command's process allocates Arrow buffers with, once it has run (the streams command).
ARROW_BACKEND = (
    "import sys; from segment_assets.cli import main; main(['streams', '--json']); "
    "import pyarrow as pa; print(pa.default_memory_pool().backend_name, file=sys.stderr)"
)


def test_the_command_allocates_arrow_buffers_with_the_c_library_unless_told_otherwise() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}

    def backend(**extra: str) -> str:
        out = subprocess.run(
            [sys.executable, "-c", ARROW_BACKEND], capture_output=True, text=True, timeout=120, env={**env, **extra}
        )
        assert out.returncode == 0, out.stderr
        return out.stderr.strip().splitlines()[-1]

    assert backend() == "system"
    assert backend(ARROW_DEFAULT_MEMORY_POOL="mimalloc") == "mimalloc"


def change_rows(db: Path) -> dict[str, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'segment' AND table_name LIKE '%\\_\\_ct' ESCAPE '\\'"
            ).fetchall()
        ]
        return {t: con.execute(f'SELECT count(*) FROM segment."{t}"').fetchone()[0] for t in tables}
    finally:
        con.close()


@pytest.mark.e2e
def test_running_the_demo_twice_reports_no_changes(tmp_path: Path) -> None:
    db, env = tmp_path / "segment_assets.duckdb", {"DAGSTER_HOME": str(tmp_path / "home")}
    first = cli("demo", "--duckdb", str(db), env=env, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    after_first = change_rows(db)
    second = cli("demo", "--duckdb", str(db), env=env, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    assert len(after_first) > 50 and change_rows(db) == after_first, "a fresh simulator serves the same workspace"
    config_lines = [
        line
        for line in second.stdout.splitlines()
        if line.split() and line.split()[0] in after_first.keys() | {t[:-4] for t in after_first}
    ]
    assert config_lines and all(line.rstrip().endswith("+0 ~0 -0") for line in config_lines), config_lines


@pytest.mark.e2e
def test_sql_reads_the_tables_under_their_schema(tmp_path: Path) -> None:
    db = tmp_path / "segment_assets.duckdb"
    with Simulator(seed=7) as sim:
        env = {
            "SEGMENT_API_TOKEN": sim.token,
            "SEGMENT_API_URL": sim.url,
            "SEGMENT_PACE_REQUESTS": "false",
            "SEGMENT_DUCKDB_PATH": str(db),
            "DAGSTER_HOME": str(tmp_path / "home"),
        }
        assert cli("sync", "--select", "sources", env=env).returncode == 0
        disabled = sorted(s["id"] for s in sim.items("listSources") if not s["enabled"])
    out = cli("sql", "SELECT id FROM segment.sources WHERE NOT enabled ORDER BY id", "--format", "json", env=env)
    assert out.returncode == 0, out.stderr
    assert [r["id"] for r in json.loads(out.stdout)] == disabled
    bad = cli("sql", "SELECT * FROM segment.nope", env=env)
    assert bad.returncode != 0 and "nope" in bad.stderr


def test_init_writes_a_connections_file_with_fixed_start_dates(tmp_path: Path) -> None:
    file = tmp_path / "connections.yaml"
    out = cli("init", "--file", str(file), "--name", "eu_prod", "--token-env", "SEGMENT_EU_TOKEN", "--region", "eu")
    assert out.returncode == 0, out.stderr
    from segment_assets.orchestration.connections import load_connections_file

    [conn] = load_connections_file(file)
    assert (conn.name, conn.token_env, conn.region) == ("eu_prod", "SEGMENT_EU_TOKEN", "eu")
    assert conn.daily_start and conn.monthly_start.endswith("-01")
    again = cli("init", "--file", str(file))
    assert again.returncode != 0 and "exists" in again.stderr


@pytest.mark.e2e
def test_a_terminal_shows_a_live_status_line(tmp_path: Path) -> None:
    import pty

    db = tmp_path / "segment_assets.duckdb"
    with Simulator(seed=7, latency_ms=5) as sim:
        env = {
            **os.environ,
            "SEGMENT_API_TOKEN": sim.token,
            "SEGMENT_API_URL": sim.url,
            "SEGMENT_PACE_REQUESTS": "false",
            "SEGMENT_DUCKDB_PATH": str(db),
            "DAGSTER_HOME": str(tmp_path / "h"),
            "COLUMNS": "200",
        }
        main, child = pty.openpty()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "segment_assets",
                "sync",
                "--select",
                "sources",
                "source_connected_destinations",
                "destinations",
                "destination_filters",
            ],
            stdin=child,
            stdout=child,
            stderr=child,
            env=env,
        )
        os.close(child)
        chunks = []
        while True:
            try:
                data = os.read(main, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout=240)
        os.close(main)
    text = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, text
    assert "\r\x1b[K" in text and "streams · " in text, "a status line redrawn in place"
    assert "TOTAL" in text and " - dagster - " not in text, "Dagster's event lines only with --verbose"


def committed_but_unrecorded(home: Path, db: Path, streams: list[str]) -> list[str]:
    """Streams whose change table holds rows of the home's last run but no materialization of it."""
    from dagster import AssetKey, DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        run_id = instance.get_runs(limit=1)[0].run_id
        with duckdb.connect(str(db), read_only=True) as con:
            committed = [
                s
                for s in streams
                if con.execute(f"SELECT count(*) FROM segment.{s}__ct WHERE header__run_id = ?", [run_id]).fetchone()[0]
            ]
        assert committed, "the stopped run committed nothing: the test proves nothing"

        def recorded(stream: str) -> bool:
            for record in instance.fetch_materializations(AssetKey(["segment", stream]), limit=20).records:
                tagged = (
                    record.asset_materialization.metadata.get("segment/run_id")
                    if record.asset_materialization
                    else None
                )
                if record.run_id == run_id or (tagged is not None and tagged.value == run_id):
                    return True
            return False

        return [s for s in committed if not recorded(s)]


@pytest.mark.e2e
@pytest.mark.parametrize("runner", ["segment-assets sync", "dagster asset materialize"])
def test_sigterm_stops_a_sync_promptly_and_keeps_every_table_committed(tmp_path: Path, runner: str) -> None:
    import signal
    import time

    db = tmp_path / "segment_assets.duckdb"
    streams = ["warehouses", "warehouse_connected_sources", "warehouse_selective_syncs", "sources", "labels"]
    # Same seed, same workspace: the first sync reads it without limits, the second under them.
    with Simulator(seed=7) as free, Simulator(seed=7, rate_limits="realistic") as sim:
        env = {
            **os.environ,
            "SEGMENT_API_TOKEN": sim.token,
            "SEGMENT_API_URL": sim.url,
            "SEGMENT_DUCKDB_PATH": str(db),
            "DAGSTER_HOME": str(tmp_path / "home"),
        }
        first = cli(
            "sync", "--select", *streams, env={**env, "SEGMENT_PACE_REQUESTS": "false", "SEGMENT_API_URL": free.url}
        )
        assert first.returncode == 0, first.stdout + first.stderr
        before = table_rows(db, "warehouse_selective_syncs")
        sim.workspace.update("sources", sim.workspace.list("sources")[0]["id"], name="Renamed before SIGTERM")
        log = (tmp_path / "sync.log").open("w")
        # Paced: the 2/min selective-sync endpoint makes this run wait minutes once its budget is spent.
        command = (
            [sys.executable, "-m", "segment_assets", "sync", "--select", *streams]
            if runner == "segment-assets sync"
            else [
                sys.executable,
                "-m",
                "dagster",
                "asset",
                "materialize",
                "-m",
                "segment_assets.definitions",
                "--select",
                ",".join(f"segment/{s}" for s in streams),
            ]
        )
        proc = subprocess.Popen(
            command, env={**env, "SEGMENT_PACE_REQUESTS": "true"}, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 180
        while sim.stats.by_operation["listSelectiveSyncsFromWarehouseAndSource"] < 2:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "sync.log").read_text()
            time.sleep(0.1)
        time.sleep(1.0)  # now it waits on the 2/min budget
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        stopped_in = time.monotonic() - sent
    output = (tmp_path / "sync.log").read_text()
    if runner == "segment-assets sync":
        assert proc.returncode == 130 and "stopped" in output, output
    else:  # Dagster turns SIGTERM into an interrupt of the run's step
        assert proc.returncode != 0 and "DagsterExecutionInterruptedError" in output, output[-3000:]
    assert stopped_in < 30, f"SIGTERM took {stopped_in:.1f}s"
    assert table_rows(db, "warehouse_selective_syncs") == before, "the interrupted stream kept its last commit"
    assert ("Renamed before SIGTERM",) in [
        (r[0],) for r in duckdb.connect(str(db), read_only=True).execute("SELECT name FROM segment.sources").fetchall()
    ], "streams finished before the signal were committed"
    assert not list((tmp_path / ".staging").glob("*.parquet")), "no staging debris"
    # Every table the stopped run committed has its materialization recorded, in the run or (when
    # the signal reached Dagster's own event handling) as a runless one naming the run.
    unrecorded = committed_but_unrecorded(tmp_path / "home", db, streams)
    assert not unrecorded, f"tables committed by the stopped run without a materialization: {unrecorded}"
    assert not Path(f"{db}.wal").exists(), "the file was closed (checkpointed), not left with a write-ahead log"


def table_rows(db: Path, table: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return sorted(con.execute(f"SELECT * FROM segment.{table}").fetchall(), key=repr)
    finally:
        con.close()
