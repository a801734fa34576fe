"""The stream scheduler (`sync.run_streams`): dependency order, and children that do not wait
for their parent's outcome to be reported."""

from __future__ import annotations

import threading

from segment_assets.api.streams import STREAMS, StreamSpec
from segment_assets.engine.runner import StreamOutcome, run_streams

PARENT = STREAMS["sources"]
CHILDREN = [s for s in STREAMS.values() if s.parent and s.parent.stream == PARENT.name][:2]


def test_children_start_while_the_parent_outcome_is_still_being_reported() -> None:
    # Reporting an outcome (the caller's work between two items: Dagster's event log) must not
    # hold back the children: a 2/min fan-out would otherwise wait on the bookkeeping too.
    started: dict[str, threading.Event] = {s.name: threading.Event() for s in CHILDREN}
    order: list[str] = []

    def sync_one(stream: StreamSpec, parent_unavailable: str | None) -> StreamOutcome:
        if stream.name in started:
            started[stream.name].set()
        order.append(stream.name)
        return StreamOutcome(stream, "ok")

    outcomes = run_streams([PARENT, *CHILDREN], sync_one, max_parallel=4, stop=threading.Event())
    first = next(outcomes)
    assert first.stream.name == PARENT.name
    # Still "reporting" the parent: the children are already running (or done).
    assert all(e.wait(timeout=10) for e in started.values()), {n: e.is_set() for n, e in started.items()}
    rest = [o.stream.name for o in outcomes]
    assert sorted(rest) == sorted(s.name for s in CHILDREN)
    assert order[0] == PARENT.name


def test_a_failed_parent_skips_its_children_without_running_them() -> None:
    ran: list[str] = []

    def sync_one(stream: StreamSpec, parent_unavailable: str | None) -> StreamOutcome:
        ran.append(stream.name)
        if stream is PARENT:
            return StreamOutcome(stream, "failed", error=RuntimeError("boom"))
        return StreamOutcome(stream, "ok")

    outcomes = list(run_streams([PARENT, *CHILDREN], sync_one, max_parallel=4, stop=threading.Event()))
    assert ran == [PARENT.name]
    assert [o.status for o in outcomes] == ["failed"] + ["skipped"] * len(CHILDREN)
    assert all(PARENT.name in str(o.error) for o in outcomes[1:])


def test_an_unavailable_parent_makes_its_children_unavailable_with_the_reason() -> None:
    reasons: dict[str, str | None] = {}

    def sync_one(stream: StreamSpec, parent_unavailable: str | None) -> StreamOutcome:
        reasons[stream.name] = parent_unavailable
        if stream is PARENT:
            return StreamOutcome(stream, "unavailable", metadata={"segment/unavailable_reason": "403 plan"})
        return StreamOutcome(stream, "unavailable" if parent_unavailable else "ok")

    outcomes = list(run_streams([PARENT, *CHILDREN], sync_one, max_parallel=4, stop=threading.Event()))
    assert [o.status for o in outcomes] == ["unavailable"] * (1 + len(CHILDREN))
    for child in CHILDREN:
        assert PARENT.name in (reasons[child.name] or "") and "403 plan" in (reasons[child.name] or "")
