"""segment-assets in a user's own Dagster project, as the README's "In your own Dagster project" tells it.

A throw-away project outside the repository, laid out by `create-dagster project` itself, with the
wheel built from this tree installed in a virtualenv of its own (with uv, seconds once its cache
holds Dagster; pip takes minutes). Then, as a user types them: `dg list components`, `dg scaffold
defs`, `dg check yaml`, `dg check defs` and `dg list defs` with unrelated SEGMENT_* variables set,
one `dagster asset materialize` of the component's `sources` and two downstream assets reading it
(run config naming only `lock_timeout`), and `segment-assets sql --connection` in the project.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import duckdb
import pytest
from dagster import AssetKey, DagsterInstance

from segment_assets.simulator import Simulator
from segment_assets_tests import services

# A virtualenv to install, five dg commands and a run in three step processes: minutes on a busy machine.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[1]
COMPONENT = "segment_assets.component.SegmentWorkspaceComponent"
PINS = ["dagster-dg-cli==1.13.27", "create-dagster==1.13.27", "dagster-duckdb==0.29.27"]
# What the tree holds besides the package sources: never part of a wheel, and large.
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "data", "build", "test-artifacts", "__pycache__", "*.egg-info")

DOWNSTREAM = """\
import dagster as dg
from dagster_duckdb import DuckDBResource

from segment_assets.component import StorageResource

SOURCES = dg.AssetKey(["segment", "my_segment", "sources"])


