"""The storage interface every target implements (DuckDB file, Delta Lake folder or bucket).

Assets never write SQL or files: they hand Arrow batches and a `TableDef` to a `Target`
and read back what they need (parent ids, watermarks, the key check). Each target makes
every write atomic per table: a failed or killed write leaves the previous version of
the table and of its change table readable and unchanged.
"""

from __future__ import annotations

import enum
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar, cast

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from segment_assets.api.streams import InlineRecords, RowFilter, UpdateMethod
from segment_assets.api.tables import TableDef
from segment_assets.storage.staging import sweep_orphans

DEFAULT_SCHEMA = "segment"
CHANGE_SUFFIX = "__ct"
# The change tables' header columns, as Qlik Replicate names them: change_seq is `YYYYMMDDHHmmSShh`
# + a 19-digit counter, monotonic across every change table of one target.
HEADER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("header__change_seq", "VARCHAR"),
    ("header__change_oper", "VARCHAR"),
    ("header__timestamp", "TIMESTAMPTZ"),
    ("header__run_id", "VARCHAR"),
)
SEQ_COUNTER_DIGITS = 19
STATE_TABLE = "_segment_assets_state"  # the target's key/value state (change_seq prefix, check baselines)
DEFAULT_VACUUM_RETENTION_HOURS = 7 * 24


class WriteMode(enum.Enum):
    """What the rows handed to a write stand for, hence what the write does to the table."""

    REPLACE = "replace"  # the whole table: it becomes these rows, no change rows
    COMPARE = "compare"  # the whole table: inserts, updates and deletes, each with a change row
    UPSERT = "upsert"  # some rows: inserts and updates, each with a change row; nothing is deleted


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
    version: int | None = None  # the table version this write committed (Delta), when the target has versions
    key_check: KeyCheck | None = None  # primary key checked on the state just written


def seq_range_label(first: str | None, last: str | None) -> str | None:
    """`header__change_seq` bounds as people read them: the shared prefix (a UTC time) and the counters."""
    if not first or not last:
        return None
    cut = len(first) - SEQ_COUNTER_DIGITS
    prefix, a, b = first[:cut], int(first[cut:]), int(last[cut:])
    when = f"{prefix[0:4]}-{prefix[4:6]}-{prefix[6:8]} {prefix[8:10]}:{prefix[10:12]}:{prefix[12:14]}.{prefix[14:16]}"
    same = last[:cut] == prefix
    return f"{when} UTC #{a}–#{b}" if same else f"{first} .. {last}"


