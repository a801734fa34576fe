"""The `segment-assets` command, run as a user would: a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb

from segment_assets.simulator import Simulator
from segment_assets.streams import STREAMS


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "segment_assets", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


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


def test_demo_loads_the_simulator_workspace(tmp_path: Path) -> None:
    db = tmp_path / "demo.duckdb"
    out = cli("demo", "--duckdb", str(db), "--select", "sources", "destinations", "tracking_plans",
              "tracking_plan_rules", env={"DAGSTER_HOME": str(tmp_path / "home")})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "TOTAL" in out.stdout and "FROM segment.sources" in out.stdout
    with Simulator(seed=7) as sim:
        expected = {"sources": len(sim.items("listSources")), "destinations": len(sim.items("listDestinations"))}
    con = duckdb.connect(str(db), read_only=True)
    for table, n in expected.items():
        assert con.execute(f"SELECT count(*) FROM demo.segment.{table}").fetchone()[0] == n


def test_sync_against_a_workspace_from_the_environment(tmp_path: Path) -> None:
    with Simulator(seed=11, tokens=("tok-env-123",)) as sim:
        env = {"SEGMENT_API_TOKEN": "tok-env-123", "SEGMENT_API_URL": sim.url, "SEGMENT_PACE_REQUESTS": "false",
               "SEGMENT_DUCKDB_PATH": str(tmp_path / "w.duckdb"), "DAGSTER_HOME": str(tmp_path / "home")}
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
