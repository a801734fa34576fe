"""2. Concurrent syncs sharing one token.

Several `segment-assets sync` processes start together against one simulator with the
documented limits enforced (as in benchmark 1), one token, each writing its own DuckDB file,
all pacing through the default `file` rate-limit store of one shared DAGSTER_HOME (so they
share the token's budget, as concurrent Dagster runs on one machine do). Together they need
several times the rate-limited requests of one sync, so they are stopped with SIGTERM after a
fixed time (counted from the first request) if still running: the measurement is the rate,
not the completion. From the
simulator's log of every request (time, operation, status): per limited operation, the most
requests that started in any 60-second window (sliding, so at least as strict as a server
counting fixed one-minute windows), over the documented limit; the same for the token as a
whole against 1200/min; and the share answered 429. 429s count as requests.
"""

from __future__ import annotations

import time

from bench import limits
from bench.figures import Figure, Section, Table, prose
from bench.settings import Settings, Workdir, start_sync, sync_env


def run(settings: Settings, work: Workdir) -> Section:
    home = work.home("shared-home")
    n = settings.shared_processes
    config = {
        "seed": 7,
        "scale": settings.limits_scale,
        "latency_ms": settings.limits_latency_ms,
        "rate_limits": "realistic",
    }
    with work.simulator(**config) as sim:
        sim.reset()
        dbs = [work.file(f"shared-{i}", ".duckdb") for i in range(n)]
        children = [
            start_sync(work, sync_env(sim, home, db=db, pace=True), label=f"shared-{i}") for i, db in enumerate(dbs)
        ]
        # The clock starts at the first request: several processes starting at once on a busy
        # machine take a while to import, and that is not what is measured.
        wait_until = time.monotonic() + 300
        while not sim.stats()["total"] and time.monotonic() < wait_until:
            time.sleep(0.5)
        deadline = time.monotonic() + settings.shared_seconds
        for child in children:
            child.wait_for(lambda lines: False, max(0.0, deadline - time.monotonic()))
        for child in children:
            child.terminate()
        runs = [child.reap(timeout=120) for child in children]
        events = sim.events()
    for db in dbs:
        db.unlink(missing_ok=True)
    if not events:
        raise RuntimeError("the simulator saw no request")
    span = max(t for t, *_ in events) - min(t for t, *_ in events)
    rows = limits.window_utilisation(events)
    worst = max(r[3] for r in rows)
    overall = next(r for r in rows if r[0].startswith("*"))
    share = sum(1 for *_, s in events if s == 429) / len(events)
    section = Section(
        2,
        "Concurrent syncs sharing a token",
        method=(
            prose(__doc__) + f" Here: {n} processes, demo workspace at scale {settings.limits_scale:g}, "
            f"{settings.limits_latency_ms:g} ms latency, stopped after {settings.shared_seconds:g} s."
        ),
    )
    section.figures += [
        Figure(
            "highest rate of any endpoint over its documented limit (max requests in a 60 s window / limit)",
            f"{100 * worst:.0f} % ({max(rows, key=lambda r: r[3])[0]})",
            "≤ 100 %",
            worst <= 1.0,
        ),
        Figure(
            "token as a whole: max requests in a 60 s window / 1200",
            f"{100 * overall[3]:.0f} % ({overall[1]} requests)",
            "≤ 100 %",
            overall[3] <= 1.0,
        ),
        Figure(
            "requests answered 429",
            f"{100 * share:.2f} % ({sum(1 for *_, s in events if s == 429)} of {len(events):,})",
            "< 1 %",
            share < 0.01,
        ),
    ]
    section.tables.append(
        Table(
            ["operation", "max requests in any 60 s", "limit /min", "of the limit"],
            [[op, str(m), f"{lim:g}", f"{100 * u:.0f} %"] for op, m, lim, u in rows[:12]],
        )
    )
    outcome = ", ".join(
        f"exit {r.returncode} after {r.wall_seconds:.0f} s"
        + (f" (SIGTERM, stopped in {r.ended - r.signalled_at:.1f} s)" if r.signalled_at else "")
        for r in runs
    )
    section.notes.append(
        f"{len(events):,} requests over {span:.0f} s. Processes: {outcome}. Exit 130 is a sync "
        "stopped by the benchmark's SIGTERM; anything else is a failure worth reading in the logs."
    )
    section.notes.append(
        "Operations reaching 100 % are the ones the processes saturate together; an endpoint "
        "below its limit is one the syncs did not need faster (few requests)."
    )
    return section
