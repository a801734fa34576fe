"""The DuckDB target: one file, one schema per workspace, every write in one transaction.

Pages are staged to Parquet first (`staging.py`), so memory stays flat whatever the row
count, then applied in one DuckDB transaction: a failed or killed run leaves the previous
table and its change table exactly as they were. The file lock is held only for that short
apply step, so several processes (and threads) fetch from the API at once and queue for
the write.
"""

from __future__ import annotations

import atexit
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar, TypeVar

import duckdb
import pyarrow as pa

from segment_assets.api.streams import InlineRecords, RowFilter
from segment_assets.api.tables import ARROW_TYPES, TableDef
from segment_assets.storage.base import (
    CHANGE_SUFFIX,
    DEFAULT_SCHEMA,
    HEADER_COLUMNS,
    STATE_TABLE,
    KeyCheck,
    StorageError,
    Target,
    WriteMode,
    WriteResult,
    missing_parent_error,
)
from segment_assets.storage.changes import (
    change_rows_sql,
    changes_sql,
    copy_complete_lists,
    count_changes,
    load_stage,
    missing_keys_sql,
    next_seq_prefix,
    number_changes,
    q,
    select_key_check,
    select_max_by,
    select_parent_keys,
    within_window,
)
from segment_assets.storage.history import HISTORY_SUFFIX, history_sql
from segment_assets.storage.staging import staged

T = TypeVar("T")

# DuckDB spills to disk past this, so a sync's footprint stays flat whatever the row count
# (one writer thread: the writes are short and a second thread mostly adds buffers).
DEFAULT_MEMORY_LIMIT = "64MB"

# An open connection is reused by operations that follow each other closely (opening a file
# costs ~50 ms: 60 streams finishing together would queue seconds on it), and closed after this
# long unused, so other processes get the file lock between bursts.
IDLE_CLOSE_SECONDS = 1.0


class _FileConnection:
    """The one connection this process holds on a DuckDB file; threads take turns on `lock`.

    Reads that decide when a stream can start (its parent's keys, its cycle, its watermarks) go
    through `reader`, a cursor of that connection, under `reader_lock`: DuckDB's MVCC lets it read
    the last commit while another stream's write holds `lock`, so a child starts when its
    parent's table is committed instead of queueing behind the writes of unrelated streams (a
    write takes seconds on a loaded machine). Lock order: `reader_lock`, then `lock`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reader_lock = threading.Lock()
        self.reader: duckdb.DuckDBPyConnection | None = None
        self.con: duckdb.DuckDBPyConnection | None = None
        self.schemas: set[str] = set()  # created through `con`: a write need not ask again
        self.last_used = 0.0
        self.closer: threading.Timer | None = None

    def close(self) -> None:
        with self.reader_lock, self.lock:
            self._close()

    def _close(self) -> None:
        """With both locks held: the reader too, or the file stays open (and locked) through it."""
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        if self.con is not None:
            self.con.close()
            self.con = None

    def close_if_idle(self) -> None:
        with self.reader_lock, self.lock:
            self.closer = None
            if self.con is None:
                return
            idle = time.monotonic() - self.last_used
            if idle >= IDLE_CLOSE_SECONDS:
                self._close()
            else:
                self._schedule(IDLE_CLOSE_SECONDS - idle)

    def release(self) -> None:
        """Called with `lock` held, after an operation."""
        self.last_used = time.monotonic()
        if self.con is not None and self.closer is None:
            self._schedule(IDLE_CLOSE_SECONDS)

    def _schedule(self, seconds: float) -> None:
        self.closer = threading.Timer(seconds, self.close_if_idle)
        self.closer.daemon = True
        self.closer.start()


_ENSURED: dict[tuple[str, int, str, str], frozenset[tuple[str, str]]] = {}
_ENSURED_GUARD = threading.Lock()
_FILES: dict[str, _FileConnection] = {}
_FILES_GUARD = threading.Lock()


def _file(path: str) -> _FileConnection:
    with _FILES_GUARD:
        return _FILES.setdefault(path, _FileConnection())


@atexit.register
def _close_files() -> None:
    # A run interrupted inside Dagster's code never reaches the asset's `finally` that closes
    # its target; closing here (after the stream threads ended) checkpoints the file, so no
    # write-ahead log is left beside it and the next reader opens it without replaying one.
    with _FILES_GUARD:
        files = list(_FILES.values())
    for shared in files:
        shared.close()


# How often a wait for another process's lock on the file is reported again.
LOCK_REPORT_SECONDS = 30.0
_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")


def lock_holder(error: BaseException) -> str:
    """Who holds the file, as DuckDB's lock error names it: "PID 123 (/usr/bin/python3)"."""
    match = _HOLDER.search(str(error))
    if match is None:
        return "another process"
    return f"PID {match['pid']} ({match['program']})"


