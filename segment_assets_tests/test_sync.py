"""Running streams (`engine/runner.py`): dependency order, children that do not wait for their
parent's outcome to be reported, what a stopped run reports, and the run's one fan-out pool."""

from __future__ import annotations

import _thread
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import duckdb
from dagster import DagsterInstance, materialize

from segment_assets.api import stops
from segment_assets.api.client import SegmentClient
from segment_assets.api.errors import SyncStopped
from segment_assets.api.streams import STREAMS, StreamSpec, UpdateMethod
from segment_assets.engine import progress
from segment_assets.engine.runner import StreamOutcome, StreamRun, run_streams, sync_stream
from segment_assets.orchestration.assets import asset_key, build_assets
from segment_assets.orchestration.resources import DuckDBStorage
from segment_assets.simulator import Simulator
from segment_assets.storage import DuckDBTarget
from segment_assets_tests.conftest import segment_for

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


# -- who gets a slot ------------------------------------------------------------------------------

# Paced fan-outs of other buckets: 2/min warehouse endpoints and 25/min Engage ones.
PACED_ELSEWHERE = [
    STREAMS[n]
    for n in (
        "warehouse_syncs",
        "warehouse_advanced_sync_schedules",
        "warehouse_selective_syncs",
        "audience_consumers",
        "computed_traits",
    )
]
# The longest chain of a full sync: spaces -> events -> their properties -> sample values (25/min).
SAMPLE_VALUES_CHAIN = [
    STREAMS[n] for n in ("spaces", "space_events", "space_event_properties", "space_event_property_sample_values")
]


def test_streams_asleep_on_their_rate_limit_do_not_keep_the_longest_chain_from_starting() -> None:
    # Failed before this change: the paced streams held both slots while they slept on their
    # budgets, and the chain's root waited for one of them to end (here: never, until the guard).
    chain_started = threading.Event()
    released: dict[str, bool] = {}

    def sync_one(stream: StreamSpec, parent_unavailable: str | None) -> StreamOutcome:
        if stream is SAMPLE_VALUES_CHAIN[-1]:
            chain_started.set()
        elif stream in PACED_ELSEWHERE:
            # Asleep on its budget, pacing requests, until the chain's last stream has started.
            released[stream.name] = chain_started.wait(timeout=20)
        return StreamOutcome(stream, "ok")

    stream_list = [*PACED_ELSEWHERE, *SAMPLE_VALUES_CHAIN]
    outcomes = list(run_streams(stream_list, sync_one, max_parallel=2, stop=threading.Event()))
    assert sorted(o.stream.name for o in outcomes) == sorted(s.name for s in stream_list)
    assert released == {s.name: True for s in PACED_ELSEWHERE}, "the chain started while every paced stream slept"


def test_a_freed_slot_goes_to_the_longest_remaining_chain_not_to_the_stream_ready_first() -> None:
    # Failed before this change: the slots were a first-come queue, so the warehouses' child (on
    # the 2/min chain) started after every root that had been waiting since the run began.
    order: list[str] = []
    roots = [STREAMS[n] for n in ("sources", "users", "labels", "roles", "catalog_sources")]
    chain = [STREAMS["warehouses"], STREAMS["warehouse_connected_sources"]]

    def sync_one(stream: StreamSpec, parent_unavailable: str | None) -> StreamOutcome:
        order.append(stream.name)
        return StreamOutcome(stream, "ok")

    list(run_streams([*roots, *chain], sync_one, max_parallel=1, stop=threading.Event(), paced=lambda s: False))
    assert order[:2] == [s.name for s in chain], order
    assert sorted(order[2:]) == sorted(s.name for s in roots)


def test_a_run_paces_what_its_client_paces(target: DuckDBTarget) -> None:
    for limits, expected in (({"listSyncsFromWarehouse": 2}, True), ({}, False)):
        client = SegmentClient("t", "http://127.0.0.1:9", rate_limits=limits)
        run = StreamRun(client=client, target=target, run_id="r", method_for=lambda s: UpdateMethod.FULL_LOAD)
        assert run.paced(STREAMS["warehouse_syncs"]) is expected and not run.paced(STREAMS["warehouses"])
        client.close()
    target.close()


# -- a stopped run -------------------------------------------------------------------------------

