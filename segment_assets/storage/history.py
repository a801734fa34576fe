"""Point-in-time history, derived from the change tables, in SQL both targets run in DuckDB.

`<table>__history` (SCD type 2) holds one row per version of a row: the table's columns, then
`valid_from` (the change that opened the version), `valid_to` (the next change of the same key,
NULL while current), `is_current`, `change_oper` (`I` or `U`: what opened it), `change_seq` and
`run_id` of that change. It is a view over `<table>__ct`: on DuckDB a view in the file, on the
lake a view of each `sql_session` over the Delta change table. The change table is append-only,
so the history survives `optimize` and `vacuum` (no Delta time travel is involved).

Why it is right where others are not:
- A key deleted and created again has two separate versions and no row for the interval in
  between: a `D` change closes a version and opens none.
- Several changes of one key with the same timestamp are ordered by `header__change_seq`; the
  earlier ones become versions with `valid_from = valid_to`, which no moment falls inside.
- The first load of a table is in its history: diffing a read against an empty table gives an
  `I` change per row (reload and compare, watermark upserts alike), so no baseline is needed.
  History starts when change capture does: rows loaded while a connection chose `full_load`
  for a stream are not in it.

Times are when a sync wrote the change (`header__timestamp`), not when it happened in Segment;
`audit_events` says that (the README joins the two).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path

import duckdb

from segment_assets.api.streams import STREAMS
from segment_assets.api.tables import TableDef, table_def
from segment_assets.storage.base import CHANGE_SUFFIX, HEADER_COLUMNS
from segment_assets.storage.changes import q

HISTORY_SUFFIX = "__history"
# The columns a history view adds after the table's own.
HISTORY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("valid_from", "TIMESTAMPTZ"),
    ("valid_to", "TIMESTAMPTZ"),
    ("is_current", "BOOLEAN"),
    ("change_oper", "VARCHAR"),
    ("change_seq", "VARCHAR"),
    ("run_id", "VARCHAR"),
)
HISTORY_MEANINGS = {
    "valid_from": "When this version was first synced: the `header__timestamp` of the change that opened it.",
    "valid_to": "When the next change of the same key was synced (an update, or the delete that ended the row); "
    "NULL while this version is current.",
    "is_current": "`valid_to IS NULL`: the version the table holds now.",
    "change_oper": "The change that opened the version: `I` (the row appeared, or appeared again after a delete) "
    "or `U`.",
    "change_seq": "`header__change_seq` of that change (orders versions that share a `valid_from`).",
    "run_id": "The Dagster run that synced that change.",
}
_NEXT = "history__next_change"  # internal: lead() of the change time
_OUT = "__snapshot_out"  # the catalog name of the file a snapshot writes


@cache
def stream_tables() -> dict[str, TableDef]:
    """Table name -> its declaration, for the materialized streams."""
    return {s.table: table_def(s.name) for s in STREAMS.values() if s.materialized}


def history_sql(table: TableDef, change_table: str) -> str:
    """SELECT of `<table>__history` from `change_table` (a relation name, already quoted). The
    columns are the change table's own minus the headers (`*`, so a column the table gains later
    shows without redefining a view), then HISTORY_COLUMNS."""
    key = ", ".join(q(k) for k in table.primary_key)
    headers = ", ".join([*(h for h, _ in HEADER_COLUMNS), _NEXT])
    return (
        f"SELECT * EXCLUDE ({headers}), header__timestamp AS valid_from, {_NEXT} AS valid_to, "
        f"{_NEXT} IS NULL AS is_current, header__change_oper AS change_oper, header__change_seq AS change_seq, "
        f"header__run_id AS run_id "
        f"FROM (SELECT *, lead(header__timestamp) OVER (PARTITION BY {key} ORDER BY header__change_seq) AS {_NEXT} "
        f"FROM {change_table}) WHERE header__change_oper <> 'D'"
    )


def as_of_sql(history: str, columns: Sequence[str]) -> str:
    """SELECT of `columns` of every row as it was at a moment (parameter: the moment, twice): the
    version of each key that was current then; keys deleted by then are absent."""
    cols = ", ".join(q(c) for c in columns)
    return f"SELECT {cols} FROM ({history}) WHERE valid_from <= ? AND (valid_to IS NULL OR valid_to > ?)"


def diff_sql(table: TableDef, before: str, after: str, columns: Sequence[str]) -> str:
    """SELECT of what changed from relation `before` to relation `after` (a table at two moments):
    one row per inserted or deleted key (`op`, `key` as a struct, `column`/`old`/`new` NULL), and one
    row per changed column of an updated key (`op` = 'U', values as text)."""
    keys = table.primary_key
    values = [c for c in columns if c not in keys]
    join = " AND ".join(f"a.{q(k)} = b.{q(k)}" for k in keys)

    def key_of(alias: str) -> str:
        return "struct_pack(" + ", ".join(f"{q(k)} := {alias}.{q(k)}" for k in keys) + ")"

    none = "NULL::VARCHAR AS column_name, NULL::VARCHAR AS old_value, NULL::VARCHAR AS new_value"
    sql = (
        f"SELECT 'I' AS op, {key_of('b')} AS key, {none} FROM {after} b ANTI JOIN {before} a ON {join} "
        f"UNION ALL SELECT 'D', {key_of('a')}, {none} FROM {before} a ANTI JOIN {after} b ON {join}"
    )
    if values:
        pairs = ", ".join(
            f"struct_pack(c := '{v}', o := CAST(a.{q(v)} AS VARCHAR), n := CAST(b.{q(v)} AS VARCHAR), "
            f"d := a.{q(v)} IS DISTINCT FROM b.{q(v)})"
            for v in (c.replace("'", "''") for c in values)
        )
        sql += (
            f" UNION ALL SELECT 'U', key, ch.c, ch.o, ch.n FROM ("
            f"SELECT {key_of('b')} AS key, unnest(list_filter([{pairs}], lambda x: x.d)) AS ch "
            f"FROM {before} a JOIN {after} b ON {join})"
        )
    return sql


def tables_with_history(con: duckdb.DuckDBPyConnection) -> tuple[list[str], list[str]]:
    """(tables of the session's default schema that have a change table and a declaration, the
    other tables), history and change tables themselves left out."""
    names = {
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = "
            "current_schema() AND table_catalog = current_database()"
        ).fetchall()
    }
    tables = sorted(n for n in names if not n.endswith((CHANGE_SUFFIX, HISTORY_SUFFIX)) and not n.startswith("_"))
    known = stream_tables()
    with_history = [n for n in tables if n + CHANGE_SUFFIX in names and n in known]
    return with_history, [n for n in tables if n not in with_history]


def live_columns(con: duckdb.DuckDBPyConnection, name: str) -> list[str]:
    """The columns of table `name` in the session's default schema, in order."""
    return [r[0] for r in con.execute(f"SELECT * FROM {q(name)} LIMIT 0").description or []]


