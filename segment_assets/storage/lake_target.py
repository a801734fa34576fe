"""The Delta Lake target: one Delta table per stream under `<root>/<schema>/<table>/`, on a local
folder (`file:///...`) or S3 (`s3://bucket/prefix`), written with `deltalake` (delta-rs).

Layout
    `<root>/<schema>/<table>/`       the current table
    `<root>/<schema>/<table>__ct/`   its change table: the table's columns + the `header__*` columns
    `<root>/<schema>/_segment_assets_state/`   key/value state (the change_seq prefix, check baselines)

Writes. Pages are staged to a local Parquet file first (`staging.py`), then the change set is
computed in DuckDB over Arrow (the same SQL as the DuckDB target, `changes.py`) and applied to
the current table in ONE Delta commit: a blind append when the run only inserts, else a `merge`
(update/delete/insert by primary key). FULL_LOAD is an overwrite; `replace_window` is a
predicate overwrite of exactly the window. A killed or failed write commits nothing: the data
files it wrote are not in the log (readers never see them; `vacuum` deletes them), and every
reader reads one committed version, never a mix.

Change tables, "same logical step". Delta has no transaction across two tables, so the change
rows go to `<table>__ct` in a second commit, right after the current table's. The first commit
records in its commit info (`segment_assets`) the change_seq prefix, the time and the run id;
the second carries a Delta app transaction (`txn`, app id `segment_assets:<table>`) whose
version is the current table's version it mirrors. If the process dies between the two, the
next write to that table finds the current-table commits newer than the change
table's app transaction, recomputes their change rows as the diff of the two table versions
(time travel) with the recorded prefix, time and run id, and appends them: the same rows the
lost commit would have written. A reader may see the current table one commit ahead of its
change table for that moment; the change table never stays behind.

change_seq. `YYYYMMDDHHmmSShh` + counter, as the DuckDB target. The prefix is claimed in the
state table by a compare-and-set `merge` (the row holding the last prefix is updated only if it
still holds the value read); two writers that claim at once both rewrite that row's file, so
Delta's conflict check fails the later commit, which retries. Prefixes are therefore unique and
increasing across tables, threads and processes.

S3 and concurrent writers. delta-rs 1.x commits a version by creating `_delta_log/<n>.json`
with a conditional put (`If-None-Match: *`), which AWS S3 has supported natively since 2024
(and MinIO, Cloudflare R2, moto...). The DynamoDB locking provider of earlier releases was
removed in delta-rs 1.0; `AWS_S3_ALLOW_UNSAFE_RENAME` is not needed and not used. Two writers
racing for one version: one wins, the other re-reads the log and retries (appends) or fails
with a commit conflict (merges that touched the same files), which this target reports as a
StorageError with nothing written. A store without conditional puts fails every commit loudly
("conditional put ... not yet implemented") instead of risking a lost commit. One writer per
table is what the assets guarantee (one run per stream); the tests race several processes
anyway against a real S3-compatible server (moto_server).

Partitions. Time-based tables (`replace_window`) are partitioned by a derived string column
`_partition` (`YYYY-MM-DD` for daily streams, `YYYY-MM` for monthly ones) of the stream's time
column in UTC, so replacing a window rewrites only the files of its days (or months). The
column is internal: `read_arrow`, `query` and `sql_session` do not show it, so a table reads the
same on DuckDB and on the lake.

Settings. S3 credentials come from the standard AWS variables (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION / AWS_DEFAULT_REGION, AWS_ENDPOINT_URL for
S3-compatible stores; plain-http endpoints are allowed automatically), then `storage_options`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from hashlib import sha1
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlparse

import duckdb
import pyarrow as pa
import pyarrow.fs as pafs
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.fs import DeltaStorageHandler
from deltalake.schema import Field as DeltaField
from deltalake.schema import PrimitiveType
from deltalake.transaction import Transaction

from segment_assets.api.streams import InlineRecords, Partitioning, RowFilter
from segment_assets.api.tables import ARROW_TYPES, TableDef
from segment_assets.storage.base import (
    CHANGE_SUFFIX,
    DEFAULT_SCHEMA,
    DEFAULT_VACUUM_RETENTION_HOURS,
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
from segment_assets.storage.duckdb_target import DEFAULT_MEMORY_LIMIT
from segment_assets.storage.history import HISTORY_SUFFIX, history_sql, stream_tables
from segment_assets.storage.staging import staged

PARTITION_COLUMN = "_partition"
PARTITION_FORMATS = {Partitioning.DAILY: "%Y-%m-%d", Partitioning.MONTHLY: "%Y-%m"}
COMMIT_KEY = "segment_assets"  # commit-info key holding a change commit's prefix, time and run id
APP_ID_PREFIX = "segment_assets:"
SEQ_KEY = "change_seq_prefix"
AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ALLOW_HTTP",
    "AWS_PROFILE",
)
CLAIM_ATTEMPTS = 60
REPAIR_LOOKBACK = 50  # current-table commits searched for change rows not yet in the change table
HEADER_ARROW = {"VARCHAR": pa.string(), "TIMESTAMPTZ": pa.timestamp("us", tz="UTC")}
_DELTA_PRIMITIVES = {
    pa.string(): "string",
    pa.int64(): "long",
    pa.float64(): "double",
    pa.bool_(): "boolean",
    pa.timestamp("us", tz="UTC"): "timestamp",
    pa.int32(): "integer",
    pa.date32(): "date",
}

_STATE_LOCKS: dict[str, threading.Lock] = {}
_STATE_LOCKS_GUARD = threading.Lock()


def storage_options_for(url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """delta-rs options for a lake root: the AWS_* variables for s3:// roots, then `extra`."""
    options: dict[str, str] = {}
    if url.startswith(("s3://", "s3a://")):
        options = {k: os.environ[k] for k in AWS_VARIABLES if os.environ.get(k)}
        if "AWS_REGION" not in options and os.environ.get("AWS_DEFAULT_REGION"):
            options["AWS_REGION"] = os.environ["AWS_DEFAULT_REGION"]
        endpoint = options.get("AWS_ENDPOINT_URL_S3") or options.get("AWS_ENDPOINT_URL") or ""
        if endpoint.startswith("http://"):
            options.setdefault("AWS_ALLOW_HTTP", "true")  # a local S3-compatible store (MinIO, moto)
    options.update(extra or {})
    return options


