"""The SQL both targets run in DuckDB (the DuckDB target inside its file, the lake target over
Arrow views of its Delta tables and the staged read), written once: the staged read and its
key check, reload-and-compare, the rows a cycle did not see, change rows and their change_seq
range, the primary-key check, time windows, parent ids and watermarks.

The diff keys rows on the table's primary key and compares every other column, so an update
that changes nothing is not an update (Qlik writes no change row for it either).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import duckdb

from segment_assets.api.streams import InlineRecords, RowFilter
from segment_assets.api.tables import TableDef
from segment_assets.storage.base import SEQ_COUNTER_DIGITS, KeyCheck, StorageError, WriteResult

# Inserts and updates sort before deletes of the same key, so a replay in change_seq order works.
OPS_ORDER = "CASE WHEN op = 'D' THEN 1 ELSE 0 END"


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_string(text: str) -> str:
    """A string literal, where SQL takes no parameter (a file path in COPY or a view)."""
    return "'" + text.replace("'", "''") + "'"


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


def missing_keys_sql(table: TableDef, current: str, keys: str) -> str:
    """SELECT of a `D` change (op + columns) for every row of `current` whose primary key is not in
    `keys` (a relation holding the primary-key columns under the same names)."""
    join = " AND ".join(f"c.{q(k)} = k.{q(k)}" for k in table.primary_key)
    cols = ", ".join(f"c.{q(c)}" for c in table.column_names)
    return f"SELECT 'D' AS op, {cols} FROM {current} c ANTI JOIN {keys} k ON {join}"


def count_changes(con: duckdb.DuckDBPyConnection, changes: str) -> WriteResult:
    """Inserts, updates and deletes in `changes` (a relation from changes_sql or missing_keys_sql)."""
    counts = dict(con.execute(f"SELECT op, count(*) FROM {changes} GROUP BY op").fetchall())
    return WriteResult(inserted=counts.get("I", 0), updated=counts.get("U", 0), deleted=counts.get("D", 0))


def number_changes(result: WriteResult, prefix: str) -> None:
    """Record the change rows of `result` and their change_seq range: change_rows_sql numbers them
    1..n after `prefix`."""
    result.change_rows = result.inserted + result.updated + result.deleted
    result.change_seq_first = prefix + "1".zfill(SEQ_COUNTER_DIGITS)
    result.change_seq_last = prefix + str(result.change_rows).zfill(SEQ_COUNTER_DIGITS)


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
    con.execute(f"CREATE OR REPLACE TEMP VIEW _stage AS SELECT {distinct}{cols} FROM read_parquet({sql_string(path)})")
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


def parent_keys_sql(
    relation: str,
    columns: Sequence[str],
    row_filter: RowFilter | None,
    carry: Sequence[str] = (),
    lists: InlineRecords | None = None,
    cut: bool = True,
) -> tuple[str, list[object]]:
    """SELECT of the distinct non-null `columns` of `relation` (a parent's ids), each with its
    `carry` columns. With `lists`, only the parents whose stored list may have been cut (`cut`), or
    only those whose list holds all their records (`InlineRecords.complete`, decided here)."""
    cols = ", ".join(q(c) for c in columns)
    carried = "".join(f", {q(c)}" for c in carry)
    where = " AND ".join(f"{q(c)} IS NOT NULL" for c in columns)
    params: list[object] = []
    if row_filter:
        condition, params = row_filter_sql(row_filter)
        where += f" AND {condition}"
    if lists:
        condition, more = inline_list_sql(lists, cut=cut)
        where, params = f"{where} AND {condition}", [*params, *more]
    return f"SELECT DISTINCT {cols}{carried} FROM {relation} WHERE {where}", params


def select_parent_keys(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    columns: Sequence[str],
    row_filter: RowFilter | None,
    cut: InlineRecords | None = None,
) -> list[tuple[object, ...]]:
    """Distinct non-null `columns` of `relation` (a parent's ids), sorted; with `cut`, only the
    parents whose stored list may have been cut."""
    sql, params = parent_keys_sql(relation, columns, row_filter, (), cut)
    return con.execute(f"{sql} ORDER BY {', '.join(q(c) for c in columns)}", params).fetchall()


def copy_complete_lists(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    columns: Sequence[str],
    row_filter: RowFilter | None,
    inline: InlineRecords,
    path: str,
) -> None:
    """Writes to Parquet file `path` the parents whose stored list holds all their records: their
    `columns` and that list, in one scan (`Target.complete_lists` reads it back in pieces)."""
    sql, params = parent_keys_sql(relation, columns, row_filter, (inline.column,), inline, cut=False)
    con.execute(f"COPY ({sql}) TO {sql_string(path)} (FORMAT parquet)", params)


def inline_list_sql(inline: InlineRecords, cut: bool) -> tuple[str, list[object]]:
    """`InlineRecords.complete` in SQL, or its complement (`cut`): a list absent, not a list, or
    holding `limit` records may have been cut; any other holds all its parent's records."""
    column = q(inline.column)
    may_be_cut = f"({column} IS NULL OR json_type({column}::JSON) <> 'ARRAY' OR json_array_length({column}::JSON) >= ?)"
    return (may_be_cut if cut else f"NOT coalesce({may_be_cut}, true)"), [inline.limit]


def parents_left_sql(
    parent: str,
    columns: Sequence[str],
    row_filter: RowFilter | None,
    done: str | None,
    done_columns: Sequence[str],
    cut: InlineRecords | None = None,
) -> tuple[str, list[object]]:
    """A `todo` relation (after WITH) of the distinct non-null `columns` of `parent` that side table
    `done` (which holds them as text, under `done_columns`) does not, and a `parents` relation of
    them all. With `cut`, only the parents whose stored list may have been cut (`InlineRecords`):
    the others' records are in that list and cost no request."""
    parents, params = parent_keys_sql(parent, columns, row_filter, (), cut)
    sql = f"parents AS ({parents}), todo AS (SELECT * FROM parents"
    if done:
        same = " AND ".join(f"d.{q(d)} = CAST(p.{q(c)} AS VARCHAR)" for d, c in zip(done_columns, columns))
        sql += f" p WHERE NOT EXISTS (SELECT 1 FROM {done} d WHERE {same})"
    return sql + ")", params


def select_max_by(
    con: duckdb.DuckDBPyConnection, relation: str, group: Sequence[str], column: str
) -> dict[tuple[str, ...], object]:
    """max(column) per group key (the key's values as text); groups whose column is all NULL are left out."""
    cols = ", ".join(q(c) for c in group)
    sql = f"SELECT {cols + ', ' if cols else ''}max({q(column)}) FROM {relation}" + (
        f" GROUP BY {cols}" if cols else ""
    )
    return {tuple(str(v) for v in r[:-1]): r[-1] for r in con.execute(sql).fetchall() if r[-1] is not None}


def select_key_check(con: duckdb.DuckDBPyConnection, table: TableDef, relation: str) -> KeyCheck:
    """Rows, duplicate primary keys and rows with a NULL in the key, in `relation`."""
    keys = ", ".join(q(k) for k in table.primary_key)
    any_null = " OR ".join(f"{q(k)} IS NULL" for k in table.primary_key)
    rows, distinct, nulls = con.execute(
        f"SELECT count(*), count(DISTINCT ({keys})), count(*) FILTER (WHERE {any_null}) FROM {relation}"
    ).fetchall()[0]
    return KeyCheck(rows=rows, duplicate_keys=rows - distinct, null_keys=nulls)


def within_window(time_column: str) -> str:
    """The condition of a time window [start, end): parameters start, end."""
    return f"{q(time_column)} >= ? AND {q(time_column)} < ?"
