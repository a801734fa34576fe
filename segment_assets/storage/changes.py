"""The SQL both targets run in DuckDB (the DuckDB target inside its file, the lake target over
Arrow views of its Delta tables and the staged read): reload-and-compare, the staged read,
parent ids and watermarks.

The diff keys rows on the table's primary key and compares every other column, so an update
that changes nothing is not an update (Qlik writes no change row for it either).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import duckdb

from segment_assets.api.streams import RowFilter
from segment_assets.api.tables import TableDef
from segment_assets.storage.base import SEQ_COUNTER_DIGITS, StorageError

# Inserts and updates sort before deletes of the same key, so a replay in change_seq order works.
OPS_ORDER = "CASE WHEN op = 'D' THEN 1 ELSE 0 END"


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def changes_sql(table: TableDef, current: str, stage: str, *, deletes: bool) -> str:
    """SELECT of every change between `current` and `stage` (relation names, already quoted):
    `op` ('I'/'U'/'D') followed by the table's columns (the new row, or the deleted one)."""
    keys = table.primary_key
    join = " AND ".join(f"s.{q(k)} = c.{q(k)}" for k in keys)
    values = [c for c in table.column_names if c not in keys]
    s_row = ", ".join(f"s.{q(c)}" for c in values) or "NULL"
    c_row = ", ".join(f"c.{q(c)}" for c in values) or "NULL"
    s_cols = ", ".join(f"s.{q(c)}" for c in table.column_names)
    c_cols = ", ".join(f"c.{q(c)}" for c in table.column_names)
    sql = (
        f"SELECT 'I' AS op, {s_cols} FROM {stage} s ANTI JOIN {current} c ON {join} "
        f"UNION ALL SELECT 'U', {s_cols} FROM {stage} s JOIN {current} c ON {join} "
        f"WHERE ROW({s_row}) IS DISTINCT FROM ROW({c_row})"
    )
    if deletes:
        sql += f" UNION ALL SELECT 'D', {c_cols} FROM {current} c ANTI JOIN {stage} s ON {join}"
    return sql


def change_rows_sql(table: TableDef, changes: str) -> str:
    """SELECT of the change-table rows for `changes` (from changes_sql), with the header columns;
    parameters: the change_seq prefix, the change timestamp, the run id."""
    cols = ", ".join(q(c) for c in table.column_names)
    order = ", ".join(q(k) for k in table.primary_key)
    return (
        f"SELECT {cols}, "
        f"? || lpad(CAST(row_number() OVER (ORDER BY {order}, {OPS_ORDER}) AS VARCHAR), {SEQ_COUNTER_DIGITS}, '0') "
        f"AS header__change_seq, op AS header__change_oper, CAST(? AS TIMESTAMPTZ) AS header__timestamp, "
        f"CAST(? AS VARCHAR) AS header__run_id FROM {changes}"
    )


def next_seq_prefix(last: str | None, now: datetime | None = None) -> str:
    """`YYYYMMDDHHmmSShh` of now, bumped past the last one used, so change_seq stays monotonic
    across every change table of a target even if the clock steps back."""
    now = now or datetime.now(UTC)
    prefix = now.strftime("%Y%m%d%H%M%S") + f"{now.microsecond // 10000:02d}"
    if last and last >= prefix:
        prefix = str(int(last) + 1)
    return prefix


def load_stage(con: duckdb.DuckDBPyConnection, table: TableDef, path: str) -> None:
    """The staged Parquet file as the view `_stage` (deduplicated where the API may repeat a
    record), refusing a read whose primary key is not unique: nothing is written then."""
    cols = ", ".join(q(c) for c in table.column_names)
    key = ", ".join(q(k) for k in table.primary_key)
    distinct = f"DISTINCT ON ({key}) " if table.stream.dedupe else ""
    # A view, not a table: the rows stay in the Parquet file and are streamed by each
    # statement that reads them, so a million-row window never sits in memory.
    literal = "'" + path.replace("'", "''") + "'"
    con.execute(f"CREATE OR REPLACE TEMP VIEW _stage AS SELECT {distinct}{cols} FROM read_parquet({literal})")
    dupes = con.execute(f"SELECT {key}, count(*) AS n FROM _stage GROUP BY ALL HAVING count(*) > 1 LIMIT 3").fetchall()
    if dupes:
        raise StorageError(
            f"stream {table.stream.name}: the API returned {len(dupes)}+ primary key(s) more than once "
            f"(e.g. {dupes[0][:-1]}); the declared key {table.primary_key} is not unique. Nothing was written."
        )


def row_filter_sql(row_filter: RowFilter) -> tuple[str, list[object]]:
    if row_filter.startswith is not None:
        return f"starts_with({q(row_filter.column)}, ?)", [row_filter.startswith]
    raise ValueError(f"unsupported row filter {row_filter!r}")


def parent_keys_sql(relation: str, columns: Sequence[str], row_filter: RowFilter | None) -> tuple[str, list[object]]:
    """Distinct non-null `columns` of `relation` (a parent's ids), sorted; with its parameters."""
    cols = ", ".join(q(c) for c in columns)
    where = " AND ".join(f"{q(c)} IS NOT NULL" for c in columns)
    params: list[object] = []
    if row_filter:
        condition, params = row_filter_sql(row_filter)
        where += f" AND {condition}"
    return f"SELECT DISTINCT {cols} FROM {relation} WHERE {where} ORDER BY {cols}", params


def max_by_sql(relation: str, group: Sequence[str], column: str) -> str:
    """max(column) per group key (the last column of each row)."""
    cols = ", ".join(q(c) for c in group)
    return f"SELECT {cols + ', ' if cols else ''}max({q(column)}) FROM {relation}" + (
        f" GROUP BY {cols}" if cols else ""
    )
