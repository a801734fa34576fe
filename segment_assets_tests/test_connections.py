"""Several Segment workspaces side by side in one code location, each namespaced by its connection."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey

from segment_assets.api.streams import materialized_streams
from segment_assets.cli.commands import run_sync
from segment_assets.orchestration.connections import (
    Connection,
    ConnectionConfigError,
    connection_from_env,
    load_connections_file,
)
from segment_assets.orchestration.definitions import build_definitions
from segment_assets.orchestration.translator import SegmentTranslator
from segment_assets.orchestration.workspaces import Workspace
from segment_assets.simulator import Simulator
from segment_assets.storage import DuckDBTarget
from segment_assets_tests.test_assets import by_key, expected_rows, loaded_rows

ROOT = Path(__file__).resolve().parent.parent
CONFIG = [s for s in materialized_streams() if not s.windowing]


@pytest.fixture
def two_simulators() -> Iterator[tuple[Simulator, Simulator]]:
    with Simulator(seed=7, tokens=("us-token",)) as us, Simulator(seed=11, scale=0.5, tokens=("eu-token",)) as eu:
        yield us, eu


def write_connections(path: Path, us: Simulator, eu: Simulator, db: Path) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "connections": [
                    {
                        "name": "us_prod",
                        "token_env": "SEGMENT_US_TOKEN",
                        "region": "us",
                        "api_url": us.url,
                        "duckdb_path": str(db),
                        "pace_requests": False,
                    },
                    {
                        "name": "eu_prod",
                        "token_env": "SEGMENT_EU_TOKEN",
                        "region": "eu",
                        "api_url": eu.url,
                        "duckdb_path": str(db),
                        "pace_requests": False,
                        "owners": ["team:data-eu"],
                        "tags": {"tier": "gold"},
                    },
                ]
            }
        )
    )
    return path


def test_two_workspaces_are_namespaced_in_one_code_location(
    two_simulators: tuple[Simulator, Simulator], tmp_path: Path
) -> None:
    us, eu = two_simulators
    file = write_connections(tmp_path / "connections.yaml", us, eu, tmp_path / "segment_assets.duckdb")
    connections = load_connections_file(file)
    defs = build_definitions([Workspace(c) for c in connections])
    repo = defs.get_repository_def()
    keys = set(repo.asset_graph.get_all_asset_keys())
    us_keys = {k for k in keys if k.path[:2] == ["segment", "us_prod"]}
    eu_keys = {k for k in keys if k.path[:2] == ["segment", "eu_prod"]}
    assert len(us_keys) == len(eu_keys) == len(materialized_streams()) and keys == us_keys | eu_keys
    # Lineage stays inside a workspace: no asset of one has a parent in the other.
    for key in keys:
        assert {p.path[1] for p in repo.asset_graph.get(key).parent_keys} <= {key.path[1]}
    assert {j for j in repo.job_names if j.startswith("segment_")} == {
        f"segment_{n}_{w}" for n in ("us_prod", "eu_prod") for w in ("config", "daily", "monthly")
    }
    assert {s.name for s in repo.schedule_defs} == {
        f"segment_{n}_{w}_schedule" for n in ("us_prod", "eu_prod") for w in ("config", "daily", "monthly")
    }
    assert {s.name for s in repo.sensor_defs} == {
        "segment_us_prod_audit_trail_sensor",
        "segment_eu_prod_audit_trail_sensor",
    }
    assert set(defs.resources) == {"segment_us_prod", "storage_us_prod", "segment_eu_prod", "storage_eu_prod"}
    pools = {node.pool for a in defs.assets for node in [a.node_def]}
    assert pools == {"segment_api_us_prod", "segment_api_eu_prod"}, "each token gets its own concurrency pool"
    spec = repo.assets_defs_by_key[AssetKey(["segment", "eu_prod", "sources"])].specs_by_key[
        AssetKey(["segment", "eu_prod", "sources"])
    ]
    assert spec.owners == ["team:data-eu"] and spec.tags["tier"] == "gold"
    assert spec.metadata["dagster/table_name"] == "eu_prod.sources"

    env = {
        **os.environ,
        "SEGMENT_CONNECTIONS": str(file),
        "SEGMENT_US_TOKEN": "us-token",
        "SEGMENT_EU_TOKEN": "eu-token",
    }
    out = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0 and "Validation successful" in out.stdout + out.stderr, out.stdout + out.stderr


@pytest.mark.e2e
def test_both_workspaces_sync_from_their_own_api_and_changes_stay_apart(
    two_simulators: tuple[Simulator, Simulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    us, eu = two_simulators
    db = tmp_path / "segment_assets.duckdb"
    file = write_connections(tmp_path / "connections.yaml", us, eu, db)
    monkeypatch.setenv("SEGMENT_US_TOKEN", "us-token")
    monkeypatch.setenv("SEGMENT_EU_TOKEN", "eu-token")
    conns = {c.name: c for c in load_connections_file(file)}
    for name in conns:
        run_sync(None, workspace=Workspace(conns[name]), out=io.StringIO())
    targets = {"us_prod": (DuckDBTarget(db, schema="us_prod"), us), "eu_prod": (DuckDBTarget(db, schema="eu_prod"), eu)}
    for name, (target, sim) in targets.items():
        wrong = [
            s.name for s in CONFIG if by_key(s, expected_rows(s, target, sim)) != by_key(s, loaded_rows(s, target))
        ]
        assert wrong == [], f"{name}: tables differ from its own simulator"
    us_sources = {r[0] for r in targets["us_prod"][0].query("SELECT id FROM sources")}
    eu_sources = {r[0] for r in targets["eu_prod"][0].query("SELECT id FROM sources")}
    assert us_sources and eu_sources and not us_sources & eu_sources, "two different workspaces"
    # `<workspace schema>.sources` just works in the shared file.
    assert DuckDBTarget(db, schema="us_prod").query("SELECT count(*) FROM eu_prod.sources") == [(len(eu_sources),)]

    source = us.workspace.list("sources")[0]
    us.workspace.update("sources", source["id"], name="Renamed in US only")
    for name in conns:
        run_sync(["sources"], workspace=Workspace(conns[name]), out=io.StringIO())
    changes = {
        name: target.query(
            "SELECT count(*) FROM sources__ct WHERE header__run_id <> (SELECT min(header__run_id) FROM sources__ct)"
        )
        for name, (target, _) in targets.items()
    }
    us_changes = targets["us_prod"][0].query(
        "SELECT header__change_oper, id FROM sources__ct WHERE name = 'Renamed in US only'"
    )
    assert us_changes == [("U", source["id"])]
    eu_total = targets["eu_prod"][0].query("SELECT count(*), count(DISTINCT header__run_id) FROM sources__ct")[0]
    assert eu_total == (len(eu_sources), 1), f"the quiet workspace wrote change rows only in its first run: {changes}"


def test_a_token_in_the_file_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "connections.yaml"
    file.write_text("connections:\n  - name: us_prod\n    token: sk-live-123\n")
    with pytest.raises(ConnectionConfigError, match="token_env") as err:
        load_connections_file(file)
    assert "sk-live-123" not in str(err.value)


def test_bad_connections_say_what_to_fix(tmp_path: Path) -> None:
    file = tmp_path / "connections.yaml"
    file.write_text("connections:\n  - name: US Prod\n")
    with pytest.raises(ConnectionConfigError, match="lower-case"):
        load_connections_file(file)
    file.write_text("connections:\n  - {name: a}\n  - {name: a}\n")
    with pytest.raises(ConnectionConfigError, match="share the name"):
        load_connections_file(file)
    with pytest.raises(ValueError, match="unknown streams or groups"):
        Connection(name="x", include=["sourcez"])
    with pytest.raises(ValueError, match="cron"):
        Connection(name="x", config_cron="hourly")
    with pytest.raises(ConnectionConfigError, match="SEGMENT_LAKE_URL"):
        connection_from_env({"SEGMENT_TARGET": "lake"})


def test_zero_config_keeps_the_single_workspace_names() -> None:
    connection = connection_from_env({})
    repo = build_definitions([Workspace(connection)]).get_repository_def()
    assert AssetKey(["segment", "sources"]) in set(repo.asset_graph.get_all_asset_keys())
    assert {"segment_config", "segment_daily", "segment_monthly"} <= set(repo.job_names)
    assert connection.schema == "segment" and connection.pool == "segment_api"


def test_include_and_exclude_select_streams_and_their_children() -> None:
    connection = Connection(name="x", include=["sources", "warehouses"], exclude=["source_live_plugins"])
    names = {s.name for s in connection.streams()}
    assert {"sources", "source_details", "warehouses", "warehouse_syncs"} <= names
    assert "source_live_plugins" not in names and "destinations" not in names
    # A child whose parent is left out cannot read its ids, so it is left out too.
    assert "warehouse_selective_syncs" not in {
        s.name for s in Connection(name="y", exclude=["warehouse_connected_sources"]).streams()
    }


class TeamTranslator(SegmentTranslator):
    def get_group_name(self, stream, connection):  # type: ignore[no-untyped-def]
        return f"segment_{stream.group}"

    def get_owners(self, stream, connection):  # type: ignore[no-untyped-def]
        return ["team:analytics", *connection.owners]


def test_translator_override_renames_groups_and_adds_owners() -> None:
    connection = Connection(name="us_prod", owners=["alice@example.com"])
    repo = build_definitions([Workspace(connection, TeamTranslator())]).get_repository_def()
    key = AssetKey(["segment", "us_prod", "sources"])
    spec = repo.assets_defs_by_key[key].specs_by_key[key]
    assert spec.group_name == "segment_sources"
    assert spec.owners == ["team:analytics", "alice@example.com"]


@pytest.mark.e2e
def test_sync_picks_a_connection_by_name(two_simulators: tuple[Simulator, Simulator], tmp_path: Path) -> None:
    us, eu = two_simulators
    db = tmp_path / "segment_assets.duckdb"
    file = write_connections(tmp_path / "connections.yaml", us, eu, db)
    env = {
        **os.environ,
        "SEGMENT_CONNECTIONS": str(file),
        "SEGMENT_US_TOKEN": "us-token",
        "SEGMENT_EU_TOKEN": "eu-token",
        "DAGSTER_HOME": str(tmp_path / "home"),
    }
    (tmp_path / "home").mkdir()
    cli = [sys.executable, "-m", "segment_assets"]
    both = subprocess.run([*cli, "sync", "--select", "sources"], env=env, capture_output=True, text=True, timeout=300)
    assert both.returncode != 0 and "--connection" in both.stdout + both.stderr
    one = subprocess.run(
        [*cli, "sync", "--connection", "eu_prod", "--select", "sources"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stdout + one.stderr
    assert DuckDBTarget(db, schema="eu_prod").query("SELECT count(*) FROM sources") == [(len(eu.items("listSources")),)]
    assert not DuckDBTarget(db, schema="us_prod").table_exists("sources")


def test_yes_no_variables_read_alike_and_a_typo_is_an_error() -> None:
    assert connection_from_env({"SEGMENT_PACE_REQUESTS": "off"}).pace_requests is False
    assert connection_from_env({"SEGMENT_STEP_PER_GROUP": "Yes"}).step_per_group is True
    assert connection_from_env({}).pace_requests is True and connection_from_env({}).step_per_group is False
    with pytest.raises(ConnectionConfigError, match="SEGMENT_STEP_PER_GROUP='enabled'.*true or false"):
        connection_from_env({"SEGMENT_STEP_PER_GROUP": "enabled"})