# information_schema's names for the types tables declare (JSON is VARCHAR to DuckDB's catalog).
_SQL_TYPES = {"TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ", "JSON": "VARCHAR"}
assert set(_SQL_TYPES.values()) <= set(ARROW_TYPES)


class DuckDBTarget(Target):
    kind: ClassVar[str] = "duckdb"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        schema: str = DEFAULT_SCHEMA,
        lock_timeout: float = 900.0,
        memory_limit: str = DEFAULT_MEMORY_LIMIT,
        threads: int = 1,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        """`on_wait` is told, at once and then every LOCK_REPORT_SECONDS, that another process holds
        the file and which (a run's log: a silent wait of minutes looks like a hang)."""
        self.path = str(Path(path).expanduser().absolute())
        self.schema = schema
        self.lock_timeout = lock_timeout
        self.on_wait = on_wait
        self.memory_limit = memory_limit
        self.threads = threads
        self.stage_dir = Path(self.path).parent / ".staging"
        self._catalog = Path(self.path).stem
        if self._catalog == schema:
            # DuckDB names a file's catalog after it: `segment.sources` would then be ambiguous.
            raise ValueError(
                f"the DuckDB file {self.path} and the schema are both called {schema!r}, so DuckDB cannot tell "
                f"`{schema}.sources` (schema) from `{schema}.sources` (catalog): rename the file or the schema"
            )
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"DuckDBTarget({self.path!r}, schema={self.schema!r})"

    def table_uri(self, name: str) -> str:
        return f"duckdb://{self.path}#{self.schema}.{name}"

    def close(self) -> None:
        _file(self.path).close()

    # -- connections ----------------------------------------------------------------------

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The file's connection for one operation; waits (bounded) while another process holds the file."""
        shared = _file(self.path)
        with shared.lock:
            if shared.con is None:
                shared.con, shared.schemas = self._open(), set()
                shared.reader = shared.con.cursor()  # so reads need not wait for the write that opened it
            con = shared.con
            try:
                if self.schema not in shared.schemas:
                    con.execute(f"CREATE SCHEMA IF NOT EXISTS {q(self._catalog)}.{q(self.schema)}")
                    shared.schemas.add(self.schema)
                yield con
            except BaseException:
                # A failed statement can leave the connection mid-transaction: start the next one clean.
                con.close()  # its cursors too: the reader's next read opens a new one
                shared.con = None
                raise
            finally:
                shared.release()

    def _read(self, read: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """`read(con)` on a connection that does not wait for a write in progress (`_FileConnection`)."""
        shared = _file(self.path)
        with shared.reader_lock:
            for attempt in (1, 2):
                if shared.reader is None:
                    with self.connect() as con:  # opens the file if it is closed (no write is in progress then)
                        if shared.reader is None:
                            shared.reader = con.cursor()
                reader = shared.reader
                try:
                    return read(reader)
                except duckdb.ConnectionException:
                    # A failed write closed the file's connection, and its cursors with it: once more
                    # on a new one.
                    shared.reader = None
                    if attempt == 2:
                        raise
                finally:
                    shared.last_used = time.monotonic()  # keeps the idle closer away, without waiting for `lock`
        raise AssertionError("unreachable")

    def _open(self) -> duckdb.DuckDBPyConnection:
        started = time.monotonic()
        deadline = started + self.lock_timeout
        delay = 0.05
        reported = None
        while True:
            try:
                con = duckdb.connect(self.path)
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise
                now = time.monotonic()
                if now > deadline:
                    raise StorageError(
                        f"{self.path} stayed locked by {lock_holder(exc)} for {self.lock_timeout:.0f}s "
                        f"({exc}). Close other DuckDB sessions on this file, or raise lock_timeout."
                    ) from exc
                if self.on_wait is not None and (reported is None or now - reported >= LOCK_REPORT_SECONDS):
                    reported = now
                    self.on_wait(
                        f"waiting for {self.path}: it is locked by {lock_holder(exc)}; waited {now - started:.0f}s "
                        f"of lock_timeout {self.lock_timeout:.0f}s (close that session, or set lock_timeout)"
                    )
                time.sleep(delay)
                delay = min(delay * 1.5, 2.0)
        con.execute(f"SET memory_limit = '{self.memory_limit}'")
        con.execute("SET preserve_insertion_order = false")  # lets big INSERT ... SELECT stream
        con.execute(f"SET threads = {self.threads}")
        con.execute("SET TimeZone = 'UTC'")  # timestamps without an offset are UTC, as the API means them
        self._catalog = con.execute("SELECT current_database()").fetchall()[0][0]
        return con

    # -- DDL -------------------------------------------------------------------------------

    def _qualified(self, name: str) -> str:
        return f"{q(self._catalog)}.{q(self.schema)}.{q(name)}"

    def _existing_columns(self, con: duckdb.DuckDBPyConnection, name: str) -> list[str]:
        return list(self._existing_types(con, name))

    def _existing_types(self, con: duckdb.DuckDBPyConnection, name: str) -> dict[str, str]:
        rows = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_catalog = ? "
            "AND table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [self._catalog, self.schema, name],
        ).fetchall()
        return dict(rows)

    def _ensure(self, con: duckdb.DuckDBPyConnection, name: str, columns: Sequence[tuple[str, str]]) -> None:
        # Tables only ever gain columns: once this process saw these columns in place, they stay,
        # and the catalog query (a few ms each, twice per write) is not needed again.
        self._once(name, frozenset(columns), lambda: self._ensure_now(con, name, columns))

    def _once(self, name: str, wanted: frozenset[tuple[str, str]], create: Callable[[], object]) -> None:
        """`create` unless this process already made `name` hold `wanted` in this file and schema.
        The file's inode in the key: a file replaced at the same path starts from nothing."""
        known = (self.path, os.stat(self.path).st_ino, self.schema, name)
        with _ENSURED_GUARD:
            if known in _ENSURED and wanted <= _ENSURED[known]:
                return
        create()
        with _ENSURED_GUARD:
            _ENSURED[known] = _ENSURED.get(known, frozenset()) | wanted

    def _ensure_now(self, con: duckdb.DuckDBPyConnection, name: str, columns: Sequence[tuple[str, str]]) -> None:
        existing = self._existing_types(con, name)
        if not existing:
            cols = ", ".join(f"{q(c)} {t}" for c, t in columns)
            con.execute(f"CREATE TABLE IF NOT EXISTS {self._qualified(name)} ({cols})")
            return
        for col, kind in columns:
            if col not in existing:
                # The declaration (or the API) grew a column: evolve instead of failing.
                con.execute(f"ALTER TABLE {self._qualified(name)} ADD COLUMN {q(col)} {kind}")
            elif _SQL_TYPES.get(existing[col], existing[col]) != _SQL_TYPES.get(kind, kind):
                self._evolve_type(con, name, col, existing[col], kind)

    def _evolve_type(self, con: duckdb.DuckDBPyConnection, name: str, col: str, old: str, new: str) -> None:
        """Time fields once loaded as text become TIMESTAMPTZ in place; any other change of type fails."""
        table = self._qualified(name)
        if old == "VARCHAR" and new == "TIMESTAMPTZ":
            try:
                con.execute(
                    f"ALTER TABLE {table} ALTER COLUMN {q(col)} SET DATA TYPE TIMESTAMPTZ "
                    f"USING CAST(NULLIF({q(col)}, '') AS TIMESTAMPTZ)"
                )
                return
            except duckdb.Error as exc:
                raise StorageError(
                    f"column {col} of {self.table_name(name)} holds text that is not a timestamp, so it cannot "
                    f"become TIMESTAMPTZ ({exc}). Fix the values (UPDATE ... SET {col} = NULL WHERE "
                    f"TRY_CAST({col} AS TIMESTAMPTZ) IS NULL) or drop the table to reload it; nothing was written"
                ) from exc
        raise StorageError(
            f"column {col} of {self.table_name(name)} is {old} in {self.path} but the stream now declares {new}: "
            f"the table was left as it was. Drop the table (and its change table) to reload it with the new type, "
            f"or declare column_types={{{col!r}: {old!r}}} for the stream"
        )

    def _ensure_all(self, con: duckdb.DuckDBPyConnection, table: TableDef, with_changes: bool) -> None:
        self._ensure(con, table.name, table.column_schema())
        if with_changes:
            self._ensure(con, table.name + CHANGE_SUFFIX, [*table.column_schema(), *HEADER_COLUMNS])
            self._ensure_history(con, table)

    def _ensure_history(self, con: duckdb.DuckDBPyConnection, table: TableDef) -> None:
        """`<table>__history`, a view over the change table (replaced once per process, so a file synced
        by an older release gets the current definition)."""
        name = table.name + HISTORY_SUFFIX
        # The change table unqualified: DuckDB binds it in the view's own schema, so the view keeps
        # working when the file is attached under another name (`segment-assets sql`, snapshots).
        sql = f"CREATE OR REPLACE VIEW {self._qualified(name)} AS {history_sql(table, q(table.name + CHANGE_SUFFIX))}"
        self._once(name, frozenset(), lambda: con.execute(sql))

    def ensure_table(self, table: TableDef) -> None:
        with self.connect() as con:
            self._ensure_all(con, table, table.stream.update_method.keeps_changes)

    @contextmanager
    def _transaction(self, con: duckdb.DuckDBPyConnection) -> Iterator[None]:
        con.execute("BEGIN TRANSACTION")
        try:
            yield
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    # -- writes ----------------------------------------------------------------------------

    def _write(self, table: TableDef, batches: Iterable[pa.RecordBatch], mode: WriteMode, run_id: str) -> WriteResult:
        started = time.monotonic()
        with staged(table, batches, self.stage_dir) as (path, staged_rows):
            with self.connect() as con:
                compare = mode is not WriteMode.REPLACE
                self._ensure_all(con, table, compare)
                load_stage(con, table, path)
                with self._transaction(con):
                    if compare:
                        sql = changes_sql(
                            table, self._qualified(table.name), "_stage", deletes=mode is WriteMode.COMPARE
                        )
                        con.execute(f"CREATE OR REPLACE TEMP TABLE _changes AS {sql}")
                        result = self._apply_changes(con, table, run_id)
                    else:
                        con.execute(f"DELETE FROM {self._qualified(table.name)}")
                        self._insert_from(con, table, "_stage")
                        result = WriteResult()
                result.key_check = select_key_check(con, table, self._qualified(table.name))
                result.rows = result.key_check.rows
        result.staged = staged_rows
        result.seconds = time.monotonic() - started
        return result

    def _insert_from(
        self,
        con: duckdb.DuckDBPyConnection,
        table: TableDef,
        source: str,
        where: str = "",
        params: Sequence[object] | None = None,
    ) -> None:
        cols = ", ".join(q(c) for c in table.column_names)
        con.execute(
            f"INSERT INTO {self._qualified(table.name)} ({cols}) SELECT {cols} FROM {source} {where}", params or []
        )

    def _apply_changes(self, con: duckdb.DuckDBPyConnection, table: TableDef, run_id: str) -> WriteResult:
        """`_changes` (op + columns) onto the table and into its change table, in the caller's transaction."""
        result = count_changes(con, "_changes")
        if not (result.inserted or result.updated or result.deleted):
            return result
        cur = self._qualified(table.name)
        key_join = " AND ".join(f"{cur}.{q(k)} = _changes.{q(k)}" for k in table.primary_key)
        con.execute(f"DELETE FROM {cur} USING _changes WHERE {key_join} AND _changes.op IN ('U', 'D')")
        self._insert_from(con, table, "_changes", "WHERE op IN ('I', 'U')")
        prefix = self._next_seq_prefix(con)
        ct = self._qualified(table.name + CHANGE_SUFFIX)
        cols = ", ".join(q(c) for c in [*table.column_names, *(h for h, _ in HEADER_COLUMNS)])
        con.execute(
            f"INSERT INTO {ct} ({cols}) {change_rows_sql(table, '_changes')}", [prefix, datetime.now(UTC), run_id]
        )
        number_changes(result, prefix)
        return result

    def _next_seq_prefix(self, con: duckdb.DuckDBPyConnection) -> str:
        prefix = next_seq_prefix(self._state(con, "change_seq_prefix"))
        self._set_state(con, "change_seq_prefix", prefix)
        return prefix

    def _ensure_state(self, con: duckdb.DuckDBPyConnection) -> None:
        sql = f"CREATE TABLE IF NOT EXISTS {self._qualified(STATE_TABLE)} (key VARCHAR PRIMARY KEY, value VARCHAR)"
        self._once(STATE_TABLE, frozenset(), lambda: con.execute(sql))

    def _state(self, con: duckdb.DuckDBPyConnection, key: str) -> str | None:
        self._ensure_state(con)
        row = con.execute(f"SELECT value FROM {self._qualified(STATE_TABLE)} WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    def _set_state(self, con: duckdb.DuckDBPyConnection, key: str, value: str) -> None:
        self._ensure_state(con)
        con.execute(f"INSERT OR REPLACE INTO {self._qualified(STATE_TABLE)} VALUES (?, ?)", [key, value])

    def read_state(self, key: str) -> str | None:
        return self._read(lambda con: self._state(con, key))

    def write_state(self, key: str, value: str) -> None:
        with self.connect() as con:
            self._set_state(con, key, value)

    # -- side tables and fan-out cycles ----------------------------------------------------

    def append_rows(self, name: str, table: pa.Table) -> WriteResult:
        started = time.monotonic()
        with self.connect() as shared, shared.cursor() as con:  # a cursor: no pending result of others
            con.register("_append", table)
            with self._transaction(con):
                if not self._existing_columns(con, name):
                    con.execute(f"CREATE TABLE {self._qualified(name)} AS SELECT * FROM _append LIMIT 0")
                cols = ", ".join(q(c) for c in table.column_names)
                con.execute(f"INSERT INTO {self._qualified(name)} ({cols}) SELECT {cols} FROM _append")
            rows = con.execute(f"SELECT count(*) FROM {self._qualified(name)}").fetchall()[0][0]
        return WriteResult(
            rows=rows, staged=table.num_rows, inserted=table.num_rows, seconds=time.monotonic() - started
        )

    def drop_table(self, name: str) -> bool:
        with self.connect() as con:
            existed = bool(self._existing_columns(con, name))
            con.execute(f"DROP TABLE IF EXISTS {self._qualified(name)}")
        with _ENSURED_GUARD:
            for known in [k for k in _ENSURED if k[0] == self.path and k[2:] == (self.schema, name)]:
                del _ENSURED[known]
        return existed

    def delete_missing(self, table: TableDef, keys_table: str, run_id: str) -> WriteResult:
        started = time.monotonic()
        with self.connect() as con:
            if not self._existing_columns(con, keys_table):
                raise StorageError(
                    f"delete_missing on {self.table_name(table.name)}: the key table "
                    f"{self.table_name(keys_table)} does not exist; nothing was deleted"
                )
            self._ensure_all(con, table, True)
            sql = missing_keys_sql(table, self._qualified(table.name), self._qualified(keys_table))
            with self._transaction(con):
                con.execute(f"CREATE OR REPLACE TEMP TABLE _changes AS {sql}")
                result = self._apply_changes(con, table, run_id)
                result.key_check = select_key_check(con, table, self._qualified(table.name))
                result.rows = result.key_check.rows
        result.seconds = time.monotonic() - started
        return result

    def replace_window(
        self,
        table: TableDef,
        batches: Iterable[pa.RecordBatch],
        *,
        time_column: str,
        start: datetime,
        end: datetime,
        run_id: str,
    ) -> WriteResult:
        """Idempotent load of one time window: its rows are deleted and the fresh ones inserted."""
        started = time.monotonic()
        within = within_window(time_column)
        with staged(table, batches, self.stage_dir) as (path, staged_rows):
            with self.connect() as con:
                self._ensure_all(con, table, False)
                load_stage(con, table, path)
                inside = con.execute(f"SELECT count(*) FROM _stage WHERE {within}", [start, end]).fetchall()[0][0]
                with self._transaction(con):
                    deleted = con.execute(
                        f"DELETE FROM {self._qualified(table.name)} WHERE {within}", [start, end]
                    ).fetchall()[0][0]
                    # Rows the API put outside the requested window belong to other partitions.
                    self._insert_from(con, table, "_stage", f"WHERE {within}", [start, end])
                check = select_key_check(con, table, self._qualified(table.name))
        return WriteResult(
            rows=check.rows,
            staged=staged_rows,
            inserted=inside,
            deleted=deleted,
            seconds=time.monotonic() - started,
            key_check=check,
        )

    # -- reads -----------------------------------------------------------------------------

    def table_exists(self, name: str) -> bool:
        return self._read(lambda con: bool(self._existing_columns(con, name)))

    def parent_keys(
        self,
        table: str,
        columns: Sequence[str],
        row_filter: RowFilter | None = None,
        cut: InlineRecords | None = None,
    ) -> list[tuple[object, ...]]:
        def read(con: duckdb.DuckDBPyConnection) -> list[tuple[object, ...]]:
            if not self._existing_columns(con, table):
                raise missing_parent_error(self, table)
            return select_parent_keys(con, self._qualified(table), columns, row_filter, cut)

        return self._read(read)

    def _copy_complete_lists(
        self, table: str, columns: Sequence[str], row_filter: RowFilter | None, inline: InlineRecords, path: str
    ) -> None:
        def copy(con: duckdb.DuckDBPyConnection) -> None:
            if not self._existing_columns(con, table):
                raise missing_parent_error(self, table)
            copy_complete_lists(con, self._qualified(table), columns, row_filter, inline, path)

        self._read(copy)

    def max_by(self, table: str, group: Sequence[str], column: str) -> dict[tuple[str, ...], object]:
        def read(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, ...], object]:
            if not self._existing_columns(con, table):
                return {}
            return select_max_by(con, self._qualified(table), group, column)

        return self._read(read)

    def check_primary_key(self, table: TableDef) -> KeyCheck:
        with self.connect() as con:
            if not self._existing_columns(con, table.name):
                return KeyCheck(0, 0, 0)
            return select_key_check(con, table, self._qualified(table.name))

    def read_arrow(self, name: str, columns: Sequence[str] | None = None) -> pa.Table:
        cols = ", ".join(q(c) for c in columns) if columns else "*"
        with self.connect() as con:
            if not self._existing_columns(con, name):
                raise StorageError(f"table {self.table_name(name)} does not exist in {self.path}")
            return con.sql(f"SELECT {cols} FROM {self._qualified(name)}").to_arrow_table()

    def table_names(self) -> list[str]:
        with self.connect() as con:
            rows = con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_catalog = ? AND table_schema = ? "
                "AND table_name <> ? AND table_type = 'BASE TABLE' ORDER BY table_name",
                [self._catalog, self.schema, STATE_TABLE],
            ).fetchall()
        return [r[0] for r in rows]

    def query(self, sql: str, params: Sequence[object] | None = None) -> list[tuple[object, ...]]:
        """Run SQL with the workspace schema as the default, so `SELECT * FROM sources` works."""

        def read(con: duckdb.DuckDBPyConnection) -> list[tuple[object, ...]]:
            con.execute(f"USE {q(self._catalog)}.{q(self.schema)}")
            return con.execute(sql, params or []).fetchall()

        return self._read(read)

    def sql_session(self) -> duckdb.DuckDBPyConnection:
        """The file attached read-only (under its own catalog name) with the schema as the default."""
        if not Path(self.path).exists():
            raise StorageError(f"{self.path} does not exist yet: sync at least one stream first")
        self.close()  # this process's own write connection would hold the file lock
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        path = self.path.replace("'", "''")
        try:
            con.execute(f"ATTACH '{path}' AS {q(self._catalog)} (READ_ONLY)")
        except duckdb.Error as exc:
            con.close()
            if "lock" in str(exc).lower():
                raise StorageError(
                    f"{self.path} exists but is locked by {lock_holder(exc)}, which is writing it (a sync?): "
                    f"try again when it is done ({exc})"
                ) from exc
            raise StorageError(f"cannot open {self.path} for reading ({exc})") from exc
        try:
            con.execute(f"USE {q(self._catalog)}.{q(self.schema)}")
        except duckdb.Error as exc:
            con.close()
            raise StorageError(
                f"{self.path} has no schema {self.schema!r} yet ({exc}); sync at least one stream first"
            ) from exc
        return con
