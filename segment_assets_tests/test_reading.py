"""Records a parent's list already carries (`StreamSpec.inline`): the space-schema sample values come
with the property lists, and only a property whose inline list is full (100 values, maybe cut) is
read from its sample-value endpoint. Expected rows come from the simulator's workspace (what each
sample-value endpoint serves), requests from the simulator's own counters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from segment_assets.api.streams import SAMPLES_INLINE, STREAMS
from segment_assets.api.tables import table_def
from segment_assets.engine import reading
from segment_assets.engine.runner import StreamRun, sync_stream
from segment_assets.simulator import Simulator
from segment_assets.storage import DuckDBTarget, Target
from segment_assets.storage.lake_target import LakeTarget
from segment_assets_tests.conftest import segment_for

# sample-value stream -> (its parents, root first; the simulator kind of its items; its sample endpoint)
CHAINS = {
    "space_event_property_sample_values": (
        ["spaces", "space_events", "space_event_properties"],
        "event_properties",
        "listSampleValuesFromEventProperty",
    ),
    "space_entity_property_sample_values": (
        ["spaces", "space_entity_paths", "space_entity_properties"],
        "entity_properties",
        "listSampleValuesFromEntityProperty",
    ),
    "space_trait_sample_values": (["spaces", "space_traits"], "traits", "listSampleValuesFromTrait"),
}
EVENTS = "space_event_property_sample_values"
TRAITS = "space_trait_sample_values"


class Engine:
    """Streams synced one at a time through the engine (no Dagster) into `target`."""

    def __init__(self, sim: Simulator, target: Target) -> None:
        self.sim, self.target = sim, target
        self.client = segment_for(sim).make_client()
        self.runs = 0

    def sync(self, *names: str, budget: int | None = None) -> dict[str, dict[str, Any]]:
        """`budget`: the sample-value streams' requests per run (a resumable cycle when it is short)."""
        self.runs += 1
        run = StreamRun(
            client=self.client,
            target=self.target,
            run_id=f"r{self.runs}",
            method_for=lambda s: s.update_method,
            budget_for=lambda s: budget if s.name in CHAINS else None,
        )
        out = {}
        try:
            for name in names:
                outcome = sync_stream(STREAMS[name], run)
                assert outcome.status == "ok", outcome.error
                out[name] = outcome.metadata
        finally:
            run.close()
        return out

    def requests(self, name: str, *names: str, budget: int | None = None) -> int:
        """Requests the simulator answered on `name`'s sample endpoint while `names` were synced."""
        op = CHAINS[name][2]
        before = self.sim.stats.by_operation[op]
        self.sync(*names, budget=budget)
        return self.sim.stats.by_operation[op] - before


def served(sim: Simulator, name: str) -> dict[tuple[str, ...], list[str]]:
    """Every item of the stream's kind -> what its sample-value endpoint serves (the ground truth)."""
    ws = sim.workspace
    kind = CHAINS[name][1]
    return {(*r.pkey, r.ident): ws.sample_values(*r.pkey, r.ident) for r in ws.rows(kind)}


def expected_rows(sim: Simulator, name: str) -> set[tuple[str, ...]]:
    return {(*key, value) for key, values in served(sim, name).items() for value in values}


def stored_rows(target: Target, name: str) -> set[tuple[str, ...]]:
    if name == EVENTS:  # the property's type is part of the key, not of the simulator's path
        sql = f"SELECT space_id, event_name, property_name, value FROM {name}"
    elif name == TRAITS:
        sql = f"SELECT space_id, trait_key, value FROM {name}"
    else:
        sql = f"SELECT space_id, entity_slug, property_name, value FROM {name}"
    return {tuple(str(v) for v in row) for row in target.query(sql)}


@pytest.fixture
def engine(sim: Simulator, target: DuckDBTarget) -> Iterator[Engine]:
    e = Engine(sim, target)
    yield e
    e.client.close()


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_inline_samples_fill_the_table_and_only_full_lists_are_requested(engine: Engine, name: str) -> None:
    parents, _, _ = CHAINS[name]
    engine.sync(*parents)
    truth = served(engine.sim, name)
    full = [key for key, values in truth.items() if len(values) >= SAMPLES_INLINE]
    requests = engine.requests(name, name)
    assert requests == len(full), "one request per property whose inline list is full, none for the others"
    assert stored_rows(engine.target, name) == expected_rows(engine.sim, name)


