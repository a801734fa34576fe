"""Shared request budgets (rate_limits.py): the window rule by hand and by brute force, each
store under threads and under processes, and clients in four processes sharing one token
against the simulator's per-token limits."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from segment_assets.api.client import SegmentClient
from segment_assets.api.rate_limits import (
    EVERY_OPERATION,
    FileStore,
    Limit,
    MemoryStore,
    RateLimitStore,
    budget_key,
    earliest_fit,
    open_store,
    reserve_slot,
    window_limit,
)
from segment_assets.api.streams import STREAMS
from segment_assets.orchestration.resources import SegmentResource
from segment_assets.simulator import Simulator
from segment_assets_tests.rate_limit_worker import granted
from segment_assets_tests.services import free_port, popen, stop

REPO = Path(__file__).resolve().parents[1]


# -- the rule itself ------------------------------------------------------------------------


def test_limits_per_minute_become_n_per_window_with_the_margin() -> None:
    assert window_limit("op", 2) == Limit("op", 2, 60_500_000)
    assert window_limit("op", 2.5) == Limit("op", 2, 48_500_000)  # never more than 2.5/min on average
    assert window_limit("op", 0.5) == Limit("op", 1, 120_500_000)
    assert window_limit("op", 120, window=3, margin=0.1) == Limit("op", 120, 3_100_000)
    assert window_limit("op", None) is None and window_limit("op", 0) is None
    with pytest.raises(ValueError, match="'op'.*positive number"):
        window_limit("op", -1)


def test_earliest_fit_by_hand() -> None:
    assert earliest_fit([], 5, 1, 10) == 5
    assert earliest_fit([0, 0], 5, 2, 10) == 10, "two in [0, 10): the third waits for the first to leave"
    assert earliest_fit([0, 0], 5, 3, 10) == 5
    assert earliest_fit([0, 4], 8, 2, 10) == 10, "[0, 10) would hold three"
    assert earliest_fit([0, 4], 12, 2, 10) == 12, "[4, 14) holds two with it"
    # Slots reserved far ahead (a 2/min operation) must not hold back what fits before them.
    assert earliest_fit([100], 0, 1, 10) == 0
    assert earliest_fit([100], 85, 1, 10) == 85
    assert earliest_fit([100], 95, 1, 10) == 110
    assert earliest_fit([20, 29], 25, 2, 10) == 30, "25 would make three in [20, 30); 30 is the first way out"
    assert earliest_fit([20, 30], 25, 2, 10) == 25, "windows are half-open: 20, 25, 30 never share one"
    assert earliest_fit([20, 30], 9, 2, 10) == 9


def _windows_hold_at_most(starts: list[int], count: int, period: int) -> bool:
    starts = sorted(starts)
    return all(sum(1 for t in starts if s <= t < s + period) <= count for s in starts)


def test_reserved_slots_are_the_earliest_that_keep_every_window() -> None:
    """Random callers on an operation limit and a global limit, checked against brute force:
    every window holds at most N, and no earlier slot would have done."""
    rng = random.Random(5)
    for _ in range(60):
        op_limit = Limit("op", rng.randint(1, 3), rng.randint(3, 12))
        other_limit = Limit("other", rng.randint(1, 4), rng.randint(3, 12))
        glob = Limit("*", rng.randint(2, 5), rng.randint(3, 12))
        logs: dict[str, list[int]] = {"op": [], "other": [], "*": []}
        full: dict[str, list[int]] = {"op": [], "other": [], "*": []}  # never pruned, for the checks
        now = 0
        for _ in range(25):
            now += rng.randint(0, 3)
            paused = now + rng.choice([0, 0, 0, 4])
            own = rng.choice([op_limit, other_limit])
            limits = [own, glob]
            slot = reserve_slot(now, paused, [(logs[lim.name], lim) for lim in limits])

            def admits(t: int, limits: list[Limit] = limits, full: dict[str, list[int]] = full) -> bool:
                return all(_windows_hold_at_most(full[lim.name] + [t], lim.count, lim.period_us) for lim in limits)

            assert slot >= max(now, paused) and admits(slot)
            assert not any(admits(t) for t in range(max(now, paused), slot)), "an earlier slot was free"
            for lim in limits:
                full[lim.name].append(slot)
        for lim in (op_limit, other_limit, glob):
            assert _windows_hold_at_most(full[lim.name], lim.count, lim.period_us)


def _left_of(wait: float, pause: float) -> bool:
    """`wait` is what remains of a pause of `pause` seconds taken a moment ago: more than
    nothing, never more than the pause, however slow the machine was in between."""
    return 0 < wait <= pause + 0.001


# -- the stores -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throw-away redis-server on a free loopback port, nothing persisted."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    try:
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {proc.returncode}") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        stop(proc)


STORES = ["memory", "file", "redis"]


@pytest.fixture
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    kind = request.param
    if kind == "file":
        return f"file:{tmp_path / 'budgets'}"
    if kind == "redis":
        return request.getfixturevalue("redis_url")
    return kind


def _open(spec: str, window: float, margin: float, url: str = "http://api.test") -> RateLimitStore:
    # A fresh key per test: the module's Redis and the process-wide memory stores outlive one test.
    return open_store(spec, url, f"token-{random.random()}", window=window, margin=margin)


def _max_in_window(starts: list[int], window: int) -> int:
    starts = sorted(starts)
    most, first = 0, 0
    for last, t in enumerate(starts):
        while t - starts[first] >= window:
            first += 1
        most = max(most, last - first + 1)
    return most


@pytest.mark.parametrize("store_spec", STORES, indirect=True)
def test_threads_never_start_more_than_n_in_a_window(store_spec: str) -> None:
    """8 threads reserve 64 starts at once on one operation with a limit of its own and one
    without; what the store granted (not when the threads woke up) keeps every window. The
    window is 60 s + 0.5 s margin: nobody sleeps until the slots, and nothing granted leaves
    the store's log before the checks."""
    window, margin, op_n, total_n = 60, 0.5, 4, 10
    period = round((window + margin) * 1_000_000)
    store = _open(store_spec, window, margin)

    def work(op: str) -> None:
        for _ in range(8):
            store.reserve(op, op_n if op == "limited" else None, total_n)

    threads = [threading.Thread(target=work, args=("limited" if i % 2 else "other",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    limited, everything = granted(store, "limited"), granted(store, EVERY_OPERATION)
    store.close()
    assert len(limited) == 32 and len(everything) == 64
    assert set(limited) <= set(everything)
    assert _max_in_window(limited, period) <= op_n
    assert _max_in_window(everything, period) <= total_n
    # The budget is used, not just respected: the worst order (every "other" first) needs 11
    # windows: 32 others in 4, then 4 limited a window from the 4th.
    assert max(everything) - min(everything) < 11 * period


@pytest.mark.parametrize("store_spec", STORES, indirect=True)
def test_pause_holds_back_one_operation_or_all(store_spec: str) -> None:
    store = _open(store_spec, 60, 0.5)
    store.pause("listSyncsFromWarehouse", 30)
    assert _left_of(store.reserve("listSyncsFromWarehouse", 2, 1200), 30)
    assert store.reserve("listSources", None, 1200) == 0, "another operation goes on"
    store.pause(None, 20)
    assert _left_of(store.reserve("listSources", None, 1200), 20)
    assert store.reserve("listSyncsFromWarehouse", 2, 1200) > 20, "the longer pause stays"
    store.close()


@pytest.mark.parametrize("store_spec", STORES, indirect=True)
def test_without_pacing_a_pause_from_another_process_is_seen_within_the_refresh(store_spec: str) -> None:
    # Pacing off: requests only ask whether a 429 paused their operation. A store outside this
    # process answers from a copy refreshed every `pause_refresh_seconds`, not a round trip each.
    token = f"token-{random.random()}"
    here, there = (open_store(store_spec, "http://api.test", token, window=60, margin=0.5) for _ in range(2))
    assert here.reserve("listSources", None, None) == 0
    there.pause("listSources", 5)  # another process met a 429
    deadline = time.monotonic() + here.pause_refresh_seconds + 1.0
    while (wait := here.reserve("listSources", None, None)) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _left_of(wait, 5), "the other process's pause reached this one"
    assert here.reserve("listUsers", None, None) == 0, "another operation goes on"
    here.pause(None, 3)  # this process's own pause counts at once, whatever the refresh
    assert _left_of(here.reserve("listUsers", None, None), 3)
    here.close()
    there.close()


def _run_workers(jobs: list[dict[str, Any]], seconds: float, timeout: float = 120) -> list[dict[str, Any]]:
    """Start the workers, wait until each has imported what it needs, then let all of them
    go at once for `seconds`."""
    procs = [
        popen(
            [sys.executable, "-m", "segment_assets_tests.rate_limit_worker", orjson.dumps(job)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for job in jobs
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stderr is not None
            if proc.stdout.readline().strip() != b"ready":
                raise AssertionError(f"worker failed to start: {proc.stderr.read().decode()[-2000:]}")
        start_at = time.time() + 0.2
        go = orjson.dumps({"start_at": start_at, "deadline": start_at + seconds}) + b"\n"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(go)
            proc.stdin.flush()  # communicate() closes it
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, err.decode()[-2000:]
            results.append(orjson.loads(out.splitlines()[-1]))
        return results
    finally:
        for proc in procs:
            stop(proc)


@pytest.mark.e2e
@pytest.mark.parametrize("store_spec", STORES, indirect=True)
def test_four_processes_share_one_window(store_spec: str) -> None:
    """4 processes reserve 30 starts each, at once, on one operation limited to 12 per 60 s
    (+ 0.5 s margin). With a shared store, the starts it granted keep every window to 12 and
    fill ten windows; with the memory store each process has its own budget and the rule breaks."""
    window, margin, limit = 60, 0.5, 12
    period = round((window + margin) * 1_000_000)
    key = ["http://api.test", f"token-{random.random()}"]
    job = {
        "mode": "reserve",
        "store": store_spec,
        "window": window,
        "margin": margin,
        "key": key,
        "operation_id": "listAuditEvents",
        "per_minute": limit,
        "global_per_minute": None,
        "count": 30,
    }
    results = _run_workers([job] * 4, seconds=0.0)
    if store_spec == "memory":
        own = [r["granted"] for r in results]
        assert all(len(starts) == 30 for starts in own)
        assert _max_in_window([t for starts in own for t in starts], period) > limit, "four private budgets"
        return
    store = open_store(store_spec, *key, window=window, margin=margin)
    starts = granted(store, "listAuditEvents")
    store.close()
    assert len(starts) == 120
    assert _max_in_window(starts, period) <= limit
    assert max(starts) - min(starts) < 10 * period, "120 starts at 12 a window fill ten windows"


# -- clients sharing a token against the simulator -----------------------------------------


def _four_clients_read_at_once(
    sim: Simulator, store_spec: str, stream: str, path: dict[str, str], seconds: float
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    segment = SegmentResource(api_token=sim.token, api_url=sim.url)  # what a Dagster run configures
    job = {
        "mode": "read",
        "url": sim.url,
        "token": sim.token,
        "store": store_spec,
        "stream": stream,
        "path": path,
        "page_size": 10,
        "rate_limits": segment.rate_limits(),
        "global_rate_limit": segment.global_rate_limit_per_minute,
    }
    sim.reset_stats()
    results = _run_workers([job] * 4, seconds)
    return results, sim.stats.as_dict()


@pytest.mark.e2e
@pytest.mark.parametrize("store_spec", STORES, indirect=True)
def test_four_processes_sharing_a_token_stay_within_its_limit(store_spec: str) -> None:
    """Realistic limits (listRulesFromTrackingPlan: 200/min, plus 1200/min per token) and four
    processes paging it as fast as they can for up to 8 s, i.e. inside one minute: the token
    may start 200 requests. The simulator's bucket starts full (capacity 200, refilled
    200/min), so anything past 200 + refill answers 429."""
    limit = 200
    with Simulator(seed=7, rate_limits="realistic", counts={"tracking_plans": 1, "rules": 3000}) as sim:
        plan = sim.items("listTrackingPlans")[0]["id"]
        results, served = _four_clients_read_at_once(
            # A shared budget: each process pages until it is told to wait (about a minute) for
            # its next start, so all 200 are used however slow the machine; 45 s only bounds it.
            # Private budgets: 8 s of 429s is enough to see them overrun the token.
            sim,
            store_spec,
            "tracking_plan_rules",
            {"trackingPlanId": plan},
            seconds=8.0 if store_spec == "memory" else 45.0,
        )
    assert all(r["requests"] > 0 for r in results), "every process sent requests: they ran at once"
    received = served["by_operation"].get("listRulesFromTrackingPlan", 0)
    share_429 = served["rate_limited"] / received
    if store_spec == "memory":
        # Each process has its own 200: together they overrun the token until the server pushes back.
        assert received > limit or share_429 >= 0.01, (received, share_429)
    else:
        assert received <= limit, f"{received} requests in under a minute against a limit of {limit}/min"
        assert share_429 < 0.01
        assert received >= 0.95 * limit, "the budget is used"
        assert sum(r["requests"] for r in results) == received


@pytest.mark.parametrize("store_spec", ["file"], indirect=True)
def test_a_429_on_one_operation_does_not_delay_another(store_spec: str, sim: Simulator) -> None:
    """Three clients on one shared store (as three processes would be): the first gets a 429
    on an operation with a limit of its own; the second reads another operation without
    waiting; the third, on the same operation, waits out the pause the first recorded."""
    waits: dict[str, list[float]] = {"a": [], "b": [], "c": []}

    def client(name: str, limits: dict[str, float]) -> SegmentClient:
        return SegmentClient(
            sim.token,
            sim.url,
            rate_limits=limits,
            global_rate_limit=1200,
            rate_limit_store=store_spec,
            sleep=waits[name].append,
        )

    limits: dict[str, float] = {"listSources": 600}
    sim.inject("429", "listSources", ms_before_next=4000)
    with client("a", limits) as a, client("b", limits) as b, client("c", limits) as c:
        assert [r for p in a.pages(STREAMS["sources"]) for r in p.records] == sim.items("listSources")
        assert a.stats.rate_limited == 1 and _left_of(max(waits["a"]), 4.0)
        b_records = [r for p in b.pages(STREAMS["destinations"]) for r in p.records]
        assert b_records == sim.items("listDestinations")
        assert waits["b"] == [] and b.stats.wait_seconds == 0
        list(c.pages(STREAMS["sources"]))
        assert len(waits["c"]) == 1 and _left_of(waits["c"][0], 4.0), "the pause is shared with other clients"


@pytest.mark.parametrize("store_spec", ["file"], indirect=True)
def test_a_429_on_an_operation_without_its_own_limit_pauses_every_operation(store_spec: str, sim: Simulator) -> None:
    waits: list[float] = []
    sim.inject("429", "listSources", ms_before_next=4000)
    with (
        SegmentClient(
            sim.token,
            sim.url,
            rate_limits={},
            global_rate_limit=1200,
            rate_limit_store=store_spec,
            sleep=lambda s: None,
        ) as a,
        SegmentClient(
            sim.token, sim.url, rate_limits={}, global_rate_limit=1200, rate_limit_store=store_spec, sleep=waits.append
        ) as b,
    ):
        list(a.pages(STREAMS["sources"]))
        list(b.pages(STREAMS["destinations"]))
    assert len(waits) == 1 and _left_of(waits[0], 4.0), "the per-token limit ran out: everything waits"


def test_remaining_zero_pauses_only_that_operation(tmp_path: Path) -> None:
    """`X-RateLimit-Remaining: 0` on listRulesFromTrackingPlan (own limit 200/min) pauses it
    until `X-RateLimit-Reset`; listSources goes on."""

    class Waited(Exception):
        pass

    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        raise Waited

    with Simulator(seed=7, rate_limits={"listRulesFromTrackingPlan": 3}) as sim:
        plan = sim.items("listTrackingPlans")[0]["id"]
        rules = STREAMS["tracking_plan_rules"]
        with SegmentClient(
            sim.token,
            sim.url,
            rate_limits={"listRulesFromTrackingPlan": 200},
            global_rate_limit=1200,
            rate_limit_store=f"file:{tmp_path}",
            sleep=sleep,
        ) as client:
            for _ in range(3):
                assert len([r for p in client.pages(rules, {"trackingPlanId": plan}) for r in p.records]) > 0
            assert waits == [], "three of three allowed, the third says none remain"
            assert [r for p in client.pages(STREAMS["sources"]) for r in p.records] == sim.items("listSources")
            assert waits == []
            with pytest.raises(Waited):
                list(client.pages(rules, {"trackingPlanId": plan}))
            assert len(waits) == 1 and 30 < waits[0] <= 61
        assert sim.stats["rate_limited"] == 0


# -- configuration ----------------------------------------------------------------------------


def test_the_resource_shares_a_file_store_under_dagster_home(sim: Simulator, dagster_home: Path) -> None:
    first = SegmentResource(api_token=sim.token, api_url=sim.url).make_client()
    second = SegmentResource(api_token=sim.token, api_url=sim.url).make_client()
    try:
        first.limiter.pause("listSources", 30)  # listSources has no limit of its own: every operation
        assert _left_of(second.limiter.reserve("listDestinations"), 30)
        directory = dagster_home / ".segment-rate-limits"
        assert [f.name for f in directory.glob("*.sqlite3")] == [f"{budget_key(str(sim.url), sim.token)}.sqlite3"]
        assert all(sim.token.encode() not in f.read_bytes() for f in directory.iterdir())
        assert sim.token not in repr(first.limiter)
    finally:
        first.close()
        second.close()


def test_memory_store_is_shared_within_the_process(sim: Simulator) -> None:
    a = SegmentResource(api_token=sim.token, api_url=sim.url, rate_limit_store="memory").make_client()
    b = SegmentResource(api_token=sim.token, api_url=sim.url, rate_limit_store="memory").make_client()
    other_token = SegmentClient("another-token", sim.url, rate_limit_store="memory")
    assert a.limiter.store is b.limiter.store
    assert other_token.limiter.store is not a.limiter.store
    for c in (a, b, other_token):
        c.close()


def test_default_client_keeps_its_budget_to_itself() -> None:
    a, b = SegmentClient("t", "http://127.0.0.1:9"), SegmentClient("t", "http://127.0.0.1:9")
    assert isinstance(a.limiter.store, MemoryStore) and a.limiter.store is not b.limiter.store


def test_bad_store_names_the_choices(sim: Simulator) -> None:
    with pytest.raises(ValueError, match="'memory', 'file', 'file:/some/dir' or 'redis://host:port/db'.*'filez'"):
        SegmentResource(api_token=sim.token, api_url=sim.url, rate_limit_store="filez").make_client()
    with pytest.raises(ValueError, match="rate-limit directory"):
        FileStore("/proc/no-such-dir/x", "k")
    with pytest.raises(ValueError, match="'listSources'.*positive"):
        SegmentClient(sim.token, sim.url, rate_limits={"listSources": -5})


def test_unreachable_redis_is_an_error_not_a_silent_free_for_all() -> None:
    import redis

    store = open_store(f"redis://127.0.0.1:{free_port()}/0", "http://api.test", "tok")
    with pytest.raises(redis.ConnectionError):
        store.reserve("listSources", None, 1200)
    assert "tok" not in repr(store)
