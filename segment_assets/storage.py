"""Where replicated tables land: a small storage interface and its DuckDB implementation.

Every write is staged first (Arrow batches streamed to a Parquet file beside the target,
so memory stays flat whatever the row count) and then applied in one DuckDB transaction:
a failed or killed run leaves the previous table and its change table exactly as they
were. The target lock is held only for that short apply step, so several Dagster
processes can fetch from the API at once and queue for the write.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from segment_assets.streams import UpdateMethod
from segment_assets.tables import TableDef

SCHEMA = "segment"
CHANGE_SUFFIX = "__ct"
STATE_TABLE = "_segment_assets_state"
# DuckDB spills to disk past this, so a sync's footprint stays flat whatever the row count
# (one writer thread: the writes are short and a second thread mostly adds buffers).
DEFAULT_MEMORY_LIMIT = "64MB"
HEADER_COLUMNS = (
    ("header__change_seq", "VARCHAR"),
    ("header__change_oper", "VARCHAR"),
    ("header__timestamp", "TIMESTAMPTZ"),
    ("header__run_id", "VARCHAR"),
)


class StorageError(Exception):
    """The target could not be written; the previous tables are unchanged."""


@dataclass(frozen=True)
class KeyCheck:
    rows: int
    duplicate_keys: int
    null_keys: int

    @property
    def passed(self) -> bool:
        return self.duplicate_keys == 0 and self.null_keys == 0


@dataclass
class WriteResult:
    rows: int = 0  # rows in the table after the write
    staged: int = 0  # rows read from the API in this run
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    change_rows: int = 0
    change_seq_first: str | None = None
    change_seq_last: str | None = None
    seconds: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)
    key_check: KeyCheck | None = None  # primary key checked in the same connection as the write


class Target(Protocol):
    """What assets need from a storage target (DuckDB today, a Delta Lake folder or bucket next)."""

    def write_snapshot(self, table: TableDef, batches: Iterable[pa.RecordBatch], *, method: UpdateMethod,
                       run_id: str, before_images: bool = False) -> WriteResult: ...

    def replace_window(self, table: TableDef, batches: Iterable[pa.RecordBatch], *, time_column: str,
                       start: datetime, end: datetime, run_id: str) -> WriteResult: ...

    def ensure_table(self, table: TableDef) -> None: ...

    def parent_keys(self, table: str, columns: Sequence[str], where: str | None = None) -> list[tuple[object, ...]]: ...

    def max_by(self, table: str, group: Sequence[str], column: str) -> dict[tuple[object, ...], object]: ...

    def check_primary_key(self, table: TableDef) -> KeyCheck: ...

    def describe(self) -> str: ...


_PROCESS_LOCKS: dict[str, threading.Lock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


def _process_lock(path: str) -> threading.Lock:
    with _PROCESS_LOCKS_GUARD:
        return _PROCESS_LOCKS.setdefault(path, threading.Lock())


def _sweep_orphans(stage_dir: Path) -> None:
    """Remove staging files of processes that died mid-run (kill -9 skips their cleanup)."""
    for f in stage_dir.glob("*.parquet"):
        try:
            pid = int(f.name.split(".")[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            f.unlink(missing_ok=True)
        except (ValueError, IndexError, PermissionError):
            continue


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class DuckDBTarget:
    def __init__(self, path: str | os.PathLike[str], *, lock_timeout: float = 900.0,
                 memory_limit: str = DEFAULT_MEMORY_LIMIT, threads: int = 1) -> None:
        self.path = str(Path(path).expanduser().absolute())
        self.lock_timeout = lock_timeout
        self.memory_limit = memory_limit
        self.threads = threads
        self._catalog = Path(self.path).stem
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)

    def describe(self) -> str:
        return f"duckdb:{self.path}"

    def __repr__(self) -> str:
        return f"DuckDBTarget({self.path!r})"

    # -- connections ----------------------------------------------------------------------

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection; waits (bounded) while another process holds the file."""
        with _process_lock(self.path):
            deadline = time.monotonic() + self.lock_timeout
            delay = 0.05
            while True:
                try:
                    con = duckdb.connect(self.path)
                    break
                except duckdb.IOException as exc:
                    if "lock" not in str(exc).lower():
                        raise
                    if time.monotonic() > deadline:
                        raise StorageError(
                            f"{self.path} stayed locked by another process for {self.lock_timeout:.0f}s "
                            f"({exc}). Close other DuckDB sessions on this file, or raise lock_timeout."
                        ) from exc
                    time.sleep(delay)
                    delay = min(delay * 1.5, 2.0)
            try:
                con.execute(f"SET memory_limit = '{self.memory_limit}'")
                con.execute("SET preserve_insertion_order = false")  # lets big INSERT ... SELECT stream
                con.execute(f"SET threads = {self.threads}")
                # A file named segment.duckdb makes a catalog called "segment" too: always qualify.
                self._catalog = con.execute("SELECT current_database()").fetchone()[0]
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {q(self._catalog)}.{SCHEMA}")
                yield con
            finally:
                con.close()

    # -- DDL -------------------------------------------------------------------------------

    def _qualified(self, name: str) -> str:
        return f"{q(self._catalog)}.{SCHEMA}.{q(name)}"

    def _existing_columns(self, con: duckdb.DuckDBPyConnection, name: str) -> list[str]:
        rows = con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
            "ORDER BY ordinal_position",
            [SCHEMA, name],
        ).fetchall()
        return [r[0] for r in rows]

    def _ensure(self, con: duckdb.DuckDBPyConnection, name: str, columns: Sequence[tuple[str, str]]) -> None:
        existing = self._existing_columns(con, name)
        if not existing:
            cols = ", ".join(f"{q(c)} {t}" for c, t in columns)
            con.execute(f"CREATE TABLE IF NOT EXISTS {self._qualified(name)} ({cols})")
            return
        for col, kind in columns:
            if col not in existing:
                # The declaration (or the API) grew a column: evolve instead of failing.
                con.execute(f"ALTER TABLE {self._qualified(name)} ADD COLUMN {q(col)} {kind}")

    def _ensure_all(self, con: duckdb.DuckDBPyConnection, table: TableDef, with_changes: bool) -> None:
        self._ensure(con, table.name, table.column_schema())
        if with_changes:
            self._ensure(con, table.name + CHANGE_SUFFIX, [*table.column_schema(), *HEADER_COLUMNS])

    def ensure_table(self, table: TableDef) -> None:
        with self.connect() as con:
            self._ensure_all(con, table, table.stream.update_method.keeps_changes)

    # -- staging ---------------------------------------------------------------------------

    @contextmanager
    def _staged(self, table: TableDef, batches: Iterable[pa.RecordBatch]) -> Iterator[tuple[str, int]]:
        """Stream batches to a Parquet file before any lock is taken; yields (path, rows)."""
        stage_dir = Path(self.path).parent / ".staging"
        stage_dir.mkdir(parents=True, exist_ok=True)
        _sweep_orphans(stage_dir)
        fd, path = tempfile.mkstemp(prefix=f"{table.name}.{os.getpid()}.", suffix=".parquet", dir=stage_dir)
        os.close(fd)
        rows = 0
        try:
            with pq.ParquetWriter(path, table.arrow_schema(), compression="zstd") as writer:
                for batch in batches:
                    if batch.num_rows:
                        writer.write_batch(batch)
                        rows += batch.num_rows
            # Arrow's allocator keeps freed pages for reuse; hand them back before DuckDB's turn.
            pa.default_memory_pool().release_unused()
            yield path, rows
        finally:
            Path(path).unlink(missing_ok=True)

    def _load_stage(self, con: duckdb.DuckDBPyConnection, table: TableDef, path: str) -> None:
        cols = ", ".join(q(c) for c in table.column_names)
        key = ", ".join(q(k) for k in table.primary_key)
        distinct = f"DISTINCT ON ({key}) " if table.stream.dedupe else ""
        # A view, not a table: the rows stay in the Parquet file and are streamed by each
        # statement that reads them, so a million-row window never sits in memory.
        literal = "'" + path.replace("'", "''") + "'"
        con.execute(f"CREATE OR REPLACE TEMP VIEW _stage AS SELECT {distinct}{cols} FROM read_parquet({literal})")
        dupes = con.execute(
            f"SELECT {key}, count(*) AS n FROM _stage GROUP BY ALL HAVING count(*) > 1 LIMIT 3"
        ).fetchall()
        if dupes:
            raise StorageError(
                f"stream {table.stream.name}: the API returned {len(dupes)}+ primary key(s) more than once "
                f"(e.g. {dupes[0][:-1]}); the declared key {table.primary_key} is not unique. Nothing was written."
            )

    # -- writes ----------------------------------------------------------------------------

    def write_snapshot(self, table: TableDef, batches: Iterable[pa.RecordBatch], *, method: UpdateMethod,
                       run_id: str, before_images: bool = False) -> WriteResult:
        started = time.monotonic()
        with self._staged(table, batches) as (path, staged):
            with self.connect() as con:
                compare = method.keeps_changes
                self._ensure_all(con, table, compare)
                self._load_stage(con, table, path)
                con.execute("BEGIN TRANSACTION")
                try:
                    if compare:
                        # A watermark read sees only the newest rows: absent rows are not deletes.
                        result = self._apply_compare(con, table, run_id, before_images,
                                                     deletes=method is UpdateMethod.RELOAD_AND_COMPARE)
                    else:
                        con.execute(f"DELETE FROM {self._qualified(table.name)}")
                        self._insert_from(con, table, "_stage")
                        result = WriteResult()
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                result.key_check = self._key_check(con, table)
                result.rows = result.key_check.rows
        result.staged = staged
        result.seconds = time.monotonic() - started
        return result

    def _insert_from(self, con: duckdb.DuckDBPyConnection, table: TableDef, source: str, where: str = "",
                     params: Sequence[object] | None = None) -> None:
        cols = ", ".join(q(c) for c in table.column_names)
        con.execute(f"INSERT INTO {self._qualified(table.name)} ({cols}) SELECT {cols} FROM {source} {where}", params or [])

    def _apply_compare(self, con: duckdb.DuckDBPyConnection, table: TableDef, run_id: str,
                       before_images: bool, deletes: bool = True) -> WriteResult:
        cur = self._qualified(table.name)
        keys = table.primary_key
        join = " AND ".join(f"s.{q(k)} = c.{q(k)}" for k in keys)
        values = [c for c in table.column_names if c not in keys]
        s_row = ", ".join(f"s.{q(c)}" for c in values) or "NULL"
        c_row = ", ".join(f"c.{q(c)}" for c in values) or "NULL"
        s_cols = ", ".join(f"s.{q(c)}" for c in table.column_names)
        c_cols = ", ".join(f"c.{q(c)}" for c in table.column_names)
        order = ", ".join(q(k) for k in keys)
        # Ordinal 1 sorts a before-image just ahead of the update that it precedes.
        before = (
            f"UNION ALL SELECT 'B', 1, {c_cols} FROM {cur} c JOIN _stage s ON {join} "
            f"WHERE ROW({s_row}) IS DISTINCT FROM ROW({c_row})"
            if before_images else ""
        )
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _changes AS
            SELECT 'I' AS op, 0 AS ord, {s_cols} FROM _stage s ANTI JOIN {cur} c ON {join}
            UNION ALL
            SELECT 'U', 2, {s_cols} FROM _stage s JOIN {cur} c ON {join} WHERE ROW({s_row}) IS DISTINCT FROM ROW({c_row})
            {before}
            {f"UNION ALL SELECT 'D', 0, {c_cols} FROM {cur} c ANTI JOIN _stage s ON {join}" if deletes else ""}
        """)
        counts = dict(con.execute("SELECT op, count(*) FROM _changes GROUP BY op").fetchall())
        total = sum(counts.values())
        result = WriteResult(inserted=counts.get("I", 0), updated=counts.get("U", 0), deleted=counts.get("D", 0))
        if not total:
            return result
        key_join = " AND ".join(f"{cur}.{q(k)} = _changes.{q(k)}" for k in keys)
        con.execute(f"DELETE FROM {cur} USING _changes WHERE {key_join} AND _changes.op IN ('U', 'D')")
        self._insert_from(con, table, "_changes", "WHERE op IN ('I', 'U')")
        prefix = self._next_seq_prefix(con)
        now = datetime.now(timezone.utc)
        cols = ", ".join(q(c) for c in table.column_names)
        # Before-images reuse the change_seq of their update (Qlik's convention), so the
        # counter runs over change events, not rows.
        con.execute(f"""
            INSERT INTO {self._qualified(table.name + CHANGE_SUFFIX)}
                ({cols}, header__change_seq, header__change_oper, header__timestamp, header__run_id)
            SELECT {cols},
                   ? || lpad(CAST(dense_rank() OVER (ORDER BY {order}, CASE WHEN op = 'D' THEN 1 ELSE 0 END) AS VARCHAR), 19, '0'),
                   op, ?, ?
            FROM _changes
        """, [prefix, now, run_id])
        first, last = con.execute(
            f"SELECT min(header__change_seq), max(header__change_seq) FROM {self._qualified(table.name + CHANGE_SUFFIX)} "
            "WHERE header__change_seq LIKE ? || '%'", [prefix]
        ).fetchone()
        result.change_rows = total
        result.change_seq_first, result.change_seq_last = first, last
        return result

    def _next_seq_prefix(self, con: duckdb.DuckDBPyConnection) -> str:
        """`YYYYMMDDHHmmSShh` of now, bumped past the last one used, so change_seq is monotonic
        across every change table of this target even if the clock steps back."""
        con.execute(f"CREATE TABLE IF NOT EXISTS {self._qualified(STATE_TABLE)} (key VARCHAR PRIMARY KEY, value VARCHAR)")
        row = con.execute(f"SELECT value FROM {self._qualified(STATE_TABLE)} WHERE key = 'change_seq_prefix'").fetchone()
        now = datetime.now(timezone.utc)
        prefix = now.strftime("%Y%m%d%H%M%S") + f"{now.microsecond // 10000:02d}"
        if row and row[0] >= prefix:
            prefix = str(int(row[0]) + 1)
        con.execute(
            f"INSERT OR REPLACE INTO {self._qualified(STATE_TABLE)} VALUES ('change_seq_prefix', ?)", [prefix]
        )
        return prefix

    def replace_window(self, table: TableDef, batches: Iterable[pa.RecordBatch], *, time_column: str,
                       start: datetime, end: datetime, run_id: str) -> WriteResult:
        """Idempotent load of one time window: its rows are deleted and the fresh ones inserted."""
        started = time.monotonic()
        with self._staged(table, batches) as (path, staged):
            with self.connect() as con:
                self._ensure_all(con, table, False)
                self._load_stage(con, table, path)
                outside = con.execute(
                    f"SELECT count(*) FROM _stage WHERE NOT ({q(time_column)} >= ? AND {q(time_column)} < ?)",
                    [start, end],
                ).fetchone()[0]
                con.execute("BEGIN TRANSACTION")
                try:
                    deleted = con.execute(
                        f"DELETE FROM {self._qualified(table.name)} WHERE {q(time_column)} >= ? AND {q(time_column)} < ?",
                        [start, end],
                    ).fetchone()[0]
                    self._insert_from(con, table, "_stage",
                                      f"WHERE {q(time_column)} >= ? AND {q(time_column)} < ?", [start, end])
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                check = self._key_check(con, table)
        return WriteResult(rows=check.rows, staged=staged, inserted=staged - outside, deleted=deleted,
                           seconds=time.monotonic() - started, extra={"outside_window": outside}, key_check=check)

    # -- reads -----------------------------------------------------------------------------

    def table_exists(self, name: str) -> bool:
        with self.connect() as con:
            return bool(self._existing_columns(con, name))

    def parent_keys(self, table: str, columns: Sequence[str], where: str | None = None) -> list[tuple[object, ...]]:
        with self.connect() as con:
            if not self._existing_columns(con, table):
                raise StorageError(
                    f"table segment.{table} does not exist yet: materialize the asset segment/{table} first "
                    f"(its ids are the parameters of this stream)"
                )
            cols = ", ".join(q(c) for c in columns)
            nulls = " AND ".join(f"{q(c)} IS NOT NULL" for c in columns)
            sql = f"SELECT DISTINCT {cols} FROM {self._qualified(table)} WHERE {nulls}"
            if where:
                sql += f" AND ({where})"
            return con.execute(sql + f" ORDER BY {cols}").fetchall()

    def max_by(self, table: str, group: Sequence[str], column: str) -> dict[tuple[object, ...], object]:
        """max(column) per group key: the watermark of each parent of a watermark stream."""
        with self.connect() as con:
            if not self._existing_columns(con, table):
                return {}
            cols = ", ".join(q(c) for c in group)
            sql = f"SELECT {cols + ', ' if cols else ''}max({q(column)}) FROM {self._qualified(table)}"
            rows = con.execute(sql + (f" GROUP BY {cols}" if cols else "")).fetchall()
        return {tuple(str(v) for v in r[:-1]): r[-1] for r in rows if r[-1] is not None}

    def check_primary_key(self, table: TableDef) -> KeyCheck:
        with self.connect() as con:
            return self._key_check(con, table)

    def _key_check(self, con: duckdb.DuckDBPyConnection, table: TableDef) -> KeyCheck:
        keys = ", ".join(q(k) for k in table.primary_key)
        any_null = " OR ".join(f"{q(k)} IS NULL" for k in table.primary_key)
        rows, distinct, nulls = con.execute(
            f"SELECT count(*), count(DISTINCT ({keys})), count(*) FILTER (WHERE {any_null}) "
            f"FROM {self._qualified(table.name)}"
        ).fetchone()
        return KeyCheck(rows=rows, duplicate_keys=rows - distinct, null_keys=nulls)

    def query(self, sql: str, params: Sequence[object] | None = None) -> list[tuple[object, ...]]:
        """Run SQL with schema `segment` as the default, so `SELECT * FROM sources` works whatever
        the file is called (with the default file name, `segment.sources` alone is ambiguous)."""
        with self.connect() as con:
            con.execute(f"USE {q(self._catalog)}.{SCHEMA}")
            return con.execute(sql, params or []).fetchall()
