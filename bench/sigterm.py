"""8. Time to stop after SIGTERM, and the state the DuckDB file is left in.

A paced `segment-assets sync` against the simulator with the documented limits (as in
benchmark 1) gets SIGTERM once it has reported some streams written, while the rate-limited
ones are still waiting or reading; the time from the signal to the process's exit is measured.
Then the file is opened read-only and checked: every configuration table in it holds either
exactly the rows of a complete read (a reference sync of the same workspace, unpaced, against an
unlimited simulator), its change table one insert per row, or no row at all: nothing half-written;
every stream the terminal reported written is complete; no staging file is left in `.staging/`
and no write-ahead log beside the file. Tables committed are also compared with the
materializations Dagster recorded for the interrupted run.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from bench import instance
from bench.figures import Figure, Section, Table, prose
from bench.settings import Settings, Workdir, start_sync, sync, sync_env

DONE = re.compile(r"^\[\d+/\d+\] (\w+): (done|unavailable)")


def _written(lines: list[str]) -> list[str]:
    return [m.group(1) for m in (DONE.match(line) for line in lines) if m]


def _counts(db: Path) -> dict[str, int]:
    with duckdb.connect(str(db), read_only=True) as con:
        catalog = con.execute("SELECT current_database()").fetchone()[0]
        names = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_catalog = ? AND table_schema = 'segment'",
                [catalog],
            ).fetchall()
        ]
        return {n: con.execute(f'SELECT count(*) FROM "{catalog}".segment."{n}"').fetchone()[0] for n in names}


def run(settings: Settings, work: Workdir) -> Section:
    from segment_assets.api.streams import STREAMS

    home = work.home("sigterm-home")
    db = work.file("sigterm", ".duckdb")
    config = {
        "seed": 7,
        "scale": settings.limits_scale,
        "latency_ms": settings.limits_latency_ms,
        "rate_limits": "realistic",
    }
    with work.simulator(**config) as sim:
        child = start_sync(work, sync_env(sim, home, db=db, pace=True), label="sigterm")
        child.wait_for(lambda lines: len(_written(lines)) >= settings.sigterm_after_streams, timeout=600)
        before = _written(child.lines)
        child.terminate()
        stopped = child.reap(timeout=300)
    if stopped.signalled_at is None:
        raise RuntimeError(f"the sync ended (exit {stopped.returncode}) before it was signalled; log {stopped.log}")
    stop_seconds = stopped.ended - stopped.signalled_at
    written = _written(stopped.stdout.splitlines())
    ref_db = work.file("sigterm-reference", ".duckdb")
    interrupted_runs = instance.run_ids(home)
    with work.simulator(seed=7, scale=settings.limits_scale) as sim:
        sync(work, sync_env(sim, home, db=ref_db, pace=False), label="sigterm-reference")
    reference_runs = instance.run_ids(home) - interrupted_runs
    reference = _counts(ref_db)
    problems: list[str] = []
    try:
        counts = _counts(db)
    except duckdb.Error as exc:
        counts = {}
        problems.append(f"the file does not open read-only: {exc}")
    config_tables = {s.table for s in STREAMS.values() if s.materialized and s.windowing is None}
    complete, empty = [], []
    for name in sorted(config_tables):
        rows, ref = counts.get(name), reference.get(name)
        if rows is None:
            continue
        if rows == ref:
            complete.append(name)
            if STREAMS[name].update_method.keeps_changes and counts.get(f"{name}__ct") != rows:
                problems.append(f"{name}__ct: {counts.get(f'{name}__ct')} change rows for {rows} rows")
        elif rows == 0:
            empty.append(name)
        else:
            problems.append(f"{name}: {rows} rows, a complete read has {ref}")
    for name in written:
        if name in config_tables and name not in complete:
            problems.append(f"{name}: reported written, but holds {counts.get(name)} rows of {reference.get(name)}")
    stopped_runs = instance.runs(home, exclude=reference_runs)
    in_run = set(instance.streams(stopped_runs))
    runless = instance.runless_streams(home, set(complete) - in_run, {r.run_id for r in stopped_runs})
    unrecorded = sorted(set(complete) - in_run - runless)
    staging = sorted(p.name for p in (db.parent / ".staging").glob("*.parquet"))
    wal = Path(f"{db}.wal")
    if staging:
        problems.append(f"staging files left: {', '.join(staging)}")
    if wal.exists():
        problems.append(f"a write-ahead log was left ({wal.stat().st_size} bytes)")
    section = Section(
        8,
        "Time to stop after SIGTERM",
        method=(prose(__doc__) + f" SIGTERM after {settings.sigterm_after_streams} streams were reported written."),
    )
    section.figures += [
        Figure("time from SIGTERM to exit", f"{stop_seconds:.2f} s (exit code {stopped.returncode})"),
        Figure(
            "tables at a committed state, no staging file or WAL left",
            "all" if not problems else f"{len(problems)} problem(s)",
            "all",
            not problems,
        ),
        Figure(
            "configuration tables committed whose materialization Dagster did not record",
            f"{len(unrecorded)} of {len(complete)} ({len(runless)} recorded as runless ones naming the run)",
            "0",
            not unrecorded,
        ),
    ]
    section.tables.append(
        Table(
            [
                "streams reported on the terminal before SIGTERM",
                "by the exit",
                "configuration tables complete (= a full read)",
                "empty",
                "materializations recorded",
                "tables in the file",
            ],
            [
                [
                    str(len(before)),
                    str(len(written)),
                    str(len(complete)),
                    str(len(empty)),
                    str(len(in_run | runless)),
                    str(len(counts)),
                ]
            ],
        )
    )
    section.notes.append(
        f"The sync ran {stopped.signalled_at - stopped.started:.1f} s before the signal; its last "
        f"line: {stopped.stdout.strip().splitlines()[-1][:200] if stopped.stdout.strip() else '-'}"
    )
    if unrecorded:
        section.notes.append(
            "Committed before the process ended, but not recorded as materialized in Dagster's event log (the worker "
            "threads commit; the run's main thread reports outcomes one by one, writing Dagster's event log, and "
            "stops reporting at the signal): " + ", ".join(unrecorded) + ". Their data is complete; the next sync "
            "reads them again and writes no change rows."
        )
    if empty:
        section.notes.append("Present but empty (created, nothing committed yet): " + ", ".join(empty))
    section.notes += problems
    for path in (db, ref_db):
        path.unlink(missing_ok=True)
    return section
