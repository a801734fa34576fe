"""9. Lake vs DuckDB: the same full sync into a DuckDB file and into a Delta lake on a local folder.

`segment-assets sync` of every stream (pacing off, unlimited simulator, demo workspace), runs
alternating between `SEGMENT_DUCKDB_PATH=<fresh file>` and `SEGMENT_TARGET=lake
SEGMENT_LAKE_URL=file:///<fresh folder>`; whole process timed, peak RSS of the process
(`wait4`), rows per table from each stream's materialization metadata (`dagster/row_count`),
which must agree between the two targets.
"""

from __future__ import annotations

import shutil

from bench import instance
from bench.figures import Figure, Section, Spread, Table, mib, prose
from bench.settings import Settings, Workdir, sync, sync_env

TARGETS = ("duckdb", "lake")


def unavailable() -> str | None:
    """Why the lake target cannot run here, or None when it can."""
    try:
        import segment_assets.storage.lake_target  # noqa: F401
    except ImportError as exc:
        return f"`segment_assets.storage.lake_target` does not import ({exc})"
    return None


def run(settings: Settings, work: Workdir) -> Section:
    section = Section(
        9,
        "Lake vs DuckDB",
        method=prose(__doc__) + f" Scale {settings.limits_scale:g}, {settings.lake_runs} run(s) per target.",
    )
    why = unavailable()
    if why:
        section.figures.append(Figure("lake target", "not available", note=why))
        return section
    home = work.home("lake-home")
    walls: dict[str, list[float]] = {t: [] for t in TARGETS}
    rss: dict[str, list[float]] = {t: [] for t in TARGETS}
    rows: dict[str, dict[str, int]] = {}
    with work.simulator(seed=7, scale=settings.limits_scale) as sim:
        for _ in range(settings.lake_runs):
            for target in TARGETS:
                path = work.file(f"lake-{target}", ".duckdb" if target == "duckdb" else "")
                env = sync_env(sim, home, pace=False, **({"db": path} if target == "duckdb" else {"lake": path}))
                before = instance.run_ids(home)
                r = sync(work, env, label=f"lake-{target}")
                walls[target].append(r.wall_seconds)
                rss[target].append(mib(r.peak_rss))
                md = instance.streams(instance.runs(home, exclude=before))
                rows[target] = {n: int(m.get("dagster/row_count", 0) or 0) for n, m in md.items()}
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
    w = {t: Spread.of(walls[t]) for t in TARGETS}
    m = {t: Spread.of(rss[t]) for t in TARGETS}
    section.tables.append(
        Table(
            ["target", "runs", "whole process s", "peak RSS MiB", "rows"],
            [[t, str(len(walls[t])), w[t].fmt(".1f"), m[t].fmt(",.0f"), f"{sum(rows[t].values()):,}"] for t in TARGETS],
        )
    )
    differ = sorted(n for n in set(rows["duckdb"]) | set(rows["lake"]) if rows["duckdb"].get(n) != rows["lake"].get(n))
    section.figures += [
        Figure(
            "lake / DuckDB wall time, medians",
            f"{w['lake'].median / w['duckdb'].median:.2f}× ({w['lake'].median:.1f} s vs {w['duckdb'].median:.1f} s)",
        ),
        Figure(
            "lake / DuckDB peak RSS, medians",
            f"{m['lake'].median / m['duckdb'].median:.2f}× ({m['lake'].median:,.0f} vs {m['duckdb'].median:,.0f} MiB)",
        ),
        Figure(
            "rows per table equal in both targets",
            "yes" if not differ else f"no: {', '.join(differ[:8])}",
            "equal",
            not differ,
        ),
    ]
    if differ:
        section.notes.append(
            "Rows that differ (DuckDB / lake): "
            + "; ".join(f"{n} {rows['duckdb'].get(n)} / {rows['lake'].get(n)}" for n in differ)
        )
    return section
