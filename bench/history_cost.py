"""The cost of history (`<table>__history`, `snapshot`, `diff`) on a big table, standalone:

    python -m bench.history_cost [--rows 200000] [--syncs 10] [--target duckdb|lake] [--workdir DIR]

A `sources` table of `rows` rows is written by reload and compare, then `syncs` more times, each
updating 5% of the rows and deleting or re-creating 0.5%. Reported: the size of the table and of
its change table, and the median time (3 runs) of a full scan of the history view, one key's
history, a snapshot as of the middle sync, and a diff over all syncs and over the last two.
Not part of `python -m bench` (no target to hold, figures only for the record).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from segment_assets.api.streams import UpdateMethod
from segment_assets.api.tables import table_def
from segment_assets.storage import DuckDBTarget, Target
from segment_assets.storage.history import diff, write_snapshot
from segment_assets.storage.lake_target import LakeTarget

SOURCES = table_def("sources")


def record(i: int, version: int) -> dict[str, Any]:
    return {
        "id": f"src{i:07d}",
        "slug": f"s{i}",
        "name": f"Source {i} v{version}",
        "workspaceId": "ws",
        "enabled": version % 2 == 0,
        "writeKeys": [f"k{i}"],
        "settings": {"a": i, "v": version},
        "labels": [],
        "metadata": {"id": "m", "name": "JS"},
    }


def size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def median_seconds(fn: Callable[[], object], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.monotonic()
        fn()
        times.append(time.monotonic() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.history_cost", description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--syncs", type=int, default=10)
    parser.add_argument("--target", choices=("duckdb", "lake"), default="duckdb")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="history-cost-"))
    root.mkdir(parents=True, exist_ok=True)
    n = args.rows
    target: Target = (
        DuckDBTarget(root / "w.duckdb")
        if args.target == "duckdb"
        else LakeTarget((root / "lake").as_uri(), stage_dir=root / "stage")
    )
    versions, alive, rng, moments = [0] * n, [True] * n, random.Random(1), []

    def batches() -> Iterator[pa.RecordBatch]:
        records = [record(i, versions[i]) for i in range(n) if alive[i]]
        for start in range(0, len(records), 50_000):
            yield SOURCES.shaper().batch(records[start : start + 50_000], {}, {})

    for k in range(args.syncs + 1):
        if k:
            for i in rng.sample(range(n), n // 20):
                versions[i] += 1
            for i in rng.sample(range(n), n // 200):
                alive[i] = not alive[i]
        started = time.monotonic()
        result = target.write_snapshot(SOURCES, batches(), method=UpdateMethod.RELOAD_AND_COMPARE, run_id=f"r{k}")
        moments.append(datetime.now(UTC))
        print(f"sync {k + 1}: {time.monotonic() - started:.1f}s +{result.inserted} ~{result.updated} -{result.deleted}")
    target.close()
    con = target.sql_session()
    counts = con.execute(
        "SELECT (SELECT count(*) FROM sources), (SELECT count(*) FROM sources__ct), "
        "(SELECT count(*) FROM sources__history)"
    ).fetchall()[0]
    print(f"rows {counts[0]:,}, change rows {counts[1]:,}, history rows {counts[2]:,}")
    if args.target == "duckdb":
        for name in ("sources", "sources__ct"):  # each table alone in a file, to weigh them apart
            alone = root / f"{name}.duckdb"
            with duckdb.connect() as c:
                c.execute(f"ATTACH '{root / 'w.duckdb'}' AS w (READ_ONLY); ATTACH '{alone}' AS x")
                c.execute(f"CREATE TABLE x.t AS SELECT * FROM w.segment.{name}")
            print(f"{name}: {size(alone) / 1e6:.1f} MB in a file of its own")
    else:
        for name in ("sources", "sources__ct"):
            print(f"{name}: {size(root / 'lake' / 'segment' / name) / 1e6:.1f} MB (all versions, not vacuumed)")
    figures = {
        "scan of the history view": lambda: con.execute("SELECT count(*) FILTER (is_current) FROM sources__history"),
        "one key's history": lambda: con.execute("SELECT * FROM sources__history WHERE id = 'src0000042'").fetchall(),
    }
    for label, fn in figures.items():
        print(f"{label}: {median_seconds(fn):.2f}s")
    runs = iter(range(100))
    middle = moments[len(moments) // 2]
    print(
        f"snapshot as of the middle sync: "
        f"{median_seconds(lambda: write_snapshot(con, middle, root / f'snap{next(runs)}.duckdb', 'segment')):.2f}s, "
        f"file {size(root / 'snap0.duckdb') / 1e6:.1f} MB"
    )
    for label, start in (("all syncs", moments[0]), ("the last two syncs", moments[-2])):
        lines = len(diff(con, start, moments[-1], ["sources"])[0])
        seconds = median_seconds(lambda start=start: diff(con, start, moments[-1], ["sources"]))
        print(f"diff over {label}: {seconds:.2f}s, {lines:,} lines")
    con.close()
    if not args.workdir:
        shutil.rmtree(root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
