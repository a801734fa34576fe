"""SegmentWorkspaceComponent: a workspace configured in YAML, loaded by Dagster's component loader."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, BetaWarning, ComponentTree, DagsterInstance, TableColumn, TableSchema
from dagster.components.testing import create_defs_folder_sandbox

from segment_assets.cli.commands import pick_workspace, run_sync
from segment_assets.orchestration.component import SegmentWorkspaceComponent
from segment_assets.orchestration.connections import ConnectionConfigError
from segment_assets.orchestration.translator import SegmentTranslator
from segment_assets.orchestration.workspaces import resolve_workspaces
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
