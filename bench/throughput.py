"""1. Throughput vs dlt: one large list endpoint, one read, both tools into DuckDB.

The endpoint is listAuditEvents. It is the API's big list (a busy workspace has hundreds of
thousands of events), its records are flat, so dlt's normalizer makes one table as we do
and nothing but speed differs, and the simulator computes events on demand (serving 200,000
sources would make the simulator, not the clients, the bottleneck: ~65 ms per 1000-row page
against ~15 ms for events). In segment_assets audit events are a daily-partitioned asset;
a like-for-like single read is one partition holding all the rows: the simulator serves
enough events over its 90 days that yesterday (the partition `segment-assets sync` reads)
holds ≥ 200,000 of them, so the sync is `run_sync(["audit_events"])`, one run, one
partition, one request chain. dlt reads the same path with the same startTime/endTime and
page size. (A range run over all 89 partitions reads the same way but adds Dagster's
per-partition bookkeeping: see benchmark 4.)
"""

from __future__ import annotations

import math
from datetime import timezone

import duckdb

from bench.figures import Figure, Section, Spread, Table, mib
from bench.settings import Settings, Workdir

DAYS_SERVED = 90  # the simulator spreads events evenly over the last 90 days
PAGE_SIZE = 1000


def _window() -> tuple[str, str, str]:
    """The window `segment-assets sync` reads for a daily stream: its last partition (yesterday)."""
    from segment_assets.assets import partitions_def
    from segment_assets.streams import Window

    pdef = partitions_def(Window.DAILY)
    key = pdef.get_last_partition_key()
    window = pdef.time_window_for_partition_key(key)
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return window.start.astimezone(timezone.utc).strftime(fmt), window.end.astimezone(timezone.utc).strftime(fmt), key


