"""10. A big space schema: a first full sync under the documented limits, sample values inline.

The simulator (seed 7) with a big space schema, `--count space_events=60 --count event_properties=12
--count traits=150 --count entity_paths=3 --count entity_properties=10`: 2 spaces, 1,440 event
properties, 300 traits and 60 entity properties (1,800 in all), some 50 of which have more than 100
sample values. It enforces the documented limits (`rate_limits="realistic"`, 20 ms latency), and
`segment-assets sync` runs as a child process with pacing on, into a fresh DuckDB file, as in
benchmark 1. The demo workspace (seed 7, scale 1) runs the same way. Bound = the rate-limit bound of
the requests the sync made (benchmark 1's arithmetic).

Before (one request per property or trait on the sample-value endpoints, what main did) is computed,
not run: the same requests with each sample-value operation costing one request per row of its
parent table, and the bound of those; a fan-out reads at most 30 minutes of its endpoint's limit per
run (750 requests at 25/min), so it needs that many runs. Rows are checked against the simulator's
workspace built in this process with the same seed and counts (what each sample-value endpoint
serves for each property), and the requests on the sample-value endpoints against the number of
properties with at least 100 values.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench import limits
from bench.figures import Figure, Section, Table, prose
from bench.settings import Settings, Workdir, sync, sync_env

TARGET_RATIO = 1.3
BIG_SPACE_SCHEMA = {
    "space_events": 60,
    "event_properties": 12,
    "traits": 150,
    "entity_paths": 3,
    "entity_properties": 10,
}
# sample-value stream -> (its parent table, the simulator kind of its items, the key columns naming an item)
SAMPLE_STREAMS = {
    "space_event_property_sample_values": (
        "space_event_properties",
        "event_properties",
        ("space_id", "event_name", "property_name"),
    ),
    "space_entity_property_sample_values": (
        "space_entity_properties",
        "entity_properties",
        ("space_id", "entity_slug", "property_name"),
    ),
    "space_trait_sample_values": ("space_traits", "traits", ("space_id", "trait_key")),
}


def _truth(counts: dict[str, int] | None) -> dict[str, dict[tuple[str, ...], list[str]]]:
    """Per sample-value stream: every item -> what its sample-value endpoint serves."""
    from segment_assets.simulator import Workspace

    ws = Workspace(seed=7, scale=1.0, counts=counts)
    return {
        name: {(*r.pkey, r.ident): ws.sample_values(*r.pkey, r.ident) for r in ws.rows(kind)}
        for name, (_, kind, _) in SAMPLE_STREAMS.items()
    }


def _stored(db: Path) -> dict[str, set[tuple[str, ...]]]:
    from segment_assets.storage import DuckDBTarget

    target = DuckDBTarget(db)
    try:
        return {
            name: {tuple(str(v) for v in row) for row in target.query(f"SELECT {', '.join(cols)}, value FROM {name}")}
            for name, (_, _, cols) in SAMPLE_STREAMS.items()
        }
    finally:
        target.close()


def _one(work: Workdir, settings: Settings, label: str, counts: dict[str, int] | None) -> dict[str, Any]:
    from segment_assets.api.streams import SAMPLES_INLINE, STREAMS

    home = work.home(f"{label}-home")
    db = work.file(label, ".duckdb")
    config: dict[str, Any] = {"seed": 7, "scale": 1.0, "latency_ms": settings.limits_latency_ms}
    config["rate_limits"] = "realistic"
    if counts:
        config["counts"] = counts
    with work.simulator(**config) as sim:
        env = sync_env(sim, home, db=db, pace=True)
        sim.reset()
        run = sync(work, env, label=label)
        events = sim.events()
    truth = _truth(counts)
    stored = _stored(db)
    db.unlink(missing_ok=True)
    after = limits.needed(events)
    before = dict(after)
    samples: dict[str, dict[str, int | bool]] = {}
    for name, values in truth.items():
        op = STREAMS[name].operation_id
        full = sum(1 for v in values.values() if len(v) >= SAMPLES_INLINE)
        expected = {(*key, value) for key, vs in values.items() for value in vs}
        samples[name] = {
            "items": len(values),
            "full": full,
            "made": after.get(op, 0),
            "same_rows": stored[name] == expected,
            "rows": len(expected),
        }
        before[op] = len(values)  # main: one request per property or trait
    bound_after, bound_before = limits.rate_bound(after), limits.rate_bound(before)
    budget = 25 * 30  # cycles.budget_requests at 25/min, 30 minutes
    runs_before = max(math.ceil(int(s["items"]) / budget) for s in samples.values())
    return {
        "label": label,
        "wall": run.wall_seconds,
        "after": sum(after.values()),
        "before": sum(before.values()),
        "bound_after": bound_after,
        "bound_before": bound_before,
        "runs_before": runs_before,
        "samples": samples,
        "429": sum(1 for *_, s in events if s == 429),
    }


def run(settings: Settings, work: Workdir) -> Section:
    results = [
        _one(work, settings, "space-schema-big", BIG_SPACE_SCHEMA),
        _one(work, settings, "space-schema-demo", None),
    ]
    section = Section(10, "A big space schema: sample values inline", method=prose(__doc__))
    table = Table(
        [
            "workspace",
            "requests before → after",
            "bound before → after",
            "wall after",
            "wall / bound after",
            "runs before",
        ]
    )
    for r in results:
        ratio = r["wall"] / r["bound_after"].seconds if r["bound_after"].seconds else float("inf")
        r["ratio"] = ratio
        table.rows.append(
            [
                r["label"],
                f"{r['before']:,} → {r['after']:,}",
                f"{r['bound_before'].seconds / 60:.0f} → {r['bound_after'].seconds / 60:.0f} min",
                f"{r['wall']:.0f} s",
                f"{ratio:.2f}×" if r["bound_after"].seconds else "no bound (no limited chain)",
                str(r["runs_before"]),
            ]
        )
    section.tables.append(table)
    per_stream = Table(
        ["workspace", "stream", "properties", "with ≥ 100 values", "requests made", "rows", "rows right"]
    )
    for r in results:
        for name, s in r["samples"].items():
            per_stream.rows.append(
                [
                    r["label"],
                    name,
                    f"{s['items']:,}",
                    str(s["full"]),
                    str(s["made"]),
                    f"{s['rows']:,}",
                    "yes" if s["same_rows"] else "NO",
                ]
            )
    section.tables.append(per_stream)
    for r in results:
        chain = " → ".join(f"{row[0]} ({row[2]} @ {row[3]:g}/min)" for row in r["bound_after"].chain if row[3])
        section.notes.append(f"{r['label']}: bound after made of {chain or 'no limited chain'}.")
        chain = " → ".join(f"{row[0]} ({row[2]} @ {row[3]:g}/min)" for row in r["bound_before"].chain if row[3])
        section.notes.append(f"{r['label']}: bound before made of {chain}.")
    big, demo = results
    section.figures += [
        Figure(
            "big space schema: requests of a first full sync, before → after",
            f"{big['before']:,} → {big['after']:,}",
        ),
        Figure(
            "big space schema: rate-limit bound, before → after",
            f"{big['bound_before'].seconds / 60:.0f} min ({big['runs_before']} runs) → "
            f"{big['bound_after'].seconds / 60:.0f} min (1 run)",
        ),
        Figure(
            "big space schema: wall / bound of the requests made",
            f"{big['ratio']:.2f}× ({big['wall']:.0f} s)",
            f"≤ {TARGET_RATIO}×",
            big["ratio"] <= TARGET_RATIO,
        ),
        Figure(
            "sample-value requests only for full lists, rows as read one by one",
            "yes"
            if all(s["made"] == s["full"] and s["same_rows"] for r in results for s in r["samples"].values())
            else "no (see the table)",
            "yes",
            all(s["made"] == s["full"] and s["same_rows"] for r in results for s in r["samples"].values()),
        ),
        Figure(
            "demo: requests and bound, before → after",
            f"{demo['before']:,} → {demo['after']:,} requests; {demo['bound_before'].seconds / 60:.0f} → "
            f"{demo['bound_after'].seconds / 60:.0f} min; wall {demo['wall']:.0f} s",
        ),
    ]
    return section
