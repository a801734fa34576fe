"""One overridable place that turns a stream declaration into its Dagster `AssetSpec`.

Like dagster-dlt's `DagsterDltTranslator`: subclass `SegmentTranslator`, override the aspect
you want (group names, owners, tags, description...), and pass an instance to
`build_workspace_definitions` (or the component's `translator`). Specs are built apart from
execution, so a renamed group or an added owner never touches how streams are read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import AssetKey, AssetSpec, TableColumn, TableSchema

from segment_assets.api.streams import StreamSpec
from segment_assets.api.tables import table_def
from segment_assets.orchestration.connections import Connection
from segment_assets.storage.history import HISTORY_SUFFIX


class SegmentTranslator:
    """The default mapping; every method may be overridden."""

    def get_asset_key(self, stream: StreamSpec, connection: Connection) -> AssetKey:
        return AssetKey([*connection.asset_key_prefix, stream.name])

    def get_group_name(self, stream: StreamSpec, connection: Connection) -> str:
        # Two workspaces in one code location: groups stay per workspace in the lineage view.
        return stream.group if connection.default_names else f"{connection.name}__{stream.group}"

    def get_description(self, stream: StreamSpec, connection: Connection, table_name: str) -> str:
        op = stream.operation
        return (
            f"Segment `{stream.operation_id}` (GET {stream.path}, {stream.stability}) into `{table_name}`; "
            f"key ({', '.join(stream.primary_key)}); {stream.update_method.value}."
            + (f" Rate limit {op.rate_limit_per_minute:g}/min." if op.rate_limit_per_minute else "")
            + (f" Requires the '{op.feature_gate}' feature." if op.feature_gate else "")
            + (f" {stream.decision}." if stream.decision else "")
            + (
                f" History: `{table_name}{HISTORY_SUFFIX}`, every version of every row (valid_from, valid_to)."
                if stream.update_method.keeps_changes
                else ""
            )
            + " "
            + self._refresh(stream, connection)
        )

    def _refresh(self, stream: StreamSpec, connection: Connection) -> str:
        """How to refresh the table, and what "Materialize all" on the lineage page does to it."""
        jobs = connection.job_names
        windowing = stream.windowing
        if windowing is None:
            return (
                f"To refresh: Jobs → `{jobs['config']}` → Materialize all (every configuration table, one run: "
                "the run its schedule launches)."
            )
        what, start = (
            ("daily", connection.daily_start)
            if windowing.partitioning.value == "daily"
            else ("monthly", connection.monthly_start)
        )
        return (
            f"Partitioned by {'UTC day' if what == 'daily' else 'UTC month'} since {start}: **Materialize all** on "
            f"the lineage page launches a backfill of every {what} partition since {start}, whatever range its "
            f"page shows. "
            f"To refresh: Jobs → `{jobs[what]}` with one partition (its schedule reads the latest), or a range."
        )

    def get_owners(self, stream: StreamSpec, connection: Connection) -> list[str]:
        return list(connection.owners)

    def get_tags(self, stream: StreamSpec, connection: Connection) -> dict[str, str]:
        return {"segment/stability": stream.stability, **connection.tags}

    def get_kinds(self, stream: StreamSpec, connection: Connection, storage_kind: str) -> set[str]:
        return {"segment", storage_kind}

    def get_column_schema(self, stream: StreamSpec) -> TableSchema:
        return TableSchema(
            columns=[
                TableColumn(c.name, c.type, description=c.description or None) for c in table_def(stream.name).columns
            ]
        )

    def get_metadata(self, stream: StreamSpec, connection: Connection, table_name: str) -> Mapping[str, Any]:
        return {
            "dagster/table_name": table_name,
            "dagster/column_schema": self.get_column_schema(stream),
            "segment/operation_id": stream.operation_id,
            "segment/path": stream.path,
            "segment/connection": connection.name,
        }

    def get_asset_spec(
        self,
        stream: StreamSpec,
        connection: Connection,
        *,
        storage_kind: str,
        table_name: str,
        parent_key: AssetKey | None,
    ) -> AssetSpec:
        return AssetSpec(
            key=self.get_asset_key(stream, connection),
            deps=[parent_key] if parent_key else [],
            group_name=self.get_group_name(stream, connection),
            description=self.get_description(stream, connection, table_name),
            owners=self.get_owners(stream, connection),
            tags=self.get_tags(stream, connection),
            kinds=self.get_kinds(stream, connection, storage_kind),
            metadata=self.get_metadata(stream, connection, table_name),
        )
