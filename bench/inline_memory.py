"""13. Memory of the inline sample lists against the number of parents.

A sample-value stream whose parent's rows carry its records (`StreamSpec.inline`) requests only
the parents whose stored list may have been cut, and writes the others' records from their lists
(`engine/reading.py`). Measured here on a DuckDB file whose parent table (`space_traits`) holds N
traits, one in 36 with a full list of 100 values and the others with 0 to 59, as the demo's mix:
Python's allocations are traced (tracemalloc) while the engine splits the parents and reads every
complete list, as the write consumes them (one scan of the parent table into a staging Parquet
file, read back 2,000 lists at a time). For comparison, the same N read as the engine did
before: every parent with its list, held for the whole stream. Native memory (DuckDB's own) is
not traced.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from bench.cycle_memory import _peak, peak_figures
from bench.figures import Section, Table, prose
from bench.settings import Settings, Workdir

if TYPE_CHECKING:
    from segment_assets.api.streams import StreamSpec
    from segment_assets.storage import DuckDBTarget

STREAM = "space_trait_sample_values"
SIZES = (20_000, 200_000)
TARGET_RATIO = 3.0  # what grows is the list of parents still requested (one in 36), not the lists


def _target_with_traits(path: Path, n: int) -> DuckDBTarget:
    import duckdb

    from segment_assets.api.tables import table_def
    from segment_assets.storage import DuckDBTarget

    target = DuckDBTarget(path)
    target.ensure_table(table_def("space_traits"))
    target.close()
    con = duckdb.connect(str(path))
    values = "to_json(list_transform(range({}), lambda x: 'value-' || x))::VARCHAR"
    con.execute(
        "INSERT INTO segment.space_traits (space_id, trait, samples) "
        "SELECT 'spa_1', 'trait_' || lpad(i::VARCHAR, 8, '0'), "
        f"CASE WHEN i % 36 = 0 THEN {values.format(100)} ELSE {values.format('i % 60')} END FROM range({n}) t(i)"
    )
    con.close()
    return target


def _now(stream: StreamSpec, target: DuckDBTarget) -> int:
    from segment_assets.engine.reading import ParentKeys

    parents = ParentKeys(target).inline(stream)
    return sum(1 for _ in parents.complete())


def _before(stream: StreamSpec, target: DuckDBTarget) -> int:
    """What the engine held before: every parent with its stored list, for the stream's duration."""
    assert stream.parent and stream.inline
    keys = ", ".join(stream.parent.params.values())
    rows = target.query(f"SELECT DISTINCT {keys}, {stream.inline.column} FROM {stream.parent.stream} ORDER BY {keys}")
    return len(rows)


def run(settings: Settings, work: Workdir) -> Section:
    from segment_assets.api.streams import STREAMS

    stream = STREAMS[STREAM]
    rows = []
    now: dict[int, int] = {}
    before: dict[int, int] = {}
    for n in SIZES:
        target = _target_with_traits(work.file(f"inline-{n}", ".duckdb"), n)
        _now(stream, target)  # once untraced: first-time imports and caches are not the lists' memory
        now[n], complete = _peak(partial(_now, stream, target))
        before[n], listed = _peak(partial(_before, stream, target))
        target.close()
        assert listed == n and complete == n - len(range(0, n, 36))
        rows.append([f"{n:,}", f"{complete:,}", f"{now[n] / 2**20:,.1f} MiB", f"{before[n] / 2**20:,.1f} MiB"])
    section = Section(13, "Memory of the inline sample lists against the number of parents", method=prose(__doc__))
    section.figures += peak_figures(
        now,
        before,
        "traced peak reading the complete lists",
        "the same, every list held as before",
        f"≤ {TARGET_RATIO:g}× (10× the parents)",
        TARGET_RATIO,
    )
    section.tables.append(
        Table(
            ["parents", "complete lists", "traced peak: read in pieces", "traced peak: all lists held (before)"], rows
        )
    )
    return section
