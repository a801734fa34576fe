"""Pages to a local Parquet file before any target is touched.

A stream's pages arrive as many small Arrow batches (one per API page). They are buffered
into row groups of a sensible size before they are written: a Parquet writer keeps every
row group's footer metadata until it closes, so one row group per page would make memory
grow with the number of requests. The file is removed when the write is done, and
files left by processes that died mid-run are swept by the next staging in the folder.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from segment_assets.api.tables import TableDef

ROW_GROUP_ROWS = 128 * 1024
ROW_GROUP_BYTES = 16 * 1024 * 1024


def sweep_orphans(stage_dir: Path) -> None:
    """Remove staging files of processes that died mid-run (kill -9 skips their cleanup)."""
    for f in stage_dir.glob("*.parquet"):
        try:
            pid = int(f.name.split(".")[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            f.unlink(missing_ok=True)
        except (ValueError, IndexError, PermissionError):
            continue


@contextmanager
def staged(table: TableDef, batches: Iterable[pa.RecordBatch], stage_dir: Path) -> Iterator[tuple[str, int]]:
    """Stream `batches` of `table` into a Parquet file in `stage_dir`; yields (path, rows) and removes the file."""
    schema = table.arrow_schema()
    stage_dir.mkdir(parents=True, exist_ok=True)
    sweep_orphans(stage_dir)
    # The pid in the name lets sweep_orphans tell a live writer's file from a dead one's.
    fd, path = tempfile.mkstemp(prefix=f"{table.name}.{os.getpid()}.", suffix=".parquet", dir=stage_dir)
    os.close(fd)
    rows = 0
    try:
        with pq.ParquetWriter(path, schema, compression="zstd") as writer:
            buffer: list[pa.RecordBatch] = []
            buffered_rows = buffered_bytes = 0
            for batch in batches:
                if not batch.num_rows:
                    continue
                buffer.append(batch)
                buffered_rows += batch.num_rows
                buffered_bytes += batch.nbytes
                rows += batch.num_rows
                if buffered_rows >= ROW_GROUP_ROWS or buffered_bytes >= ROW_GROUP_BYTES:
                    writer.write_table(pa.Table.from_batches(buffer, schema), row_group_size=buffered_rows)
                    buffer, buffered_rows, buffered_bytes = [], 0, 0
            if buffer:
                writer.write_table(pa.Table.from_batches(buffer, schema), row_group_size=buffered_rows)
            del buffer
        # Arrow's allocator keeps freed pages for reuse; hand them back before the target's turn.
        pa.default_memory_pool().release_unused()
        yield path, rows
    finally:
        Path(path).unlink(missing_ok=True)