def test_the_demo_exercises_both_paths(engine: Engine) -> None:
    """Some event properties have more values than a list inlines (their rows come from the
    dedicated endpoint: more than 100 of them), most have fewer (no request)."""
    engine.sync(*CHAINS[EVENTS][0])
    md = engine.sync(EVENTS)[EVENTS]
    truth = served(engine.sim, EVENTS)
    many = [key for key, values in truth.items() if len(values) > SAMPLES_INLINE]
    assert many and md["segment/inline_parents"] == len(truth) - len(many) > 0
    assert md["segment/api_requests"] == md["segment/parameter_sets"] == len(many)
    rows = engine.target.query(
        f"SELECT count(*) FROM {EVENTS} WHERE space_id = ? AND event_name = ? AND property_name = ?", list(many[0])
    )
    assert rows == [(len(truth[many[0]]),)]


@pytest.mark.parametrize("per_read", [1, 7])
def test_complete_lists_are_read_from_the_parent_in_pieces_with_the_same_rows(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, per_read: int
) -> None:
    """The complete lists are read a few parents at a time, in key order (a key of four columns
    here), while the table is written: every row is there once, and the count says them all."""
    monkeypatch.setattr(reading, "INLINE_PARENTS_PER_READ", per_read)
    engine.sync(*CHAINS[EVENTS][0])
    truth = served(engine.sim, EVENTS)
    md = engine.sync(EVENTS)[EVENTS]
    assert md["segment/inline_parents"] == sum(len(values) < SAMPLES_INLINE for values in truth.values())
    assert md["segment/inline_parents"] > 2 * per_read
    assert stored_rows(engine.target, EVENTS) == expected_rows(engine.sim, EVENTS)
    (dupes,) = engine.target.query(
        f"SELECT count(*) - count(DISTINCT (space_id, event_name, property_name, property_type, value)) FROM {EVENTS}"
    )
    assert dupes == (0,)


def test_a_list_of_exactly_100_is_requested_one_of_99_or_none_is_not(engine: Engine) -> None:
    engine.sync(*CHAINS[TRAITS][0])
    ws = engine.sim.workspace
    short = sorted(key for key, values in served(engine.sim, TRAITS).items() if len(values) < SAMPLES_INLINE)
    (s1, t1), (s2, t2), (s3, t3), (s4, t4) = short[:4]
    baseline = engine.requests(TRAITS, TRAITS)
    ws.set_sample_values(s1, t1, values=[f"v{i}" for i in range(99)])
    ws.set_sample_values(s2, t2, values=[f"v{i}" for i in range(100)])
    ws.set_sample_values(s3, t3, values=[f"w{i}" for i in range(250)])  # the list shows 100 of them
    ws.set_sample_values(s4, t4, values=[])  # an empty list is complete too: no request, no row
    assert engine.requests(TRAITS, "space_traits", TRAITS) == baseline + 2
    counts = dict(
        ((s, t), n)
        for s, t, n in engine.target.query(f"SELECT space_id, trait_key, count(*) FROM {TRAITS} GROUP BY ALL")
    )
    assert (counts[(s1, t1)], counts[(s2, t2)], counts[(s3, t3)]) == (99, 100, 250)
    assert (s4, t4) not in counts
    assert stored_rows(engine.target, TRAITS) == expected_rows(engine.sim, TRAITS)


