"""4. Memory: peak RSS of a sync process as the audit trail grows.

Each run is one process materializing every daily partition of `audit_events` in one run
(a range backfill, `bench/sync_job.py --all-partitions audit_events`) from a simulator
serving N events over 90 days; the process reports its own peak RSS
(`getrusage(RUSAGE_SELF).ru_maxrss`). A thread in the job samples RSS every 10 ms and files
each sample under what the main thread is doing (fetching and staging pages to Parquet, or
the DuckDB load in storage.py), and the RSS of a process that has imported everything and
built the assets but read nothing is measured separately: the base every run starts from.
"""

from __future__ import annotations

import subprocess
import sys

from bench.figures import Figure, Section, Spread, Table, mib
from bench.processes import REPO
from bench.settings import Settings, Workdir

TARGET_MIB = 300
BASELINE = ("import resource, duckdb; from segment_assets.assets import build_assets; "
            "from segment_assets.cli import run_sync; from dagster import materialize, DagsterInstance; "
            "build_assets(); DagsterInstance.get(); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)")


def _baseline(work: Workdir) -> float:
    out = subprocess.run([sys.executable, "-c", BASELINE], env=work.env(), cwd=REPO, capture_output=True, text=True,
                         check=True)
    return mib(int(out.stdout.strip().splitlines()[-1]))


def run(settings: Settings, work: Workdir) -> Section:
    section = Section(4, "Memory", method=__doc__.split("\n\n", 1)[1].replace("\n", " "))
    table = Table(["events served", "rows loaded", "runs", "peak RSS MiB", "above the base MiB",
                   "peak while fetching + staging MiB", "peak while in DuckDB MiB", "seconds"])
    peaks: dict[int, Spread] = {}
    base = _baseline(work)
    for count in settings.memory_counts:
        rss, secs, rows, fetch, duck = [], [], 0, [], []
        with work.simulator(counts={"audit_events": count}) as sim:
            for _ in range(settings.runs_for_memory(count)):
                db = work.file(f"memory-{count}", ".duckdb")
                job = work.sync(sim, db, "--all-partitions", "audit_events", "--rss-phases")
                rss.append(mib(job.result["peak_rss"]["self"]))
                fetch.append(mib(job.result["rss_phases"].get("fetch", 0)))
                duck.append(mib(job.result["rss_phases"].get("duckdb", 0)))
                secs.append(job.wall_seconds)
                rows = job.result["rows"][0]["rows"]
                db.unlink(missing_ok=True)
        peaks[count] = Spread.of(rss)
        table.rows.append([f"{count:,}", f"{rows:,}", str(len(rss)), peaks[count].fmt(",.0f"),
                           Spread.of([r - base for r in rss]).fmt(",.0f"), Spread.of(fetch).fmt(",.0f"),
                           Spread.of(duck).fmt(",.0f"), Spread.of(secs).fmt(".1f")])
    section.tables.append(table)
    small, large = min(peaks), max(peaks)
    for count, spread in peaks.items():
        section.figures.append(Figure(f"peak RSS, {count:,} audit events", spread.fmt(",.0f", " MiB"),
                                      f"≤ {TARGET_MIB} MiB", spread.max <= TARGET_MIB))
    if small != large:
        growth = peaks[large].median - peaks[small].median
        section.figures.append(Figure(
            f"growth {small:,} → {large:,} events ({large / small:g}× the rows)", f"{growth:+,.0f} MiB",
            "flat (≈ 0)", growth <= 0.1 * peaks[small].median))
    section.notes.append(f"Base RSS (Python, Dagster, segment_assets' asset definitions, a Dagster instance, "
                         f"no data): {base:,.0f} MiB.")
    return section
