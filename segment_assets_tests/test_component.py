"""SegmentWorkspaceComponent: a workspace configured in YAML, loaded by Dagster's component loader."""

from __future__ import annotations

import importlib
import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import (
    AssetKey,
    BetaWarning,
    ComponentTree,
    DagsterInstance,
    DagsterInvalidConfigError,
    Definitions,
    TableColumn,
    TableSchema,
    asset,
    materialize,
)
from dagster.components.testing import create_defs_folder_sandbox
from dagster_duckdb import DuckDBResource

from segment_assets.cli.commands import pick_workspace, run_sync
from segment_assets.orchestration import workspaces
from segment_assets.orchestration.component import SegmentWorkspaceComponent
from segment_assets.orchestration.connections import Connection, ConnectionConfigError
from segment_assets.orchestration.resources import (
    DuckDBStorage,
    SegmentResource,
    StorageResource,
    segment_resource,
    storage_resource,
)
from segment_assets.orchestration.translator import SegmentTranslator
from segment_assets.orchestration.workspaces import find_dg_project, resolve_workspaces
from segment_assets.simulator import Simulator
from segment_assets.storage import DuckDBTarget

COMPONENT = "segment_assets.component.SegmentWorkspaceComponent"


def load(attributes: dict[str, Any], component: type = SegmentWorkspaceComponent) -> Any:
    with warnings.catch_warnings(), create_defs_folder_sandbox() as sandbox:
        warnings.simplefilter("ignore", BetaWarning)
        path = sandbox.scaffold_component(
            component,
            defs_yaml_contents={"type": f"{component.__module__}.{component.__qualname__}", "attributes": attributes},
        )
        with sandbox.load_component_and_build_defs(defs_path=path) as (loaded, defs):
            return loaded, defs, path


def test_yaml_workspace_builds_namespaced_assets_with_owners_and_tags() -> None:
    component, defs, _ = load(
        {
            "name": "eu_prod",
            "token_env": "SEGMENT_EU_TOKEN",
            "region": "eu",
            "owners": ["team:data"],
            "tags": {"tier": "gold"},
            "include": ["sources", "destinations"],
            "update_methods": {"sources": "full_load"},
        }
    )
    assert isinstance(component, SegmentWorkspaceComponent)
    specs = {s.key: s for s in defs.resolve_all_asset_specs()}
    assert AssetKey(["segment", "eu_prod", "sources"]) in specs
    assert all(k.path[:2] == ["segment", "eu_prod"] for k in specs)
    assert not any(k.path[-1].startswith("warehouse") for k in specs), "include selects the named groups only"
    spec = specs[AssetKey(["segment", "eu_prod", "sources"])]
    assert spec.owners == ["team:data"] and spec.tags["tier"] == "gold" and spec.group_name == "eu_prod__sources"
    assert defs.resources["storage_eu_prod"].update_methods == {"sources": "full_load"}
    assert defs.resources["segment_eu_prod"].base_url == "https://eu1.api.segmentapis.com"


def error_chain(error: BaseException) -> str:
    """The loader's error and its causes, as a traceback prints them."""
    parts = []
    while error is not None:
        parts.append(str(error))
        error = error.__cause__ or error.__context__
    return "\n".join(parts)


def test_bad_yaml_names_the_field_and_never_echoes_a_token() -> None:
    with pytest.raises(Exception) as err:
        load({"name": "eu_prod", "token": "sk-live-999"})
    assert "token_env" in error_chain(err.value) and "sk-live-999" not in error_chain(err.value)
    with pytest.raises(Exception) as err:
        load({"name": "eu_prod", "update_methods": {"sources": "sometimes"}})
    assert "update method 'sometimes'" in error_chain(err.value)


class RenamingComponent(SegmentWorkspaceComponent):
    """What a team writes to shape the specs without forking: its own translator."""

    def get_translator(self) -> SegmentTranslator:
        class Renamed(SegmentTranslator):
            def get_group_name(self, stream, connection):  # type: ignore[no-untyped-def]
                return "segment_config"

        return Renamed()


def test_a_subclass_brings_its_own_translator() -> None:
    _, defs, _ = load({"name": "us_prod", "include": ["labels"]}, RenamingComponent)
    assert {s.group_name for s in defs.resolve_all_asset_specs()} == {"segment_config"}


class CustomComponent(SegmentWorkspaceComponent):
    """A component whose translator changes what the command line and a run must both honour:
    the asset keys and the column schema a materialization records."""

    def get_translator(self) -> SegmentTranslator:
        class Custom(SegmentTranslator):
            def get_asset_key(self, stream, connection):  # type: ignore[no-untyped-def]
                return AssetKey(["custom", connection.name, stream.name])

            def get_column_schema(self, stream):  # type: ignore[no-untyped-def]
                columns = super().get_column_schema(stream).columns
                return TableSchema(columns=[TableColumn(c.name, c.type, description="custom") for c in columns])

        return Custom()


