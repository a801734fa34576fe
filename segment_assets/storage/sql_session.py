"""A DuckDB session over a target's tables, under the names the DuckDB target gives them.

`sql_session(target)` returns an in-memory DuckDB connection in which `SELECT * FROM
segment.sources` (or `FROM sources`: the schema is the default) works on either target:

- DuckDB target: its file is attached read-only and its schema made the default;
- lake target: every Delta table is registered as an Arrow dataset (through `deltalake`, since
  DuckDB's delta/httpfs extensions cannot be downloaded everywhere) behind a view in schema
  `<schema>`, with the column types the DuckDB target has (JSON columns as JSON) and without
  the lake's internal partition column. Each view reads the table version current when the
  session opened; reopen the session to see later commits.
"""

from __future__ import annotations

from functools import cache

import duckdb

from segment_assets.api.streams import STREAMS
from segment_assets.api.tables import TableDef, table_def
from segment_assets.storage.base import CHANGE_SUFFIX, HEADER_COLUMNS, StorageError, Target
from segment_assets.storage.changes import q


@cache
def _table_defs() -> dict[str, TableDef]:
    return {s.table: table_def(s.name) for s in STREAMS.values() if s.materialized}


def declared_types(name: str) -> dict[str, str]:
    """Column -> DuckDB type the project declares for table `name` (a stream's table or change table)."""
    base = name[: -len(CHANGE_SUFFIX)] if name.endswith(CHANGE_SUFFIX) else name
    table = _table_defs().get(base)
    if table is None:
        return {}
    types = dict(table.column_schema())
    if base != name:
        types.update(HEADER_COLUMNS)
    return types


def sql_session(target: Target) -> duckdb.DuckDBPyConnection:
    from segment_assets.storage.duckdb_target import DuckDBTarget
    from segment_assets.storage.lake_target import PARTITION_COLUMN, LakeTarget

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if isinstance(target, DuckDBTarget):
        target.close()  # this process's own write connection would hold the file lock
        path = target.path.replace("'", "''")
        try:
            con.execute(f"ATTACH '{path}' AS source_db (READ_ONLY)")
            con.execute(f"USE source_db.{q(target.schema)}")
        except duckdb.Error as exc:
            con.close()
            raise StorageError(
                f"cannot open {target.path} schema {target.schema!r} for reading ({exc}); "
                "sync at least one stream first"
            ) from exc
        return con
    if not isinstance(target, LakeTarget):
        raise TypeError(f"sql_session does not know targets of kind {target.kind!r}")
    con.execute(f"CREATE SCHEMA {q(target.schema)}")
    for i, name in enumerate(target.table_names()):
        dt = target._table(name)
        if dt is None:
            continue
        dataset = dt.to_pyarrow_dataset()
        alias = f"__delta_{i}"
        con.register(alias, dataset)
        types = declared_types(name)
        cols = []
        for field in dataset.schema:
            if field.name == PARTITION_COLUMN:
                continue
            kind = types.get(field.name)
            cols.append(f"CAST({q(field.name)} AS JSON) AS {q(field.name)}" if kind == "JSON" else q(field.name))
        con.execute(f"CREATE VIEW {q(target.schema)}.{q(name)} AS SELECT {', '.join(cols)} FROM {alias}")
    con.execute(f"USE memory.{q(target.schema)}")
    return con
