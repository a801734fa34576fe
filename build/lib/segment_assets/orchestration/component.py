"""`SegmentWorkspaceComponent`: one Segment workspace as a Dagster component.

Its YAML attributes are the fields of `connections.Connection` (name, token_env, region or
api_url, duckdb_path or lake_url, schema_name, include/exclude, update methods, config_cron,
daily_start/monthly_start, owners, tags...). Several component folders under
`segment_assets/defs/` load side by side into one code location, each namespaced by its
name. To shape the asset specs, subclass it and return your own `SegmentTranslator` from
`get_translator()`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dagster import Definitions
from dagster.components import Component, ComponentLoadContext, Resolvable
from pydantic import BaseModel

from segment_assets.orchestration.connections import Connection
from segment_assets.orchestration.translator import SegmentTranslator

if TYPE_CHECKING:
    # The workspaces module finds components by this class, and definitions import it: both are
    # imported where they are used.
    from segment_assets.orchestration.workspaces import Workspace


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
