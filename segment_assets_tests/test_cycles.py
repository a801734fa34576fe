"""Big fan-outs read over several runs: a budgeted stream completes a cycle with the rows of one
unbudgeted run, and decides its deletes only when the cycle completes."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from dagster import DagsterInstance, materialize

from segment_assets.api.streams import STREAMS
from segment_assets.engine.cycles import budget_requests
from segment_assets.engine.runner import StreamRun, sync_stream
from segment_assets.orchestration.assets import asset_key, build_assets
from segment_assets.orchestration.resources import DuckDBStorage
from segment_assets.simulator import Simulator
from segment_assets.storage import DuckDBTarget, Target
from segment_assets.storage.lake_target import LakeTarget
from segment_assets_tests.conftest import materializations, segment_for

# One request per event, at 25/min (the sample values, once the costliest, now come mostly inline).
PARENTS = ["spaces", "space_events"]
STREAM = "space_event_properties"
BUDGET = 4


def sync(sim: Simulator, path: Path, names: list[str], **overrides: Any) -> Any:
    result = materialize(
        build_assets(),
        instance=DagsterInstance.ephemeral(),
        resources={"segment": segment_for(sim, **overrides), "storage": DuckDBStorage(path=str(path))},
        selection=[asset_key(n) for n in names],
        raise_on_error=False,
    )
    return result


def rows(path: Path, sql: str) -> list[tuple]:
    return sorted(DuckDBTarget(path).query(sql), key=repr)


def cycle_to_the_end(sim: Simulator, path: Path) -> list[dict[str, Any]]:
    """Budgeted runs until the cycle completes; each run's metadata."""
    runs = []
    while True:
        result = sync(sim, path, [STREAM], fanout_budgets={STREAM: BUDGET})
        assert result.success
        md = {k: v.value for k, v in materializations(result, STREAM)[0].metadata.items()}
        runs.append(md)
        if md["segment/cycle_runs_left"] == 0:
            return runs
        assert len(runs) < 50, "the cycle never completes"


def test_budgeted_fanout_completes_over_runs_with_the_rows_of_one_run(sim: Simulator, tmp_path: Path) -> None:
    one, many = tmp_path / "one.duckdb", tmp_path / "many.duckdb"
    assert sync(sim, one, [*PARENTS, STREAM]).success
    assert sync(sim, many, PARENTS).success
    events = len(rows(one, "SELECT DISTINCT space_id, name FROM space_events"))
    assert events > BUDGET

    runs = cycle_to_the_end(sim, many)
    assert len(runs) == math.ceil(events / BUDGET)
    assert [r["segment/api_requests"] for r in runs] == [min(BUDGET, events - i * BUDGET) for i in range(len(runs))]
    assert [r["segment/cycle_parents_done"] for r in runs] == [min((i + 1) * BUDGET, events) for i in range(len(runs))]
    assert runs[0]["segment/cycle_complete_for"] == "none yet" and runs[-1]["segment/cycle_complete_for"] != "none yet"
    assert runs[0]["segment/cycle_runs_left"] == len(runs) - 1
    table = "SELECT space_id, event_name, name, samples FROM space_event_properties"
    assert rows(many, table) == rows(one, table)
    assert rows(many, "SELECT DISTINCT header__change_oper FROM space_event_properties__ct") == [("I",)]
    assert not DuckDBTarget(many).table_exists(f"{STREAM}__cycle_parents"), "side tables go with the cycle"