def test_change_rows_follow_the_samples(engine: Engine) -> None:
    """A short list and a cut list change between syncs: the change table holds one D per value
    gone and one I per value new, as when every property was read one by one."""
    engine.sync(*CHAINS[EVENTS][0], EVENTS)
    ws = engine.sim.workspace
    truth = served(engine.sim, EVENTS)
    short = next(key for key, values in sorted(truth.items()) if 2 <= len(values) < SAMPLES_INLINE)
    cut = next(key for key, values in sorted(truth.items()) if len(values) > SAMPLES_INLINE)
    ws.set_sample_values(*short, values=[*truth[short][1:], "brand-new"])
    # beyond the first 100: the inline list (and so the property's row) is unchanged
    ws.set_sample_values(*cut, values=[*truth[cut][:-1], "late-new"])
    engine.sync("space_event_properties", EVENTS)
    run = f"r{engine.runs}"
    changes = engine.target.query(
        f"SELECT header__change_oper, space_id, event_name, property_name, value FROM {EVENTS}__ct "
        "WHERE header__run_id = ? ORDER BY ALL",
        [run],
    )
    assert sorted(changes) == sorted(
        [
            ("D", *short, truth[short][0]),
            ("I", *short, "brand-new"),
            ("D", *cut, truth[cut][-1]),
            ("I", *cut, "late-new"),
        ]
    )
    assert stored_rows(engine.target, EVENTS) == expected_rows(engine.sim, EVENTS)
    updated = engine.target.query(
        "SELECT space_id, event_name, name FROM space_event_properties__ct WHERE header__run_id = ?", [run]
    )
    assert updated == [short], "only the property whose inline list changed is updated"


def test_a_parent_stored_without_samples_is_read_from_the_endpoint(engine: Engine) -> None:
    """A property table loaded by an older version holds no samples: every trait is requested."""
    engine.sync(*CHAINS[TRAITS][0])
    engine.target.query("UPDATE space_traits SET samples = NULL")
    assert engine.requests(TRAITS, TRAITS) == len(served(engine.sim, TRAITS))
    assert stored_rows(engine.target, TRAITS) == expected_rows(engine.sim, TRAITS)


@pytest.mark.parametrize("kind", ["duckdb", "lake"])
def test_a_cycle_over_runs_counts_and_requests_only_the_cut_lists(sim: Simulator, tmp_path: Path, kind: str) -> None:
    """A budget of one request per run: the cycle spans as many runs as there are full lists (not
    properties), each run requests at most one, and the table ends as reading every one would."""
    target: Target = (
        DuckDBTarget(tmp_path / "x.duckdb")
        if kind == "duckdb"
        else LakeTarget((tmp_path / "lake").as_uri(), stage_dir=tmp_path / "stage")
    )
    engine = Engine(sim, target)
    try:
        engine.sync(*CHAINS[EVENTS][0])
        full = [key for key, values in served(sim, EVENTS).items() if len(values) >= SAMPLES_INLINE]
        assert len(full) >= 2, "the demo has several cut lists, so the cycle spans runs"
        per_run, left = [], []
        for _ in range(len(full) + 1):
            before = sim.stats.by_operation[CHAINS[EVENTS][2]]
            md = engine.sync(EVENTS, budget=1)[EVENTS]
            per_run.append(sim.stats.by_operation[CHAINS[EVENTS][2]] - before)
            left.append(md.get("segment/cycle_runs_left", 0))
            if not left[-1]:
                break
        assert per_run == [1] * len(full), (per_run, left, md)
        assert stored_rows(target, EVENTS) == expected_rows(sim, EVENTS)
    finally:
        engine.client.close()
        target.close()


def test_the_lake_reads_inline_samples_too(sim: Simulator, tmp_path: Path) -> None:
    target = LakeTarget((tmp_path / "lake").as_uri(), stage_dir=tmp_path / "stage")
    engine = Engine(sim, target)
    try:
        engine.sync(*CHAINS[TRAITS][0])
        full = [v for v in served(sim, TRAITS).values() if len(v) >= SAMPLES_INLINE]
        assert engine.requests(TRAITS, TRAITS) == len(full)
        assert stored_rows(target, TRAITS) == expected_rows(sim, TRAITS)
    finally:
        engine.client.close()
        target.close()


def test_inline_declarations_match_what_their_parents_ask_for() -> None:
    """The parent list must ask for as many values as the child treats as a full list, and keep them."""
    inline = [s for s in STREAMS.values() if s.inline]
    assert {s.name for s in inline} == set(CHAINS)
    for stream in inline:
        assert stream.parent and stream.inline
        parent = STREAMS[stream.parent.stream]
        assert parent.query == {"includeSampleValues": "true", "samplesCount": stream.inline.limit}
        assert stream.inline.column in table_def(parent.name).column_names