class Target(ABC):
    """What assets need from a storage target."""

    kind: ClassVar[str]  # shown as the asset's kind: "duckdb", "delta"
    schema: str
    stage_dir: Path  # local folder for staging files (pages before a write, lists read in pieces)

    @abstractmethod
    def table_uri(self, name: str) -> str:
        """Where table `name` lives, as other tools address it (file#schema.table, s3://...)."""

    def close(self) -> None:
        """Release what the target holds open between operations (end of a run)."""

    def table_name(self, name: str) -> str:
        """The name SQL users write for the table (`segment-assets sql`, the DuckDB file)."""
        return f"{self.schema}.{name}"

    # -- writes --------------------------------------------------------------------------

    def write_snapshot(
        self, table: TableDef, batches: Iterable[pa.RecordBatch], *, method: UpdateMethod, run_id: str
    ) -> WriteResult:
        """Apply a full read of the stream, in one commit: FULL_LOAD replaces the table; RELOAD_AND_COMPARE
        applies what changed, deletes included, with a change row each."""
        if method is UpdateMethod.FULL_LOAD:
            return self._write(table, batches, WriteMode.REPLACE, run_id)
        if method is UpdateMethod.RELOAD_AND_COMPARE:
            return self._write(table, batches, WriteMode.COMPARE, run_id)
        raise ValueError(f"a {method.value} read is not a snapshot of {table.name}: write it with upsert")

    def upsert(self, table: TableDef, batches: Iterable[pa.RecordBatch], *, run_id: str) -> WriteResult:
        """Insert the rows whose key is new and update those that changed, with I/U change rows, in one
        commit; a row absent from `batches` is kept (a watermark read, one run's share of a cycle)."""
        return self._write(table, batches, WriteMode.UPSERT, run_id)

    @abstractmethod
    def _write(
        self, table: TableDef, batches: Iterable[pa.RecordBatch], mode: WriteMode, run_id: str
    ) -> WriteResult: ...

    @abstractmethod
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
        """Replace exactly the rows of [start, end) with the fresh ones, in one commit."""

    @abstractmethod
    def ensure_table(self, table: TableDef) -> None:
        """Create the table (and its change table) with its columns if it does not exist yet."""

    # -- reads ---------------------------------------------------------------------------

    @abstractmethod
    def table_exists(self, name: str) -> bool: ...

    @abstractmethod
    def parent_keys(
        self,
        table: str,
        columns: Sequence[str],
        row_filter: RowFilter | None = None,
        cut: InlineRecords | None = None,
    ) -> list[tuple[object, ...]]:
        """Distinct non-null values of `columns` in `table` (a parent's ids), sorted. With `cut`, only
        the parents whose stored list may have been cut (their records are requested)."""

    def complete_lists(
        self,
        table: str,
        columns: Sequence[str],
        row_filter: RowFilter | None,
        inline: InlineRecords,
        per_read: int,
    ) -> Iterator[list[tuple[object, ...]]]:
        """The parents whose stored list holds all their records (`InlineRecords.complete`): their
        `columns` followed by that list, in pieces of `per_read`. One scan of the parent table
        writes them to a staging file, read back a piece at a time: a space's 740,000 lists are
        never all in memory, and the table is not scanned once per piece."""
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        sweep_orphans(self.stage_dir)
        # The pid in the name lets sweep_orphans tell a live reader's file from a dead one's.
        fd, path = tempfile.mkstemp(prefix=f"{table}__lists.{os.getpid()}.", suffix=".parquet", dir=self.stage_dir)
        os.close(fd)
        try:
            self._copy_complete_lists(table, columns, row_filter, inline, path)
            with pq.ParquetFile(path) as lists:
                for batch in lists.iter_batches(batch_size=per_read):
                    yield list(zip(*(column.to_pylist() for column in batch.columns)))
        finally:
            Path(path).unlink(missing_ok=True)

    @abstractmethod
    def _copy_complete_lists(
        self, table: str, columns: Sequence[str], row_filter: RowFilter | None, inline: InlineRecords, path: str
    ) -> None:
        """`changes.copy_complete_lists` on this target's `table`."""

    def parents_left(
        self,
        table: str,
        columns: Sequence[str],
        row_filter: RowFilter | None,
        done_table: str | None,
        done_columns: Sequence[str],
        limit: int,
        cut: InlineRecords | None = None,
    ) -> tuple[int, int, list[tuple[object, ...]]]:
        """For a read spread over runs: how many distinct parent keys `table` holds, how many of them
        side table `done_table` does not (it holds them as text, under `done_columns`), and the first
        `limit` of those, sorted. Counted in the target, so no run holds every parent key in memory."""
        from segment_assets.storage.changes import parents_left_sql, q

        if not self.table_exists(table):
            raise missing_parent_error(self, table)
        done = q(done_table) if done_table and self.table_exists(done_table) else None
        relations, params = parents_left_sql(q(table), columns, row_filter, done, done_columns, cut)
        ((total, left),) = self.query(
            f"WITH {relations} SELECT (SELECT count(*) FROM parents), (SELECT count(*) FROM todo)", params
        )
        cols = ", ".join(q(c) for c in columns)
        chunk = self.query(f"WITH {relations} SELECT * FROM todo ORDER BY {cols} LIMIT ?", [*params, limit])
        return int(cast(int, total)), int(cast(int, left)), chunk

    @abstractmethod
    def max_by(self, table: str, group: Sequence[str], column: str) -> dict[tuple[str, ...], object]:
        """max(column) per group key: the watermark of each parent of a watermark stream."""

    @abstractmethod
    def check_primary_key(self, table: TableDef) -> KeyCheck: ...

    @abstractmethod
    def read_arrow(self, name: str, columns: Sequence[str] | None = None) -> pa.Table:
        """The whole current table, or some of its columns (tests, side tables, small tables)."""

    @abstractmethod
    def table_names(self) -> list[str]:
        """Every table this target holds in its schema, change tables included."""

    @abstractmethod
    def query(self, sql: str, params: Sequence[object] | None = None) -> list[tuple[object, ...]]:
        """Run SQL in DuckDB with this target's tables under their own names (`sources`, `sources__ct`),
        unqualified or qualified with the schema (`segment.sources`)."""

    # -- primitives for resumable fan-outs and checks --------------------------------------

    @abstractmethod
    def append_rows(self, name: str, table: pa.Table) -> WriteResult:
        """Append `table` to side table `name` in one commit, creating it from the Arrow schema if absent."""

    @abstractmethod
    def drop_table(self, name: str) -> bool:
        """Remove table `name` (True if it existed). Not for stream tables: their history goes with it."""

    @abstractmethod
    def delete_missing(self, table: TableDef, keys_table: str, run_id: str) -> WriteResult:
        """Delete the rows of `table` whose primary key is not in `keys_table` (a table holding the
        primary-key columns under the same names), with a `D` change row each, in one commit."""

    @abstractmethod
    def read_state(self, key: str) -> str | None:
        """A small value this target keeps between runs (schema-drift checks, cursors); None if unset."""

    @abstractmethod
    def write_state(self, key: str, value: str) -> None: ...

    @abstractmethod
    def sql_session(self) -> duckdb.DuckDBPyConnection:
        """A new in-memory DuckDB connection reading this target's tables under the DuckDB target's names:
        `SELECT * FROM segment.sources`, or `FROM sources` (the schema is the default). The caller closes it."""

    # -- maintenance -----------------------------------------------------------------------

    def maintenance_tables(self) -> list[str]:
        """The tables `optimize` and `vacuum` work on."""
        return self.table_names()

    def optimize(self, name: str) -> dict[str, object]:
        """Compact the small files of table `name` (lake); metrics of what was done."""
        return {}

    def vacuum(self, name: str, retention_hours: int = DEFAULT_VACUUM_RETENTION_HOURS) -> dict[str, object]:
        """Delete files table `name` no longer references and that are older than `retention_hours`."""
        return {}


def missing_parent_error(target: Target, table: str) -> StorageError:
    return StorageError(
        f"table {target.table_name(table)} does not exist yet: materialize the parent asset ({table}) first "
        f"(its ids are the parameters of this stream)"
    )
