"""SegmentWorkspaceComponent: a workspace configured in YAML, loaded by Dagster's component loader."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from dagster import AssetKey, BetaWarning
from dagster.components.testing import create_defs_folder_sandbox

from segment_assets.orchestration.component import SegmentWorkspaceComponent
from segment_assets.orchestration.connections import component_connections
from segment_assets.orchestration.translator import SegmentTranslator

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


def test_the_command_line_reads_component_yaml_as_connections(tmp_path: Any) -> None:
    folder = tmp_path / "us_prod"
    folder.mkdir()
    (folder / "defs.yaml").write_text(f"type: {COMPONENT}\nattributes:\n  name: us_prod\n  region: eu\n")
    [connection] = component_connections(tmp_path)
    assert (connection.name, connection.region) == ("us_prod", "eu")