def test_deletes_wait_for_the_end_of_the_cycle(sim: Simulator, tmp_path: Path) -> None:
    db = tmp_path / "many.duckdb"
    assert sync(sim, db, PARENTS).success
    cycle_to_the_end(sim, db)
    event = sorted(r.ident for r in sim.workspace.rows("space_events"))[0]
    row = sim.workspace.get_row("space_events", event)  # the one delete() removes: names repeat across spaces
    assert row is not None
    space = row.pkey[0]
    where = f"space_id = '{space}' AND event_name = '{event}'"
    gone = rows(db, f"SELECT name FROM space_event_properties WHERE {where}")
    assert gone
    sim.workspace.delete("space_events", event)
    assert sync(sim, db, ["space_events"]).success  # the parent table no longer lists it

    runs = cycle_to_the_end(sim, db)
    assert len(runs) >= 2
    deleted = rows(db, f"SELECT name FROM space_event_properties__ct WHERE header__change_oper = 'D' AND {where}")
    assert deleted == gone, "the vanished event's rows are deleted, with D change rows"
    assert [r["segment/deleted"] for r in runs[:-1]] == [0] * (len(runs) - 1), "nothing deleted before the end"
    assert runs[-1]["segment/deleted"] == len(gone)
    assert not rows(db, f"SELECT name FROM space_event_properties WHERE {where}")


def test_a_failed_run_of_a_cycle_is_continued_by_the_next(sim: Simulator, tmp_path: Path) -> None:
    db, one = tmp_path / "many.duckdb", tmp_path / "one.duckdb"
    assert sync(sim, one, [*PARENTS, STREAM]).success
    assert sync(sim, db, PARENTS).success
    first = sync(sim, db, [STREAM], fanout_budgets={STREAM: BUDGET})
    assert first.success
    sim.inject("500", "listPropertiesFromEvent", times=100)  # the next run dies mid-chunk
    assert not sync(sim, db, [STREAM], fanout_budgets={STREAM: BUDGET}, max_retries=1).success
    sim.faults.clear()
    runs = cycle_to_the_end(sim, db)
    done_before = BUDGET
    assert runs[0]["segment/cycle_parents_done"] == done_before + BUDGET, "it resumes where the last commit left it"
    table = "SELECT space_id, event_name, name, samples FROM space_event_properties"
    assert rows(db, table) == rows(one, table)


CONSUMERS = STREAMS["audience_consumers"]


class Engine:
    """Streams synced one by one through the engine (no Dagster) into `target`."""

    def __init__(self, sim: Simulator, target: Target) -> None:
        self.target = target
        self.client = segment_for(sim).make_client()

    def sync(self, name: str, run_id: str, budget: int | None = None) -> dict[str, Any]:
        run = StreamRun(
            client=self.client,
            target=self.target,
            run_id=run_id,
            method_for=lambda s: s.update_method,
            budget_for=lambda s: budget if s is CONSUMERS else None,
        )
        outcome = sync_stream(STREAMS[name], run)
        assert outcome.status == "ok", outcome.error
        return outcome.metadata


@pytest.fixture(params=["duckdb", "lake"])
def consumers_gone(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Engine, set[tuple[str, ...]]]]:
    """5 audiences whose consumers were synced once, then all removed from the workspace:
    the engine, and the (space_id, audience_id, id) of the removed consumers."""
    with Simulator(seed=7, counts={"spaces": 1, "audiences": 5}) as sim:
        target: Target = (
            DuckDBTarget(tmp_path / "segment_assets.duckdb")
            if request.param == "duckdb"
            else LakeTarget((tmp_path / "lake").as_uri(), stage_dir=tmp_path / "stage")
        )
        engine = Engine(sim, target)
        try:
            for name in ("spaces", "audiences", "audience_consumers"):
                engine.sync(name, "r0")
            listed = {(r.pkey[0], r.pkey[1], r.ident) for r in sim.workspace.rows("audience_consumers")}
            assert len(listed) == 5 and target.query("SELECT count(*) FROM audience_consumers") == [(5,)]
            for _space, _audience, consumer in listed:
                sim.workspace.delete("audience_consumers", consumer)
            yield engine, listed
        finally:
            engine.client.close()
            target.close()


def deleted_in(target: Target, run_id: str) -> list[tuple]:
    return target.query(
        "SELECT space_id, audience_id, id FROM audience_consumers__ct "
        f"WHERE header__change_oper = 'D' AND header__run_id = '{run_id}'"
    )