WAREHOUSES = STREAMS["warehouses"]
CONNECTED = STREAMS["warehouse_connected_sources"]  # stopped while it reads
STATES = STREAMS["warehouse_connection_states"]  # commits its table while the run stops
SELECTIVE = STREAMS["warehouse_selective_syncs"]  # child of CONNECTED: never starts
STOPPING_RUN = [WAREHOUSES, CONNECTED, STATES, SELECTIVE]


def stopping_streams(request_stop: Callable[[], None]) -> tuple[Callable[..., StreamOutcome], list[str]]:
    """A sync_one in which CONNECTED asks for the stop while STATES is mid-write."""
    ran: list[str] = []
    states_running = threading.Event()
    stopped = threading.Event()

    def sync_one(stream: StreamSpec, parent_unavailable: str | None) -> StreamOutcome:
        ran.append(stream.name)
        if stream is CONNECTED:
            assert states_running.wait(timeout=60)
            request_stop()
            assert stopped.wait(timeout=60)
            return StreamOutcome(stream, "failed", error=SyncStopped("the sync was asked to stop"))
        if stream is STATES:
            states_running.set()
            assert stopped.wait(timeout=60)  # its write commits after the stop was asked
        return StreamOutcome(stream, "ok")

    def watch_stop(stop: threading.Event) -> None:
        threading.Thread(target=lambda: stopped.set() if stop.wait(timeout=60) else None, daemon=True).start()

    sync_one.watch_stop = watch_stop  # type: ignore[attr-defined]
    return sync_one, ran


def test_a_stopped_run_reports_every_stream_committed_or_not() -> None:
    # Failed before this change: the stream that was stopped, and the child that never started,
    # were left out of the outcomes, so the step that ran them ended green.
    stop = threading.Event()
    sync_one, ran = stopping_streams(stop.set)
    sync_one.watch_stop(stop)  # type: ignore[attr-defined]
    outcomes = list(run_streams(STOPPING_RUN, sync_one, max_parallel=4, stop=stop))
    status = {o.stream.name: o.status for o in outcomes}
    assert len(outcomes) == len(STOPPING_RUN), [o.stream.name for o in outcomes]
    assert status == {
        WAREHOUSES.name: "ok",
        STATES.name: "ok",  # committed while stopping: still reported
        CONNECTED.name: "stopped",
        SELECTIVE.name: "stopped",
    }
    assert SELECTIVE.name not in ran, "nothing starts once the run is stopped"
    assert "not started" in str(next(o.error for o in outcomes if o.stream is SELECTIVE))


def test_an_interrupt_in_the_waiting_thread_stops_the_run_and_comes_after_every_outcome() -> None:
    stop = threading.Event()
    sync_one, ran = stopping_streams(_thread.interrupt_main)  # what SIGINT does to the main thread
    sync_one.watch_stop(stop)  # type: ignore[attr-defined]
    outcomes = run_streams(STOPPING_RUN, sync_one, max_parallel=4, stop=stop)
    got: list[StreamOutcome] = []
    interrupts = 0
    while True:
        # Consumed as materialize_streams does: an interrupt landing here, between two outcomes,
        # stops the run and the outcomes keep coming.
        try:
            outcome = next(outcomes, None)
            if outcome is None:
                break
            got.append(outcome)
        except KeyboardInterrupt:
            interrupts += 1
            stop.set()
    assert interrupts == 1 and stop.is_set()
    assert sorted(o.stream.name for o in got) == sorted(s.name for s in STOPPING_RUN)
    status = {o.stream.name: o.status for o in got}
    assert status[WAREHOUSES.name] == status[STATES.name] == "ok"
    assert status[CONNECTED.name] == status[SELECTIVE.name] == "stopped"
    assert SELECTIVE.name not in ran


class StopWhenStarted:
    """A progress observer that stops every sync of the process when `name` starts, as the CLI's
    signal handler does."""

    def __init__(self, name: str) -> None:
        self.name = name

    def run_started(self, run: progress.RunProgress, streams: list[StreamSpec]) -> None:
        pass

    def stream_started(self, stream: StreamSpec) -> None:
        if stream.name == self.name:
            stops.stop_all()

    def stream_finished(self, outcome: StreamOutcome) -> None:
        pass


