"""`SegmentWorkspaceComponent`: one Segment workspace as a Dagster component.

Its YAML attributes are the fields of `connections.Connection` (name, token_env, region or
api_url, duckdb_path or lake_url, lock_timeout, schema_name, include/exclude, update methods,
config_cron, daily_start/monthly_start, owners, tags...). Several component folders in a
project's defs folder load side by side into one code location, each namespaced by its name.
To shape the asset specs, subclass it and return your own `SegmentTranslator` from
`get_translator()`.

`dg` finds it through the `dagster_dg_cli.registry_modules` entry point (`segment_assets.component`),
and `dg scaffold defs segment_assets.component.SegmentWorkspaceComponent my_segment --token-env
SEGMENT_TOKEN ...` writes its YAML through `SegmentWorkspaceScaffolder`. Building it builds only
what its YAML says: nothing here reads SEGMENT_CONNECTIONS, SEGMENT_TARGET or the library's own
code location.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from dagster import Definitions, Scaffolder, ScaffoldRequest, scaffold_with
from dagster.components import Component, ComponentLoadContext, Resolvable, scaffold_component
from pydantic import BaseModel, Field, ValidationError

from segment_assets.orchestration.connections import DEFAULT_TOKEN_ENV, Connection
from segment_assets.orchestration.translator import SegmentTranslator

if TYPE_CHECKING:
    # The workspaces module finds components by this class, and definitions import it: both are
    # imported where they are used.
    from segment_assets.orchestration.workspaces import Workspace


class ScaffoldParams(BaseModel):
    """What `dg scaffold defs ... --name ... --token-env ...` asks for: the few fields a workspace needs."""

    name: str | None = Field(default=None, description="The workspace's name (default: the folder's name).")
    token_env: str = Field(default=DEFAULT_TOKEN_ENV, description="The variable holding its Public API token.")
    region: Literal["us", "eu"] | None = Field(default=None, description="'us' (default) or 'eu'.")
    api_url: str | None = Field(default=None, description="Base URL instead of a region (e.g. a simulator).")
    duckdb_path: str | None = Field(
        default=None, description="DuckDB file for the tables (default data/segment_assets.duckdb)."
    )
    lake_url: str | None = Field(default=None, description="Delta lake root instead: file:///path or s3://bucket/x.")


def name_from_folder(folder: str) -> str:
    """A workspace name (lower-case letters, digits, _) from the folder `dg scaffold defs` creates."""
    name = re.sub(r"[^a-z0-9_]+", "_", folder.lower()).strip("_")[:40]
    return name if name[:1].isalpha() else f"segment_{name}"[:40]


class SegmentWorkspaceScaffolder(Scaffolder[ScaffoldParams]):
    """Writes a `defs.yaml` that names the workspace, its token's variable, where the API is and where
    the tables go, checked as the component will check it, so `dg check yaml` accepts what it writes."""

    @classmethod
    def get_scaffold_params(cls) -> type[ScaffoldParams]:
        return ScaffoldParams

    def scaffold(self, request: ScaffoldRequest[ScaffoldParams]) -> None:
        params = request.params or ScaffoldParams()
        attributes: dict[str, object] = {
            "name": params.name or name_from_folder(request.target_path.name),
            "token_env": params.token_env,
        }
        if params.api_url:
            attributes["api_url"] = params.api_url
        if params.region or not params.api_url:
            attributes["region"] = params.region or "us"
        if params.lake_url:
            attributes["lake_url"] = params.lake_url
        if params.duckdb_path or not params.lake_url:
            attributes["duckdb_path"] = params.duckdb_path or "data/segment_assets.duckdb"
        try:
            Connection.model_validate(attributes)
        except ValidationError as exc:
            messages = "; ".join(e["msg"] for e in exc.errors())
            raise ValueError(f"cannot scaffold a Segment workspace: {messages}") from None
        scaffold_component(request, attributes)


@scaffold_with(SegmentWorkspaceScaffolder)
class SegmentWorkspaceComponent(Connection, Component, Resolvable):
    """A Segment workspace replicated through the Public API: one asset per stream, its jobs,
    schedules and audit-trail sensor, all namespaced by `name`."""

    @classmethod
    def model(cls) -> type[BaseModel]:
        # The YAML model Dagster derives must not echo values back in its errors (a refused token).
        derived = super().model()
        derived.model_config["hide_input_in_errors"] = True
        derived.model_rebuild(force=True)
        return derived

    def get_translator(self) -> SegmentTranslator:
        return SegmentTranslator()

    def connection(self) -> Connection:
        return Connection.model_validate(self.model_dump())

    def workspace(self) -> Workspace:
        from segment_assets.orchestration.workspaces import Workspace

        return Workspace(self.connection(), self.get_translator(), f"the component YAML of {self.name!r}")

    def build_defs(self, context: ComponentLoadContext) -> Definitions:
        from segment_assets.orchestration.definitions import build_workspace_definitions

        return build_workspace_definitions(self.workspace())