def _count(db: str, table: str) -> int:
    with duckdb.connect(db, read_only=True) as con:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def run(settings: Settings, work: Workdir) -> Section:
    start, end, partition = _window()
    # Enough events that one day of the 90 served holds at least the target rows.
    served = (math.ceil(settings.throughput_rows * DAYS_SERVED / 100_000) + 1) * 100_000
    section = Section(1, "Throughput vs dlt", method=(
        f"`listAuditEvents`, simulator (own process, 0 ms latency) serving {served:,} events over 90 days; "
        f"both tools read the window `{start}` .. `{end}` (daily partition {partition}) with page size {PAGE_SIZE} "
        "into a fresh DuckDB file. Timed: the whole client process, interpreter start to exit. "
        "segment_assets: `bench/sync_job.py --select audit_events`, i.e. `run_sync` (the code of "
        "`segment-assets sync --select audit_events`). dlt: `bench/dlt_job.py`, `rest_api_source` with "
        "`JSONResponseCursorPaginator(cursor_path='data.pagination.next', cursor_param='pagination[cursor]')`, "
        "bearer auth, `write_disposition='replace'`; once with dlt's default loader file format for DuckDB "
        "(`insert_values`) and once with `parquet` (dlt's fastest documented option). Runs alternate between tools."
    ))
    jobs = {"segment_assets": settings.throughput_runs, "dlt (default)": settings.dlt_default_runs,
            "dlt (parquet)": settings.dlt_parquet_runs}
    walls: dict[str, list[float]] = {k: [] for k in jobs}
    inner: dict[str, list[float]] = {k: [] for k in jobs}
    rss: dict[str, list[float]] = {k: [] for k in jobs}
    rows: dict[str, set[int]] = {k: set() for k in jobs}
    phases: list[dict[str, float]] = []
    sa_split: list[dict[str, float]] = []
    with work.simulator(counts={"audit_events": served}) as sim:
        for i in range(max(jobs.values())):
            for tool, n in jobs.items():
                if i >= n:
                    continue
                db = work.file(f"throughput-{tool.split()[0]}", ".duckdb")
                if tool == "segment_assets":
                    job = work.sync(sim, db, "--select", "audit_events")
                    row = job.result["rows"][0]
                    inner[tool].append(row["seconds"])
                    startup, sync = job.result["startup_seconds"], job.result["sync_seconds"]
                    sa_split.append({"start-up (interpreter, imports, asset definitions)": startup,
                                     "inside the asset (fetch, Arrow, Parquet staging, DuckDB write)": row["seconds"],
                                     "Dagster run around the asset (run creation, event log, checks)":
                                         sync - row["seconds"],
                                     "exit": job.wall_seconds - startup - sync})
                    rows[tool].add(_count(str(db), "segment.audit_events"))
                else:
                    fmt = ["--loader-file-format", "parquet"] if "parquet" in tool else []
                    job = work.dlt(sim, db, "--param", f"startTime={start}", "--param", f"endTime={end}",
                                   "--page-size", str(PAGE_SIZE), *fmt)
                    inner[tool].append(job.result["pipeline_seconds"])
                    rows[tool].add(_count(str(db), "segment.audit_events"))
                    if "default" in tool:
                        phases.append(job.result["phases"])
                walls[tool].append(job.wall_seconds)
                rss[tool].append(mib(job.result["peak_rss"]["self"]))
                db.unlink(missing_ok=True)
        served_requests = sim.stats()["by_operation"].get("listAuditEvents", 0)

    loaded = {r for v in rows.values() for r in v}
    if len(loaded) != 1:
        raise RuntimeError(f"the tools loaded different row counts: {rows}")
    n = loaded.pop()
    table = Table(["client", "runs", "whole process s", "rows/s (whole process)", "inside the tool s",
                   "rows/s (inside)", "peak RSS MiB"])
    rate = {}
    for tool in jobs:
        w, s = Spread.of(walls[tool]), Spread.of(inner[tool])
        rate[tool] = Spread.of([n / x for x in walls[tool]])
        table.rows.append([tool, str(len(walls[tool])), w.fmt(".1f"), rate[tool].fmt(",.0f"), s.fmt(".1f"),
                           Spread.of([n / x for x in inner[tool]]).fmt(",.0f"), Spread.of(rss[tool]).fmt(",.0f")])
    section.tables.append(table)
    sa = rate["segment_assets"].median
    ratio_default = sa / rate["dlt (default)"].median
    ratio_parquet = sa / rate["dlt (parquet)"].median
    inner_ratio = (Spread.of(inner["dlt (default)"]).median / Spread.of(inner["segment_assets"]).median)
    section.figures += [
        Figure("rows loaded (both tools, every run)", f"{n:,}", "equal", True),
        Figure("segment_assets rows/s, whole process", rate["segment_assets"].fmt(",.0f")),
        Figure("speed-up vs dlt rest_api (default DuckDB loader), whole process, medians",
               f"{ratio_default:.1f}×", "≥ 5×", ratio_default >= 5),
        Figure("speed-up vs dlt rest_api with parquet loader files, whole process, medians",
               f"{ratio_parquet:.1f}×", "≥ 5×", ratio_parquet >= 5),
        Figure("speed-up vs dlt (default), time inside each tool, medians", f"{inner_ratio:.1f}×"),
    ]
    per_run = len(walls["segment_assets"]) + sum(len(walls[t]) for t in jobs if t != "segment_assets")
    section.notes.append(f"Requests served: {served_requests} over {per_run} runs "
                         f"({served_requests // per_run} per run = ceil({n:,} / {PAGE_SIZE})).")
    if phases:
        p = {k: Spread.of([x[k] for x in phases]).median for k in phases[0]}
        section.notes.append("dlt (default) phases, median s: " + ", ".join(f"{k} {v:.1f}" for k, v in p.items())
                             + ". Its DuckDB load of `insert_values` files is most of its time.")
    split = {k: Spread.of([x[k] for x in sa_split]).median for k in sa_split[0]}
    section.notes.append(
        f"Where segment_assets' {Spread.of(walls['segment_assets']).median:.1f} s go (medians): "
        + "; ".join(f"{k} {v:.1f} s" for k, v in split.items())
        + ". The Dagster part is run creation and its SQLite event log (a connection and commit per event).")
    return section