def test_a_stopped_step_fails_naming_what_did_not_finish_and_records_every_committed_table(
    sim: Simulator, storage: DuckDBStorage, duckdb_path: Path
) -> None:
    # Failed before this change: the step succeeded with CONNECTED and SELECTIVE silently missing.
    selected = ["sources", "source_details", "source_connected_destinations", *(s.name for s in STOPPING_RUN)]
    with progress.watch(StopWhenStarted(CONNECTED.name)):
        result = materialize(
            build_assets(),
            resources={"segment": segment_for(sim, max_streams=2), "storage": storage},
            selection=[asset_key(s) for s in selected],
            instance=DagsterInstance.ephemeral(),
            raise_on_error=False,
        )
    assert not result.success
    recorded = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    (failure,) = [e.event_specific_data.error for e in result.all_events if e.is_step_failure]
    assert failure.cls_name == "Failure" and "the run was stopped" in failure.message.splitlines()[0], failure.message
    named = {line.split(": ", 1)[0] for line in failure.message.strip().splitlines()[1:]}
    assert {CONNECTED.name, SELECTIVE.name} <= named, failure.message
    assert named | recorded == set(selected) and not named & recorded
    con = duckdb.connect(str(duckdb_path), read_only=True)
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    finally:
        con.close()
    assert WAREHOUSES.name in recorded, "the parent was written before its child started"
    assert recorded <= tables, "a materialization for every table it names"
    assert not named & tables, "the streams that did not finish left no table"


# -- the run's fan-out pool ----------------------------------------------------------------------


def test_fan_out_streams_share_one_pool_whose_threads_each_reuse_one_http_client(
    sim: Simulator, target: DuckDBTarget
) -> None:
    fan_outs = [
        s for s in STREAMS.values() if s.parent and s.parent.stream == "sources" and not (s.feature_gate or s.windowing)
    ]
    streams = [STREAMS["sources"], *fan_outs]
    assert len(fan_outs) >= 3 and len(sim.items("listSources")) >= 3, "several streams fan out over several parents"
    stop = threading.Event()
    client = SegmentClient(sim.token, sim.url, global_rate_limit=None, stop=stop)
    run = StreamRun(
        client=client,
        target=target,
        run_id="pool",
        method_for=lambda stream: UpdateMethod.FULL_LOAD,
        max_streams=2,
        fanout_concurrency=2,
        paced_streams=0,  # none of these endpoints has a limit of its own
    )
    assert not any(run.paced(s) for s in streams)
    try:
        outcomes = list(run_streams(streams, lambda s, why: sync_stream(s, run, why), max_parallel=2, stop=stop))
    finally:
        run.close()
    opened = client.http_clients
    client.close()
    target.close()
    assert {o.stream.name: o.status for o in outcomes} == {s.name: "ok" for s in streams}, [
        (o.stream.name, o.error) for o in outcomes if o.error
    ]
    # Two stream threads plus the pool's 2 x 2 threads, however many streams fanned out.
    assert 0 < len(opened) <= 2 + 2 * 2, len(opened)
    assert all(http.is_closed for http in opened) and not client.http_clients


EXITING_MAIN_WITH_A_POOL = """
import sys, threading
from concurrent.futures import ThreadPoolExecutor
from segment_assets.api.client import SegmentClient
from segment_assets.api.errors import SyncStopped
from segment_assets.api.streams import STREAMS

client = SegmentClient(sys.argv[1], sys.argv[2], rate_limits={"listSources": 1}, global_rate_limit=None)
first = threading.Event()

def read():
    try:
        for _ in range(3):  # the second request waits a minute for the 1/min budget
            client.request(STREAMS["sources"], {}, {})
            first.set()
    except SyncStopped:
        print("stopped", flush=True)

ThreadPoolExecutor(1).submit(read)
first.wait(60)
# The main thread ends here, leaving the pool's worker waiting on the rate limit.
"""


def test_a_pool_worker_waiting_on_a_rate_limit_stops_when_the_process_exits(sim: Simulator) -> None:
    # concurrent.futures joins its workers at exit before the main thread counts as ended: a stop
    # that watched the main thread would let this worker send its second request a minute later.
    done = subprocess.run(
        [sys.executable, "-c", EXITING_MAIN_WITH_A_POOL, sim.token, sim.url],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "stopped" in done.stdout
    assert sim.stats.by_operation["listSources"] == 1, "no request after the main thread ended"