@dg.asset(deps=[SOURCES])
def enabled_sources(duckdb: DuckDBResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        (count,) = con.execute("SELECT count(*) FROM my_segment.sources WHERE enabled").fetchone()
    return dg.MaterializeResult(metadata={"enabled_sources": count})


@dg.asset(deps=[SOURCES])
def source_names(storage_my_segment: StorageResource) -> dg.MaterializeResult:
    with storage_my_segment.read_session() as con:
        names = [row[0] for row in con.execute("SELECT name FROM sources ORDER BY name").fetchall()]
    return dg.MaterializeResult(metadata={"names": ", ".join(names)})
"""

RESOURCES = """\
import dagster as dg
from dagster_duckdb import DuckDBResource


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"duckdb": DuckDBResource(database="data/segment.duckdb")})
"""


class Shell:
    """Commands in the project's folder and virtualenv, with the environment a user's shell has."""

    def __init__(self, venv: Path, cwd: Path, env: Mapping[str, str]) -> None:
        self.venv, self.cwd, self.env = venv, cwd, dict(env)

    def __call__(
        self, *argv: str, env: Mapping[str, str] | None = None, cwd: Path | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = services.run(
            argv,
            cwd=cwd or self.cwd,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=600,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc


@pytest.fixture
def user_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shell]:
    """`create-dagster project myproj` and a virtualenv holding the built wheel, dg and dagster-duckdb."""
    work = tmp_path_factory.mktemp("user_project")
    assert not work.is_relative_to(REPO), "outside the repository"
    source = work / "source"
    shutil.copytree(REPO, source, ignore=NOT_SOURCES)  # build/ stays out of the working tree
    services.run(
        # Built in isolation, with the setuptools pyproject.toml asks for: the test's own environment
        # may hold an older one (a fresh venv's), which rejects the SPDX `license` string.
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(source), "-w", "dist"],
        cwd=work,
        check=True,
    )
    [wheel] = (work / "dist").glob("segment_assets-*.whl")
    venv = work / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEGMENT_", "VIRTUAL_ENV", "PYTHON"))}
    env |= {
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "VIRTUAL_ENV": str(venv),
        "DAGSTER_HOME": str(work / "dagster_home"),
        "COLUMNS": "200",  # dg's tables do not wrap the component's name
    }
    (work / "dagster_home").mkdir()
    install = installer(venv, env)
    install(str(wheel), *PINS)
    services.run(["create-dagster", "project", "myproj", "--no-uv-sync"], cwd=work, env=env, check=True)
    project = work / "myproj"
    install("--no-deps", "-e", str(project))
    yield Shell(venv, project, env)


def installer(venv: Path, env: Mapping[str, str]) -> Callable[..., None]:
    """Creates the virtualenv; installs into it with uv (what create-dagster uses, and seconds from
    its cache) when the test extras brought it, else with pip."""
    uv = Path(sys.executable).with_name("uv")
    if uv.exists():
        services.run([str(uv), "venv", "-q", "--python", sys.executable, str(venv)], env=env, check=True)
        command = [str(uv), "pip", "install", "-q", "--python", str(venv / "bin" / "python")]
    else:
        services.run([sys.executable, "-m", "venv", str(venv)], env=env, check=True)
        command = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]

    def install(*args: str) -> None:
        services.run([*command, *args], env=env, check=True, capture_output=True)

    return install


def test_a_create_dagster_project_lists_scaffolds_loads_and_materializes_the_component(
    user_project: Shell, sim: Simulator
) -> None:
    sh = user_project
    listed = json.loads(sh("dg", "list", "components", "--json").stdout)
    assert COMPONENT in {c["key"] for c in listed["items"]}

    scaffold = sh(
        "dg", "scaffold", "defs", COMPONENT, "my_segment",
        "--token-env", "MY_SEGMENT_TOKEN", "--api-url", sim.url, "--duckdb-path", "data/segment.duckdb",
    )  # fmt: skip
    defs_yaml = sh.cwd / "src" / "myproj" / "defs" / "my_segment" / "defs.yaml"
    assert "Creating defs at" in scaffold.stdout and defs_yaml.exists()
    assert "token_env: MY_SEGMENT_TOKEN" in defs_yaml.read_text()
    assert "All component YAML validated successfully" in sh("dg", "check", "yaml").stdout

    (defs_yaml.parent.parent / "segment_reports.py").write_text(DOWNSTREAM)
    (defs_yaml.parent.parent / "resources.py").write_text(RESOURCES)
    # Set in the user's shell for something else: a connections file of another code location, a
    # lake target without its URL. Neither is the component's business.
    connections = sh.cwd.parent / "connections.yaml"
    connections.write_text("connections:\n  - name: my_segment\n    token_env: OTHER_TOKEN\n")
    unrelated = {"SEGMENT_CONNECTIONS": str(connections), "SEGMENT_TARGET": "lake"}
    checked = sh("dg", "check", "defs", env=unrelated)
    assert "All definitions loaded successfully" in checked.stdout
    assert "site-packages" not in checked.stdout + checked.stderr
    listed_defs = json.loads(sh("dg", "list", "defs", "--json", env=unrelated).stdout)
    keys = {a["asset_key"] for a in listed_defs["assets"]}
    assert {"segment/my_segment/sources", "enabled_sources", "source_names"} <= keys
    assert {r["name"] for r in listed_defs["resources"]} == {"segment_my_segment", "storage_my_segment", "duckdb"}

    # Run config naming only lock_timeout: the component's file and schema stay.
    run_config = sh.cwd / "run_config.yaml"
    run_config.write_text("resources:\n  storage_my_segment:\n    config:\n      lock_timeout: 60\n")
    selection = "segment/my_segment/sources,enabled_sources,source_names"
    materialized = sh(
        "dagster", "asset", "materialize", "-m", "myproj.definitions", "--select", selection, "-c", str(run_config),
        env={**unrelated, "MY_SEGMENT_TOKEN": sim.token},
    )  # fmt: skip
    assert "RUN_SUCCESS" in materialized.stderr + materialized.stdout
    served = sim.items("listSources")
    assert not (sh.cwd / "data" / "segment_assets.duckdb").exists(), "not the default file"
    with duckdb.connect(str(sh.cwd / "data" / "segment.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM my_segment.sources").fetchall() == [(len(served),)]
    with DagsterInstance.from_config(sh.env["DAGSTER_HOME"]) as instance:
        enabled = instance.get_latest_materialization_event(AssetKey("enabled_sources"))
        names = instance.get_latest_materialization_event(AssetKey("source_names"))
    assert enabled is not None and enabled.asset_materialization is not None
    assert enabled.asset_materialization.metadata["enabled_sources"].value == sum(s["enabled"] for s in served)
    assert names is not None and names.asset_materialization is not None
    assert names.asset_materialization.metadata["names"].value == ", ".join(sorted(s["name"] for s in served))

    # The command line, in the project's folder, finds the project's workspace.
    counted = sh(
        "segment-assets", "sql", "--connection", "my_segment", "--format", "csv", "SELECT count(*) FROM sources"
    )
    assert counted.stdout.split() == ["count_star()", str(len(served))]
    elsewhere = sh("segment-assets", "sql", "--connection", "my_segment", "SELECT 1", cwd=sh.cwd.parent, check=False)
    assert elsewhere.returncode != 0 and "run the command in your project's folder" in elsewhere.stderr