def test_a_cycle_that_reads_no_rows_deletes_every_row_and_the_next_cycle_starts(
    consumers_gone: tuple[Engine, set[tuple[str, ...]]],
) -> None:
    engine, listed = consumers_gone
    # 5 audiences, 2 per run, and none lists a consumer any more: no run of the cycle reads a row.
    runs = [engine.sync("audience_consumers", f"r{i}", budget=2) for i in (1, 2, 3)]
    assert [r["segment/cycle_runs_left"] for r in runs] == [2, 1, 0]
    assert [r["segment/deleted"] for r in runs] == [0, 0, 5], "deletes wait for the end of the cycle"
    assert engine.target.query("SELECT count(*) FROM audience_consumers") == [(0,)]
    deleted = deleted_in(engine.target, "r3")
    assert set(deleted) == listed and len(deleted) == 5

    again = engine.sync("audience_consumers", "r4", budget=2)
    assert (again["segment/cycle_parents_done"], again["segment/cycle_runs_left"]) == (2, 2)
    assert again["segment/cycle_complete_for"] == runs[-1]["segment/cycle_complete_for"] != "none yet"


def test_the_next_parents_of_a_cycle_are_counted_and_chosen_in_the_target(
    consumers_gone: tuple[Engine, set[tuple[str, ...]]],
) -> None:
    # What lets a cycle run over 740,000 parents without listing them in Python: the target
    # counts them, leaves out those done and hands over only the next few, in key order.
    engine, _ = consumers_gone
    target, columns, params = engine.target, ["space_id", "id"], ["spaceId", "id"]
    every = target.parent_keys("audiences", columns)
    assert len(every) == 5
    assert target.parents_left("audiences", columns, None, "none__cycle_parents", params, 2) == (5, 5, every[:2])
    done = pa.table({"spaceId": [str(every[1][0]), str(every[3][0])], "id": [str(every[1][1]), str(every[3][1])]})
    target.append_rows("some__cycle_parents", done)
    assert target.parents_left("audiences", columns, None, "some__cycle_parents", params, 2) == (
        5,
        3,
        [every[0], every[2]],
    )
    assert target.parents_left("audiences", columns, None, "some__cycle_parents", params, 9)[2] == [
        every[0],
        every[2],
        every[4],
    ]


def test_a_cycle_left_without_its_key_table_completes_on_the_next_run(
    consumers_gone: tuple[Engine, set[tuple[str, ...]]],
) -> None:
    """The state older versions left: every parent done, the key table never written, the end
    of the cycle failing. The next run reads nothing more and completes the cycle."""
    engine, listed = consumers_gone
    engine.sync("audience_consumers", "r1", budget=2)
    engine.sync("audience_consumers", "r2", budget=2)
    parents = engine.target.parent_keys("audiences", ["space_id", "id"])
    engine.target.append_rows(
        "audience_consumers__cycle_parents",
        pa.table({"spaceId": [str(parents[-1][0])], "id": [str(parents[-1][1])]}),
    )
    assert engine.target.drop_table("audience_consumers__cycle_keys")

    healed = engine.sync("audience_consumers", "r3", budget=2)
    assert (healed["segment/api_requests"], healed["segment/cycle_runs_left"]) == (0, 0)
    assert healed["segment/deleted"] == 5 and set(deleted_in(engine.target, "r3")) == listed


def test_budget_is_minutes_of_the_endpoint_limit() -> None:
    samples = STREAMS[STREAM]
    assert budget_requests(samples, 30) == 25 * 30
    assert budget_requests(samples, 30, {STREAM: 7}) == 7
    assert budget_requests(STREAMS["sources"], 30) is None, "no parent: read whole"
    assert budget_requests(STREAMS["source_connected_destinations"], 30) is None, "no limit of its own"


@pytest.mark.parametrize("budget", [0])
def test_a_zero_budget_turns_cycles_off(budget: int) -> None:
    assert budget_requests(STREAMS[STREAM], budget) is None