@contextmanager
def component_tree(attributes: dict[str, Any], component: type = SegmentWorkspaceComponent) -> Iterator[ComponentTree]:
    """A defs folder holding one component, as Dagster loads it."""
    with warnings.catch_warnings(), create_defs_folder_sandbox() as sandbox:
        warnings.simplefilter("ignore", BetaWarning)
        sandbox.scaffold_component(
            component,
            defs_yaml_contents={"type": f"{component.__module__}.{component.__qualname__}", "attributes": attributes},
        )
        with sandbox.build_component_tree() as tree:
            yield tree


def test_components_and_the_connections_file_resolve_together(tmp_path: Path) -> None:
    file = tmp_path / "connections.yaml"
    file.write_text("connections:\n  - name: eu_prod\n    region: eu\n")
    with component_tree({"name": "us_prod"}, CustomComponent) as tree:
        both = resolve_workspaces({"SEGMENT_CONNECTIONS": str(file)}, tree)
        alone = resolve_workspaces({}, tree)
    assert [(w.name, w.origin) for w in both] == [
        ("us_prod", "the component YAML of 'us_prod'"),
        ("eu_prod", str(file)),
    ]
    assert both[0].asset_key("sources") == AssetKey(["custom", "us_prod", "sources"]), "the component's translator"
    assert both[1].asset_key("sources") == AssetKey(["segment", "eu_prod", "sources"])
    assert [w.name for w in alone] == ["us_prod"], "a component names a workspace: no zero-config one"
    file.write_text("connections:\n  - name: us_prod\n")
    with component_tree({"name": "us_prod"}) as tree, pytest.raises(ConnectionConfigError, match="share the name"):
        resolve_workspaces({"SEGMENT_CONNECTIONS": str(file)}, tree)


def test_without_configuration_the_environment_names_the_workspace() -> None:
    [workspace] = resolve_workspaces({"SEGMENT_REGION": "eu"}, None)
    assert (workspace.name, workspace.connection.region, workspace.origin) == ("default", "eu", "the environment")
    assert workspace.asset_key("sources") == AssetKey(["segment", "sources"])


