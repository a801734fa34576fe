"""12. Memory of a resumable cycle against its number of parents.

A fan-out read over several runs (`engine/cycles.py`) starts each run by finding its share of
the parents: how many there are, which are done, and the next ones in key order. Measured here
on a DuckDB file whose parent table (`audiences`, the parent of `audience_consumers`, a 25/min
fan-out) holds N rows, half of them recorded done by earlier runs of the cycle, with the
stream's default budget (30 minutes at 25/min: 750 parents per run). Python's allocations are
traced (tracemalloc) while the run's share is chosen, at a small and a large N: the ratio of the
two peaks is the figure (flat memory: about 1). For comparison, the same N listed as the runner
did before the change (`ParentKeys.rows`: every parent key as a dict, then the cycle's set of
those done). Native memory (DuckDB's own) is not traced; the query runs in DuckDB.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from bench.figures import Figure, Section, Table, prose
from bench.settings import Settings, Workdir

if TYPE_CHECKING:
    from segment_assets.api.streams import StreamSpec
    from segment_assets.storage import DuckDBTarget

T = TypeVar("T")

STREAM = "audience_consumers"
SIZES = (10_000, 740_000)
TARGET_RATIO = 1.5


def _target_with_parents(path: Path, n: int) -> DuckDBTarget:
    import duckdb
    import pyarrow as pa

    from segment_assets.api.tables import table_def
    from segment_assets.engine.cycles import PARENTS_SUFFIX
    from segment_assets.storage import DuckDBTarget

    target = DuckDBTarget(path)
    target.ensure_table(table_def("audiences"))
    target.close()
    con = duckdb.connect(str(path))
    con.execute(
        f"INSERT INTO segment.audiences (space_id, id) SELECT 'spa_' || (i % 7), 'aud_' || lpad(i::VARCHAR, 8, '0') "
        f"FROM range({n}) t(i)"
    )
    con.close()
    half = pa.table(
        {
            "spaceId": pa.array([f"spa_{i % 7}" for i in range(0, n, 2)], pa.string()),
            "id": pa.array([f"aud_{i:08d}" for i in range(0, n, 2)], pa.string()),
        }
    )
    target.append_rows(STREAM + PARENTS_SUFFIX, half)
    del half
    return target


def _peak(fn: Callable[[], T]) -> tuple[int, T]:
    """Python's peak traced allocation while `fn` runs, and what it returned."""
    gc.collect()
    tracemalloc.start()
    try:
        value = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, value


def peak_figures(
    now: dict[int, int], before: dict[int, int], what: str, what_before: str, target: str, target_ratio: float
) -> list[Figure]:
    """The two figures of a memory-against-size benchmark: the ratio of the traced peaks at the
    largest and smallest size now (against `target_ratio`), and the same as it was before."""
    low, high = min(now), max(now)
    ratio = now[high] / now[low]
    sizes = f"{high:,} / {low:,} parents"
    return [
        Figure(
            f"{what}, {sizes}",
            f"{ratio:.2f}× ({now[high] / 2**20:,.1f} vs {now[low] / 2**20:,.1f} MiB)",
            target,
            ratio <= target_ratio,
        ),
        Figure(
            f"{what_before}, {sizes}",
            f"{before[high] / before[low]:.1f}× ({before[high] / 2**20:,.1f} vs {before[low] / 2**20:,.1f} MiB)",
        ),
    ]


def _list_all(stream: StreamSpec, target: DuckDBTarget) -> object:
    """What the runner did before: every parent key as a dict, then the cycle's set of those done."""
    from segment_assets.engine.reading import ParentKeys

    parents = ParentKeys(target).rows(stream)
    return parents, {(p["spaceId"], p["id"]) for p in parents[::2]}


def run(settings: Settings, work: Workdir) -> Section:
    from segment_assets.api.streams import STREAMS
    from segment_assets.api.tables import table_def
    from segment_assets.engine.cycles import CycleState, budget_requests, open_cycle

    stream, table = STREAMS[STREAM], table_def(STREAM)
    budget = budget_requests(stream, 30.0)
    rows = []
    now: dict[int, int] = {}
    listed: dict[int, int] = {}
    for n in SIZES:
        target = _target_with_parents(work.file(f"cycles-{n}", ".duckdb"), n)
        CycleState(cycle="2026-12-01T00:00:00Z", parents_total=n, parents_done=n // 2).save(target, table.name)
        now[n], cycle = _peak(partial(open_cycle, stream, table, target, budget))
        assert cycle is not None and len(cycle.chunk) == budget and cycle.state.parents_done == n // 2
        listed[n], _ = _peak(partial(_list_all, stream, target))
        target.close()
        rows.append([f"{n:,}", f"{now[n] / 2**20:,.1f} MiB", f"{listed[n] / 2**20:,.1f} MiB", str(len(cycle.chunk))])
    section = Section(12, "Memory of a resumable cycle against its parents", method=prose(__doc__))
    section.figures += peak_figures(
        now,
        listed,
        "traced peak choosing a run's share",
        "the same, listing every parent as before",
        f"≤ {TARGET_RATIO}×",
        TARGET_RATIO,
    )
    section.tables.append(
        Table(
            ["parents", "traced peak: the run's share", "traced peak: every parent listed (before)", "chunk"],
            rows,
        )
    )
    return section