def _plain_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_timestamp(t) and t.tz in ("UTC", "+00:00", "Etc/UTC"):
        return pa.timestamp("us", tz="UTC")
    return t


def _sql_name(t: pa.DataType) -> str:
    return next((k for k, v in ARROW_TYPES.items() if v == t and k != "JSON"), str(t))


def _declared_types(name: str) -> dict[str, str]:
    """Column -> DuckDB type the project declares for table `name` (a stream's table or change table):
    Delta stores JSON columns as plain strings."""
    base = name.removesuffix(CHANGE_SUFFIX)
    table = stream_tables().get(base)
    if table is None:
        return {}
    types = dict(table.column_schema())
    if base != name:
        types.update(HEADER_COLUMNS)
    return types


class LakeTarget(Target):
    kind: ClassVar[str] = "delta"

    def __init__(
        self,
        url: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        storage_options: dict[str, str] | None = None,
        stage_dir: str | os.PathLike[str] | None = None,
        memory_limit: str = DEFAULT_MEMORY_LIMIT,
        threads: int = 1,
    ) -> None:
        url = str(url).rstrip("/")
        parsed = urlparse(url)
        if parsed.scheme in ("", "file"):
            local = Path(unquote(parsed.path) if parsed.scheme else url).expanduser().absolute()
            self.local_root: Path | None = local / schema
            self.url = local.as_uri()
            self._root = str(local / schema)
        elif parsed.scheme in ("s3", "s3a"):
            if not parsed.netloc:
                raise ValueError(f"lake url {url!r} names no bucket: use s3://bucket/prefix")
            self.local_root = None
            self.url = url
            self._root = f"{url}/{schema}"
        else:
            raise ValueError(f"lake url {url!r}: use file:///path/to/lake or s3://bucket/prefix")
        self.schema = schema
        self.storage_options = storage_options_for(self.url, storage_options)
        self.memory_limit = memory_limit
        self.threads = threads
        key = sha1(self._root.encode()).hexdigest()[:12]
        self.stage_dir = Path(stage_dir) if stage_dir else Path(tempfile.gettempdir()) / "segment-assets-staging" / key
        with _STATE_LOCKS_GUARD:
            self._state_lock = _STATE_LOCKS.setdefault(self._root, threading.Lock())

    def __repr__(self) -> str:  # never the storage options: they may hold credentials
        return f"LakeTarget({self.url!r}, schema={self.schema!r})"

    # -- locations ------------------------------------------------------------------------

    def _uri(self, name: str) -> str:
        return f"{self._root}/{name}"

    def table_uri(self, name: str) -> str:
        return f"{self.url}/{self.schema}/{name}"

    def _table(self, name: str, version: int | None = None) -> DeltaTable | None:
        try:
            return DeltaTable(self._uri(name), version=version, storage_options=self.storage_options)
        except TableNotFoundError:
            return None

    def _require(self, name: str) -> DeltaTable:
        dt = self._table(name)
        if dt is None:
            raise StorageError(f"table {self.table_name(name)} does not exist at {self.table_uri(name)}")
        return dt

    def _filesystem(self) -> tuple[pafs.FileSystem, str]:
        if self.local_root is not None:
            return pafs.LocalFileSystem(), str(self.local_root)
        return pafs.PyFileSystem(DeltaStorageHandler(self._root, self.storage_options)), ""

    @contextmanager
    def _duck(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A private in-memory DuckDB for one operation, spilling to the staging folder."""
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(
            config={
                "memory_limit": self.memory_limit,
                "threads": self.threads,
                "temp_directory": str(self.stage_dir / "duckdb.tmp"),
                "preserve_insertion_order": False,
            }
        )
        try:
            con.execute("SET TimeZone = 'UTC'")
            yield con
        finally:
            con.close()

    # -- schema ---------------------------------------------------------------------------

    def _arrow_schema(self, table: TableDef, changes: bool = False) -> pa.Schema:
        schema = table.arrow_schema()
        if changes:
            for name, kind in HEADER_COLUMNS:
                schema = schema.append(pa.field(name, HEADER_ARROW[kind]))
        elif table.stream.windowing:
            schema = schema.append(pa.field(PARTITION_COLUMN, pa.string()))
        return schema

    def _ensure(self, name: str, schema: pa.Schema, partition_by: list[str] | None = None) -> DeltaTable:
        dt = self._table(name)
        if dt is None:
            try:
                return DeltaTable.create(
                    self._uri(name),
                    schema,
                    partition_by=partition_by,
                    mode="ignore",
                    storage_options=self.storage_options,
                )
            except (CommitFailedError, DeltaError):
                dt = self._table(name)  # another writer created it at the same moment
                if dt is None:
                    raise
        existing = {f.name: _plain_type(f.type) for f in pa.schema(dt.schema().to_arrow())}
        missing = []
        for f in schema:
            if f.name not in existing:
                missing.append(DeltaField(f.name, PrimitiveType(_DELTA_PRIMITIVES[f.type]), nullable=True))
            elif existing[f.name] != _plain_type(f.type):
                raise StorageError(
                    f"column {f.name} of {self.table_name(name)} is {_sql_name(existing[f.name])} in the lake "
                    f"({self.table_uri(name)}) but the stream now declares {_sql_name(f.type)}: the table was left "
                    f"as it was. "
                    f"Drop the table (and its change table) to reload it with the new type, or declare the old type "
                    f"in the stream's column_types"
                )
        if missing:
            # The declaration (or the API) grew a column: evolve instead of failing (metadata-only commit).
            dt.alter.add_columns(missing)
            dt = self._require(name)
        return dt

    def _ensure_all(self, table: TableDef, with_changes: bool) -> DeltaTable:
        partition = [PARTITION_COLUMN] if table.stream.windowing else None
        dt = self._ensure(table.name, self._arrow_schema(table), partition)
        if with_changes:
            self._ensure(table.name + CHANGE_SUFFIX, self._arrow_schema(table, changes=True))
        return dt

    def ensure_table(self, table: TableDef) -> None:
        self._ensure_all(table, table.stream.update_method.keeps_changes)

    # -- staging --------------------------------------------------------------------------

    def _register_current(self, con: duckdb.DuckDBPyConnection, alias: str, dt: DeltaTable, table: TableDef) -> None:
        cols = ", ".join(q(c) for c in table.column_names)
        con.register(f"{alias}_ds", dt.to_pyarrow_dataset())
        con.execute(f"CREATE OR REPLACE TEMP VIEW {alias} AS SELECT {cols} FROM {alias}_ds")

    def _reader(
        self, con: duckdb.DuckDBPyConnection, sql: str, schema: pa.Schema, params: Sequence[object] | None = None
    ) -> pa.RecordBatchReader:
        """Rows of `sql` streamed as Arrow in `schema` (DuckDB's JSON/timestamp types cast back)."""
        cols = ", ".join(q(f.name) for f in schema)
        reader = con.sql(f"SELECT {cols} FROM ({sql})", params=list(params) if params else None).to_arrow_reader(
            64 * 1024
        )
        return pa.RecordBatchReader.from_batches(
            schema,
            (pa.Table.from_batches([b]).cast(schema).combine_chunks().to_batches()[0] for b in reader if b.num_rows),
        )

    # -- writes ---------------------------------------------------------------------------

    def _write(self, table: TableDef, batches: Iterable[pa.RecordBatch], mode: WriteMode, run_id: str) -> WriteResult:
        started = time.monotonic()
        with staged(table, batches, self.stage_dir) as (path, staged_rows):
            compare = mode is not WriteMode.REPLACE
            dt = self._ensure_all(table, compare)
            if compare:
                self._repair_changes(table)
            with self._duck() as con:
                load_stage(con, table, path)
                if compare:
                    self._register_current(con, "_current", dt, table)
                    sql = changes_sql(table, "_current", "_stage", deletes=mode is WriteMode.COMPARE)
                    con.execute(f"CREATE TEMP TABLE _changes AS {sql}")
                    result = self._apply_changes(con, table, dt, run_id)
                else:
                    write_deltalake(
                        self._uri(table.name),
                        self._reader(con, "SELECT * FROM _stage", table.arrow_schema()),
                        mode="overwrite",
                        schema_mode="merge",
                        storage_options=self.storage_options,
                        commit_properties=self._commit_info({"run_id": run_id}),
                    )
                    result = WriteResult()
            result.key_check = self.check_primary_key(table)
            result.rows = result.key_check.rows
            result.version = self._require(table.name).version()
        result.staged = staged_rows
        result.seconds = time.monotonic() - started
        return result

    @staticmethod
    def _commit_info(info: dict[str, Any], app: Transaction | None = None) -> CommitProperties:
        return CommitProperties(custom_metadata={COMMIT_KEY: json.dumps(info)}, app_transactions=[app] if app else None)

    def _apply_changes(
        self, con: duckdb.DuckDBPyConnection, table: TableDef, dt: DeltaTable, run_id: str
    ) -> WriteResult:
        """`_changes` (op + columns) onto the current table in one commit, then into the change table."""
        result = count_changes(con, "_changes")
        total = result.inserted + result.updated + result.deleted
        if not total:
            return result
        prefix = self._claim_seq_prefix()
        info = {"prefix": prefix, "timestamp": datetime.now(UTC).isoformat(), "run_id": run_id, "changes": total}
        commit = self._commit_info(info)
        schema = table.arrow_schema()
        try:
            if total == result.inserted:
                # Only new keys: a blind append, no file of the table is rewritten.
                write_deltalake(
                    dt,
                    self._reader(con, "SELECT * FROM _changes", schema),
                    mode="append",
                    schema_mode="merge",
                    commit_properties=commit,
                )
            else:
                source = self._reader(con, "SELECT * FROM _changes", schema.insert(0, pa.field("op", pa.string())))
                on = " AND ".join(f"t.{q(k)} = s.{q(k)}" for k in table.primary_key)
                (
                    dt.merge(source, predicate=on, source_alias="s", target_alias="t", commit_properties=commit)
                    .when_matched_delete(predicate="s.op = 'D'")
                    .when_matched_update_all(predicate="s.op = 'U'", except_cols=["op"])
                    .when_not_matched_insert_all(predicate="s.op = 'I'", except_cols=["op"])
                    .execute()
                )
        except CommitFailedError as exc:
            raise StorageError(
                f"{self.table_name(table.name)}: another writer committed to the table while this "
                f"run was writing ({exc}); nothing was written, run the stream again"
            ) from exc
        version = self._change_commit_version(table, prefix)
        self._append_change_rows(con, table, "_changes", info, version)
        number_changes(result, prefix)
        return result

    def _change_commit_version(self, table: TableDef, prefix: str) -> int:
        """The version of the current-table commit that recorded `prefix` (normally the latest)."""
        for entry in self._require(table.name).history(limit=5):
            if COMMIT_KEY in entry and json.loads(entry[COMMIT_KEY]).get("prefix") == prefix:
                return int(entry["version"])
        raise StorageError(
            f"{self.table_name(table.name)}: the change commit just written ({prefix}) is not among "
            "its last commits: another writer is writing this table"
        )

    def _append_change_rows(
        self, con: duckdb.DuckDBPyConnection, table: TableDef, changes: str, info: dict[str, Any], version: int
    ) -> None:
        """The change rows of one current-table commit (`version`), marked with an app transaction."""
        ct = table.name + CHANGE_SUFFIX
        self._ensure(ct, self._arrow_schema(table, changes=True))
        schema = self._arrow_schema(table, changes=True)
        rows = self._reader(
            con,
            change_rows_sql(table, changes),
            schema,
            [info["prefix"], datetime.fromisoformat(info["timestamp"]), info["run_id"]],
        )
        app = Transaction(APP_ID_PREFIX + table.name, version)
        write_deltalake(
            self._uri(ct),
            rows,
            mode="append",
            schema_mode="merge",
            storage_options=self.storage_options,
            commit_properties=self._commit_info({"source_version": version, **info}, app),
        )

    def _repair_changes(self, table: TableDef) -> int:
        """Append the change rows of current-table commits whose change-table commit never happened
        (the process died between the two); returns how many commits were repaired."""
        dt = self._table(table.name)
        if dt is None:
            return 0
        ct = self._table(table.name + CHANGE_SUFFIX)
        mirrored = ct.transaction_version(APP_ID_PREFIX + table.name) if ct is not None else None
        behind = dt.version() - (mirrored if mirrored is not None else -1)
        if behind <= 0:
            return 0
        pending = []
        for entry in dt.history(limit=min(behind, REPAIR_LOOKBACK)):
            if int(entry["version"]) <= (mirrored if mirrored is not None else -1) or COMMIT_KEY not in entry:
                continue
            info = json.loads(entry[COMMIT_KEY])
            if "prefix" in info:
                pending.append((int(entry["version"]), info))
        for version, info in sorted(pending, key=lambda p: p[0]):
            before, after = self._table(table.name, version - 1), self._table(table.name, version)
            if before is None or after is None:
                raise StorageError(
                    f"{self.table_name(table.name)}: version {version} lacks its change rows and "
                    f"cannot be read back to recompute them (vacuumed?)"
                )
            with self._duck() as con:
                self._register_current(con, "_before", before, table)
                self._register_current(con, "_after", after, table)
                con.execute(f"CREATE TEMP TABLE _changes AS {changes_sql(table, '_before', '_after', deletes=True)}")
                self._append_change_rows(con, table, "_changes", info, version)
        return len(pending)

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
        """Idempotent load of one time window: a predicate overwrite of exactly [start, end)."""
        started = time.monotonic()
        window = table.stream.windowing
        fmt = PARTITION_FORMATS[window.partitioning] if window else "%Y-%m-%d"
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        tc = q(time_column)
        within = within_window(time_column)
        first, last = start.strftime(fmt), (end - timedelta(microseconds=1)).strftime(fmt)
        predicate = (
            f"{PARTITION_COLUMN} >= '{first}' AND {PARTITION_COLUMN} <= '{last}' AND "
            f"{tc} >= '{start.isoformat()}' AND {tc} < '{end.isoformat()}'"
        )
        with staged(table, batches, self.stage_dir) as (path, staged_rows):
            dt = self._ensure_all(table, False)
            with self._duck() as con:
                load_stage(con, table, path)
                con.register("_current_ds", dt.to_pyarrow_dataset())
                deleted = con.execute(f"SELECT count(*) FROM _current_ds WHERE {within}", [start, end]).fetchall()[0][0]
                inside = con.execute(f"SELECT count(*) FROM _stage WHERE {within}", [start, end]).fetchall()[0][0]
                # Rows the API put outside the requested window belong to other partitions.
                rows = self._reader(
                    con,
                    f"SELECT *, strftime({tc}, '{fmt}') AS {PARTITION_COLUMN} FROM _stage WHERE {within}",
                    self._arrow_schema(table),
                    [start, end],
                )
                write_deltalake(
                    dt,
                    rows,
                    mode="overwrite",
                    predicate=predicate,
                    schema_mode="merge",
                    commit_properties=self._commit_info(
                        {"run_id": run_id, "window": [start.isoformat(), end.isoformat()]}
                    ),
                )
            check = self.check_primary_key(table)
            version = self._require(table.name).version()
        return WriteResult(
            rows=check.rows,
            staged=staged_rows,
            inserted=inside,
            deleted=deleted,
            version=version,
            seconds=time.monotonic() - started,
            key_check=check,
        )

    # -- change_seq prefix and state ------------------------------------------------------

    def _state_table(self) -> DeltaTable:
        dt = self._table(STATE_TABLE)
        if dt is not None:
            return dt
        seed = pa.table(
            {
                "key": [SEQ_KEY],
                "value": pa.array([None], pa.string()),
                "updated_at": pa.array([datetime.now(UTC)], pa.timestamp("us", tz="UTC")),
            }
        )
        try:
            # Created with the prefix row in its first commit: every claim is then an update of that
            # row, which Delta's conflict check serialises (concurrent inserts would not conflict).
            write_deltalake(self._uri(STATE_TABLE), seed, mode="error", storage_options=self.storage_options)
        except (CommitFailedError, DeltaError):
            pass  # another writer created it first
        return self._require(STATE_TABLE)

    def _read_state(self, dt: DeltaTable, key: str) -> str | None:
        rows = dt.to_pyarrow_table(columns=["value", "updated_at"], filters=[("key", "=", key)])
        if not rows.num_rows:
            return None
        return rows.sort_by([("updated_at", "descending")]).column("value")[0].as_py()

    def _compare_and_set(self, key: str, compute: Any) -> str:
        """Set `key` to compute(old value) only if nobody changed it meanwhile; retries on conflicts."""
        with self._state_lock:
            for attempt in range(CLAIM_ATTEMPTS):
                dt = self._state_table()
                old = self._read_state(dt, key)
                new = compute(old)
                row = pa.table(
                    {
                        "key": [key],
                        "value": [new],
                        "updated_at": pa.array([datetime.now(UTC)], pa.timestamp("us", tz="UTC")),
                    }
                )
                same = "t.value IS NULL" if old is None else "t.value = s.old"
                source = row.append_column("old", pa.array([old], pa.string()))
                try:
                    metrics = (
                        dt.merge(source, predicate="t.key = s.key", source_alias="s", target_alias="t")
                        .when_matched_update(updates={"value": "s.value", "updated_at": "s.updated_at"}, predicate=same)
                        .when_not_matched_insert(
                            updates={"key": "s.key", "value": "s.value", "updated_at": "s.updated_at"}
                        )
                        .execute()
                    )
                except CommitFailedError:
                    time.sleep(random.uniform(0.01, 0.05 * (attempt + 1)))
                    continue
                if metrics.get("num_target_rows_updated", 0) + metrics.get("num_target_rows_inserted", 0):
                    return new
            raise StorageError(
                f"could not update state {key!r} in {self.table_uri(STATE_TABLE)} after "
                f"{CLAIM_ATTEMPTS} attempts: too many concurrent writers"
            )

    def _claim_seq_prefix(self) -> str:
        return self._compare_and_set(SEQ_KEY, next_seq_prefix)

    def read_state(self, key: str) -> str | None:
        dt = self._table(STATE_TABLE)
        return self._read_state(dt, key) if dt is not None else None

    def write_state(self, key: str, value: str) -> None:
        self._compare_and_set(key, lambda _old: value)

    # -- side tables and fan-out cycles ---------------------------------------------------

    def append_rows(self, name: str, table: pa.Table) -> WriteResult:
        started = time.monotonic()
        write_deltalake(
            self._uri(name), table, mode="append", schema_mode="merge", storage_options=self.storage_options
        )
        dt = self._require(name)
        return WriteResult(
            rows=dt.count(),
            staged=table.num_rows,
            inserted=table.num_rows,
            version=dt.version(),
            seconds=time.monotonic() - started,
        )

    def drop_table(self, name: str) -> bool:
        if not self.table_exists(name):
            return False
        fs, base = self._filesystem()
        path = f"{base}/{name}" if base else name
        if self.local_root is not None:
            shutil.rmtree(path)
        else:
            fs.delete_dir(path)
        return True

    def delete_missing(self, table: TableDef, keys_table: str, run_id: str) -> WriteResult:
        started = time.monotonic()
        keys_dt = self._table(keys_table)
        if keys_dt is None:
            raise StorageError(
                f"delete_missing on {self.table_name(table.name)}: the key table "
                f"{self.table_name(keys_table)} does not exist; nothing was deleted"
            )
        dt = self._ensure_all(table, True)
        self._repair_changes(table)
        with self._duck() as con:
            self._register_current(con, "_current", dt, table)
            con.register("_keys", keys_dt.to_pyarrow_dataset())
            con.execute(f"CREATE TEMP TABLE _changes AS {missing_keys_sql(table, '_current', '_keys')}")
            result = self._apply_changes(con, table, dt, run_id)
        result.key_check = self.check_primary_key(table)
        result.rows = result.key_check.rows
        result.version = self._require(table.name).version()
        result.seconds = time.monotonic() - started
        return result

    # -- reads ----------------------------------------------------------------------------

    def table_exists(self, name: str) -> bool:
        return DeltaTable.is_deltatable(self._uri(name), storage_options=self.storage_options)

    @contextmanager
    def _reading(self, name: str) -> Iterator[duckdb.DuckDBPyConnection]:
        """A DuckDB connection with table `name` registered as `_t`."""
        dt = self._table(name)
        if dt is None:
            raise missing_parent_error(self, name)
        with self._duck() as con:
            con.register("_t", dt.to_pyarrow_dataset())
            yield con

    def parent_keys(
        self,
        table: str,
        columns: Sequence[str],
        row_filter: RowFilter | None = None,
        cut: InlineRecords | None = None,
    ) -> list[tuple[object, ...]]:
        with self._reading(table) as con:
            return select_parent_keys(con, "_t", columns, row_filter, cut)

    def _copy_complete_lists(
        self, table: str, columns: Sequence[str], row_filter: RowFilter | None, inline: InlineRecords, path: str
    ) -> None:
        with self._reading(table) as con:
            copy_complete_lists(con, "_t", columns, row_filter, inline, path)

    def max_by(self, table: str, group: Sequence[str], column: str) -> dict[tuple[str, ...], object]:
        if not self.table_exists(table):
            return {}
        with self._reading(table) as con:
            return select_max_by(con, "_t", group, column)

    def check_primary_key(self, table: TableDef) -> KeyCheck:
        if not self.table_exists(table.name):
            return KeyCheck(0, 0, 0)
        with self._reading(table.name) as con:
            return select_key_check(con, table, "_t")

    def read_arrow(self, name: str, columns: Sequence[str] | None = None) -> pa.Table:
        dt = self._require(name)
        data = dt.to_pyarrow_table(columns=list(columns) if columns else None)
        if PARTITION_COLUMN in data.column_names and not (columns and PARTITION_COLUMN in columns):
            data = data.drop_columns([PARTITION_COLUMN])
        return data

    def table_names(self) -> list[str]:
        fs, base = self._filesystem()
        try:
            infos = fs.get_file_info(pafs.FileSelector(base, recursive=False, allow_not_found=True))
        except (FileNotFoundError, OSError):
            return []
        names = [Path(i.path).name for i in infos if i.type == pafs.FileType.Directory]
        return sorted(n for n in names if n != STATE_TABLE and not n.startswith(".") and self.table_exists(n))

    def query(self, sql: str, params: Sequence[object] | None = None) -> list[tuple[object, ...]]:
        con = self.sql_session()
        try:
            return con.execute(sql, params or []).fetchall()
        finally:
            con.close()

    def sql_session(self) -> duckdb.DuckDBPyConnection:
        """Every Delta table as a view in schema `<schema>` over an Arrow dataset of the version current
        now (through `deltalake`, since DuckDB's delta/httpfs extensions cannot be downloaded everywhere),
        with the column types the DuckDB target has (JSON columns as JSON) and without the internal
        partition column. Reopen the session to see later commits."""
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"CREATE SCHEMA {q(self.schema)}")
        for i, name in enumerate(self.table_names()):
            dt = self._table(name)
            if dt is None:
                continue
            dataset = dt.to_pyarrow_dataset()
            alias = f"__delta_{i}"
            con.register(alias, dataset)
            types = _declared_types(name)
            cols = []
            for field in dataset.schema:
                if field.name == PARTITION_COLUMN:
                    continue
                cast = types.get(field.name) == "JSON"
                cols.append(f"CAST({q(field.name)} AS JSON) AS {q(field.name)}" if cast else q(field.name))
            con.execute(f"CREATE VIEW {q(self.schema)}.{q(name)} AS SELECT {', '.join(cols)} FROM {alias}")
            table = stream_tables().get(name.removesuffix(CHANGE_SUFFIX))
            if name.endswith(CHANGE_SUFFIX) and table is not None:
                # History is a view over the change table: always complete, whatever vacuum removed.
                history = history_sql(table, f"{q(self.schema)}.{q(name)}")
                con.execute(f"CREATE VIEW {q(self.schema)}.{q(table.name + HISTORY_SUFFIX)} AS {history}")
        con.execute(f"USE memory.{q(self.schema)}")
        return con

    # -- maintenance ----------------------------------------------------------------------

    def optimize(self, name: str) -> dict[str, object]:
        """Compact small files (change tables and windows get one or more per commit)."""
        dt = self._require(name)
        metrics = dt.optimize.compact()
        return {
            "table": name,
            "files_added": metrics.get("numFilesAdded", 0),
            "files_removed": metrics.get("numFilesRemoved", 0),
            "version": self._require(name).version(),
        }

    def vacuum(self, name: str, retention_hours: int = DEFAULT_VACUUM_RETENTION_HOURS) -> dict[str, object]:
        """Delete data files the table no longer references (replaced, compacted, or left by killed
        writes) once older than `retention_hours`; time travel past that point stops working."""
        dt = self._require(name)
        removed = dt.vacuum(retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False, full=True)
        return {"table": name, "files_deleted": len(removed)}

    def maintenance_tables(self) -> list[str]:
        """Every table, the state table included (it takes one small commit per change_seq claim)."""
        return [*self.table_names(), *([STATE_TABLE] if self.table_exists(STATE_TABLE) else [])]