def test_sync_and_its_runs_use_the_component_translator(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_TOKEN", sim.token)
    db = tmp_path / "segment_assets.duckdb"
    attributes = {
        "name": "acme",
        "token_env": "ACME_TOKEN",
        "api_url": sim.url,
        "duckdb_path": str(db),
        "pace_requests": False,
        "rate_limit_store": "memory",
    }
    with component_tree(attributes, CustomComponent) as tree:
        workspace = pick_workspace(None, components=tree)
        run_sync(["labels"], workspace=workspace, out=io.StringIO())
    event = DagsterInstance.get().get_latest_materialization_event(AssetKey(["custom", "acme", "labels"]))
    assert event is not None and event.asset_materialization is not None, "materialized under the custom key"
    schema = event.asset_materialization.metadata["dagster/column_schema"].value
    assert schema.columns and {c.description for c in schema.columns} == {"custom"}
    assert DuckDBTarget(db, schema="acme").query("SELECT count(*) FROM labels") == [(len(sim.items("listLabels")),)]


# -- the component as a library: scaffolded by dg, loaded without side effects, read downstream ---------


def test_the_scaffolder_writes_the_fields_a_workspace_needs_and_the_file_loads() -> None:
    with warnings.catch_warnings(), create_defs_folder_sandbox() as sandbox:
        warnings.simplefilter("ignore", BetaWarning)
        path = sandbox.scaffold_component(
            SegmentWorkspaceComponent,
            defs_path="my_segment",
            scaffold_params={"token_env": "MY_SEGMENT_TOKEN", "region": "eu", "duckdb_path": "data/segment.duckdb"},
        )
        written = yaml.safe_load((path / "defs.yaml").read_text())
        with sandbox.load_component_and_build_defs(defs_path=path) as (component, defs):
            storage = defs.resources["storage_my_segment"]
            segment = defs.resources["segment_my_segment"]
    assert written["attributes"] == {
        "name": "my_segment",  # the folder's name
        "token_env": "MY_SEGMENT_TOKEN",
        "region": "eu",
        "duckdb_path": "data/segment.duckdb",
    }
    assert component.name == "my_segment"
    assert (storage.path, storage.schema_name) == ("data/segment.duckdb", "my_segment")
    assert (segment.token_env, segment.base_url) == ("MY_SEGMENT_TOKEN", "https://eu1.api.segmentapis.com")


def test_the_scaffolder_writes_a_lake_and_an_api_url_and_refuses_a_bad_name() -> None:
    with warnings.catch_warnings(), create_defs_folder_sandbox() as sandbox:
        warnings.simplefilter("ignore", BetaWarning)
        path = sandbox.scaffold_component(
            SegmentWorkspaceComponent,
            defs_path="eu-lake",
            scaffold_params={"api_url": "http://127.0.0.1:8765", "lake_url": "file:///tmp/lake"},
        )
        attributes = yaml.safe_load((path / "defs.yaml").read_text())["attributes"]
        with pytest.raises(ValueError, match="cannot scaffold a Segment workspace: .*lower-case letters"):
            sandbox.scaffold_component(SegmentWorkspaceComponent, scaffold_params={"name": "My Segment"})
    assert attributes == {
        "name": "eu_lake",
        "token_env": "SEGMENT_API_TOKEN",
        "api_url": "http://127.0.0.1:8765",
        "lake_url": "file:///tmp/lake",
    }


def storage_as_run_sees_it(storage: StorageResource, run_config: dict[str, Any] | None) -> dict[str, Any]:
    """The storage resource a run gets, after Dagster applies the run config to the bound one."""

    @asset
    def probe(storage_acme: StorageResource) -> dict[str, Any]:
        return storage_acme.model_dump()

    result = materialize([probe], resources={"storage_acme": storage}, run_config=run_config or {})
    return result.output_for_node("probe")


def test_partial_run_config_keeps_the_components_path_and_schema(tmp_path: Path) -> None:
    connection = Connection(name="acme", duckdb_path=str(tmp_path / "acme.duckdb"), lock_timeout=30)
    storage = storage_resource(connection)
    assert isinstance(storage, DuckDBStorage) and type(storage).__name__ == "DuckDBStorage"
    only_timeout = {"resources": {"storage_acme": {"config": {"lock_timeout": 5}}}}
    seen = storage_as_run_sees_it(storage, only_timeout)
    assert (seen["path"], seen["schema_name"], seen["lock_timeout"]) == (str(tmp_path / "acme.duckdb"), "acme", 5)
    assert storage_as_run_sees_it(storage, None)["lock_timeout"] == 30, "lock_timeout from the YAML"
    moved = {"resources": {"storage_acme": {"config": {"path": str(tmp_path / "other.duckdb")}}}}
    seen = storage_as_run_sees_it(storage, moved)
    assert (seen["path"], seen["schema_name"]) == (str(tmp_path / "other.duckdb"), "acme"), "a field named wins"
    lake = storage_resource(
        Connection(name="acme", lake_url="file:///tmp/lake", update_methods={"sources": "full_load"})
    )
    seen = storage_as_run_sees_it(lake, {"resources": {"storage_acme": {"config": {"update_method": "full_load"}}}})
    assert (seen["url"], seen["schema_name"], seen["update_methods"]) == (
        "file:///tmp/lake",
        "acme",
        {"sources": "full_load"},
    )


def test_partial_run_config_on_the_api_resource_keeps_its_url_or_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_TOKEN", "t-1")
    segment = segment_resource(Connection(name="acme", token_env="ACME_TOKEN", api_url="http://127.0.0.1:9"))

    @asset
    def probe(segment_acme: SegmentResource) -> tuple[str, str, int]:
        return segment_acme.base_url, segment_acme.connection_name, segment_acme.max_streams

    def run(config: dict[str, Any]) -> Any:
        return materialize([probe], resources={"segment_acme": segment}, run_config=config).output_for_node("probe")

    assert run({}) == ("http://127.0.0.1:9", "acme", 16)
    with_token = {"api_token": {"env": "ACME_TOKEN"}, "max_streams": 4}
    assert run({"resources": {"segment_acme": {"config": with_token}}}) == ("http://127.0.0.1:9", "acme", 4)
    with pytest.raises(DagsterInvalidConfigError, match='Missing required config entry "api_token"'):
        run({"resources": {"segment_acme": {"config": {"max_streams": 4}}}})


def test_lock_timeout_is_for_a_duckdb_file() -> None:
    with pytest.raises(ValueError, match="lock_timeout is for a DuckDB file"):
        Connection(name="acme", lake_url="file:///tmp/lake", lock_timeout=5)
    with pytest.raises(ValueError, match="greater than 0"):
        Connection(name="acme", lock_timeout=0)


def test_the_library_builds_its_own_code_location_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a user's project sets for other purposes (a connections file of its own, a lake elsewhere)
    reaches neither the import of the library nor the component."""
    monkeypatch.setenv("SEGMENT_CONNECTIONS", "/nonexistent/connections.yaml")
    monkeypatch.setenv("SEGMENT_TARGET", "lake")
    monkeypatch.delenv("SEGMENT_LAKE_URL", raising=False)
    library = importlib.reload(importlib.import_module("segment_assets.definitions"))
    importlib.reload(importlib.import_module("segment_assets.component"))
    _, defs, _ = load({"name": "my_segment", "include": ["labels"]})
    assert {k.path[-1] for k in (s.key for s in defs.resolve_all_asset_specs())} == {"labels"}
    assert set(defs.resources) == {"segment_my_segment", "storage_my_segment"}
    with pytest.raises(ConnectionConfigError, match="SEGMENT_CONNECTIONS=/nonexistent"):
        library.defs()  # the library's own code location reads them, when Dagster loads it


def write_dg_project(root: Path, package: str, attributes: dict[str, Any], *, name: str | None = None) -> None:
    """A dg project as `create-dagster project` lays it out, holding one workspace component."""
    root.mkdir(exist_ok=True)
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "{name or package}"\nversion = "0.1.0"\n\n'
        f'[tool.dg]\ndirectory_type = "project"\n\n[tool.dg.project]\nroot_module = "{package}"\n'
    )
    defs = root / "src" / package / "defs" / attributes["name"]
    defs.mkdir(parents=True)
    for folder in (defs.parent.parent, defs.parent):
        (folder / "__init__.py").write_text("")
    (defs / "defs.yaml").write_text(yaml.safe_dump({"type": COMPONENT, "attributes": attributes}))


def test_commands_find_the_components_of_the_project_they_run_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "user_project"
    write_dg_project(project, "h20_user_project", {"name": "my_segment", "token_env": "MY_SEGMENT_TOKEN"})
    monkeypatch.syspath_prepend(str(project / "src"))
    monkeypatch.chdir(project / "src")  # anywhere inside the project
    assert find_dg_project() == project
    workspace = pick_workspace("my_segment")
    assert (workspace.name, workspace.origin) == ("my_segment", "the component YAML of 'my_segment'")
    with pytest.raises(SystemExit, match=f"the dg project in {project} has no SegmentWorkspaceComponent named 'x'"):
        pick_workspace("x")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=f"no dg project at or above {tmp_path}: run the command in your project"):
        pick_workspace("my_segment")


def test_the_library_reads_its_own_defs_only_from_its_own_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installed, the folder above the package is site-packages, where a wheel built with hatch's
    `force-include` leaves its project's pyproject.toml: not the library's project."""
    assert workspaces.project_components() is not None, "this checkout"
    write_dg_project(tmp_path, "h20_site_project", {"name": "theirs"}, name="myproj")
    monkeypatch.setattr(workspaces, "PROJECT_ROOT", tmp_path)
    assert workspaces.project_components() is None


@pytest.mark.parametrize("on", ["duckdb", "lake"])
def test_an_asset_of_ones_own_reads_a_segment_table_downstream(
    on: str, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the README shows: an asset depending on `segment/<name>/sources` that reads its table,
    through dagster-duckdb's resource (DuckDB) or the component's storage resource (either target)."""
    monkeypatch.setenv("MY_SEGMENT_TOKEN", sim.token)
    where = {"duckdb_path": str(tmp_path / "segment.duckdb")} if on == "duckdb" else {"lake_url": tmp_path.as_uri()}
    attributes = {"name": "my_segment", "token_env": "MY_SEGMENT_TOKEN", "api_url": sim.url, "pace_requests": False}
    sources = AssetKey(["segment", "my_segment", "sources"])

    @asset(deps=[sources])
    def source_names(storage_my_segment: StorageResource) -> list[str]:
        with storage_my_segment.read_session() as con:
            return [r[0] for r in con.execute("SELECT name FROM sources ORDER BY name").fetchall()]

    @asset(deps=[sources])
    def enabled_sources(duckdb: DuckDBResource) -> int:
        with duckdb.get_connection() as con:
            return con.execute("SELECT count(*) FROM my_segment.sources WHERE enabled").fetchall()[0][0]

    downstream: list[Any] = [source_names]
    resources: dict[str, Any] = {}
    if on == "duckdb":
        downstream.append(enabled_sources)
        resources["duckdb"] = DuckDBResource(database=where["duckdb_path"])
    _, component_defs, _ = load({**attributes, **where, "rate_limit_store": "memory"})
    defs = Definitions.merge(component_defs, Definitions(assets=downstream, resources=resources))
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(asset_selection=[sources, *(a.key for a in downstream)])
    served = sim.items("listSources")
    assert result.output_for_node("source_names") == sorted(s["name"] for s in served)
    if on == "duckdb":
        assert result.output_for_node("enabled_sources") == sum(1 for s in served if s["enabled"])