def first_change(con: duckdb.DuckDBPyConnection, names: Sequence[str]) -> datetime | None:
    """The earliest change any of the tables `names` recorded (the start of their history)."""
    if not names:
        return None
    union = " UNION ALL ".join(f"SELECT min(header__timestamp) AS t FROM {q(n + CHANGE_SUFFIX)}" for n in names)
    value = con.execute(f"SELECT min(t) FROM ({union})").fetchall()[0][0]
    return value if isinstance(value, datetime) else None


@dataclass
class Snapshot:
    """What `write_snapshot` wrote: rows per table, the tables left out, where history starts."""

    rows: dict[str, int] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)
    history_starts: datetime | None = None


def write_snapshot(con: duckdb.DuckDBPyConnection, as_of: datetime, path: Path, schema: str) -> Snapshot:
    """Write every table of `con`'s default schema that has history, as it was at `as_of`, into a new
    DuckDB file `path` (schema `schema`, the live tables' names and columns). The file appears only
    once complete. Tables without history (time-partitioned, full load) are left out and named."""
    tables, others = tables_with_history(con)
    result = Snapshot(left_out=others, history_starts=first_change(con, tables))
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.unlink(missing_ok=True)
    literal = str(partial).replace("'", "''")
    con.execute(f"ATTACH '{literal}' AS {_OUT}")
    try:
        con.execute(f"CREATE SCHEMA {_OUT}.{q(schema)}")
        for name in tables:
            history = history_sql(stream_tables()[name], q(name + CHANGE_SUFFIX))
            select = as_of_sql(history, live_columns(con, name))
            con.execute(f"CREATE TABLE {_OUT}.{q(schema)}.{q(name)} AS {select}", [as_of, as_of])
            result.rows[name] = con.execute(f"SELECT count(*) FROM {_OUT}.{q(schema)}.{q(name)}").fetchall()[0][0]
        con.execute(f"DETACH {_OUT}")
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute(f"DETACH {_OUT}")
        partial.unlink(missing_ok=True)
        raise
    return result


@dataclass(frozen=True)
class Change:
    """One line of a diff: a key inserted or deleted, or one column of an updated key."""

    table: str
    op: str  # I, U, D
    key: dict[str, object]
    column: str | None = None
    old: str | None = None
    new: str | None = None


def diff(
    con: duckdb.DuckDBPyConnection, start: datetime, end: datetime, only: Sequence[str] | None = None
) -> tuple[list[Change], list[str]]:
    """What changed between `start` and `end` in every table with history (or the tables `only`),
    comparing the two states: a key created and deleted in between shows nowhere. Returns the
    changes (by table, then key) and the tables that have no history."""
    tables, others = tables_with_history(con)
    if only:
        unknown = [t for t in only if t not in tables]
        if unknown:
            raise ValueError(
                f"no history for table(s) {', '.join(unknown)}: "
                + ("they keep none (time-partitioned or full load)" if set(unknown) <= set(others) else "no such table")
                + f"; tables with history: {', '.join(tables) or 'none yet (sync first)'}"
            )
        tables = [t for t in tables if t in only]
    changes: list[Change] = []
    for name in tables:
        table = stream_tables()[name]
        columns = live_columns(con, name)
        ct, keys = q(name + CHANGE_SUFFIX), ", ".join(q(k) for k in table.primary_key)
        # Only keys with a change in (start, end] can differ: the others' versions are not even built.
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _diff_keys AS SELECT DISTINCT {keys} FROM {ct} "
            "WHERE header__timestamp > ? AND header__timestamp <= ?",
            [start, end],
        )
        history = history_sql(table, f"(SELECT * FROM {ct} SEMI JOIN _diff_keys USING ({keys}))")
        for alias, moment in (("_diff_before", start), ("_diff_after", end)):
            con.execute(f"CREATE OR REPLACE TEMP TABLE {alias} AS {as_of_sql(history, columns)}", [moment, moment])
        sql = diff_sql(table, "_diff_before", "_diff_after", columns)
        order = ", ".join(f"key.{q(k)}" for k in table.primary_key)
        rows = con.execute(f"SELECT * FROM ({sql}) ORDER BY {order}, op, column_name").fetchall()
        for op, key, column, old, new in rows:
            changes.append(Change(name, op, dict(key), column, old, new))
        con.execute("DROP TABLE _diff_keys; DROP TABLE _diff_before; DROP TABLE _diff_after")
    return changes, [t for t in others if not only or t in only]
