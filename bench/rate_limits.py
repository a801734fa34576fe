"""3. Rate-limit utilisation: how close a paced client runs to the limit, and how often it hits it.

The simulator runs with `rate_limits="realistic"`: a token bucket per (token, operation)
at each operation's documented limit, plus 1200/min per token over all operations
(`REALISTIC_GLOBAL_PER_MINUTE`), and 20 ms latency. The client is `SegmentResource(
pace_requests=True, global_rate_limit_per_minute=1200)` would build (built directly to give
it a sleep that ends with the measurement), i.e. the same limits, paging one endpoint for a
fixed time. Achieved rate = 200 responses per second over the second half of
each run (the first half lets the client spend its initial burst), as the simulator timed
them; allowed = the limit that applies; the 429 share counts the whole run. The simulator's buckets start full (one
minute's worth), so a fresh run cannot be refused in its first minute; the "drained"
scenario starts with the token's budget already spent (as after another run on the same
token), which is where a client's pacing and its 429 handling show. "Two runs sharing the
token" is two clients, as two Dagster run processes would have (the `segment_api` pool
admits 4 at once), each pacing itself at the full limit.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from bench.figures import Figure, Section, Spread, Table
from bench.processes import SimulatorProcess
from bench.settings import Settings, Workdir

GLOBAL_PER_MINUTE = 1200
LATENCY_MS = 20


@dataclass
class Measured:
    achieved: float  # requests/s answered 200 in the steady window
    allowed: float  # requests/s the applicable limit allows
    requests: int
    rate_limited: int  # 429 answers
    client_wait: float  # seconds the clients slept for pacing, 429s and exhausted-budget headers

    @property
    def utilisation(self) -> float:
        return self.achieved / self.allowed

    @property
    def share_429(self) -> float:
        return self.rate_limited / self.requests if self.requests else 0.0


class Deadline:
    """A client's `sleep` that never sleeps past the end of the measurement, so a client told to
    wait a minute does not hold the benchmark for a minute; the wait it was told still counts."""

    def __init__(self) -> None:
        self.at = float("inf")

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, min(seconds, self.at - time.monotonic())))


def _client(sim: SimulatorProcess, deadline: Deadline, page_size: int | None = None) -> Any:
    """The client `SegmentResource(pace_requests=True, ...)` builds, with the deadline-bounded sleep."""
    from segment_assets.client import SegmentClient
    from segment_assets.resources import SegmentResource

    segment = SegmentResource(api_token=sim.token, api_url=sim.url, pace_requests=True, page_size=page_size,
                              global_rate_limit_per_minute=GLOBAL_PER_MINUTE)
    return SegmentClient(segment.api_token, segment.base_url, page_size=segment.page_size,
                         rate_limits=segment.rate_limits(), global_rate_limit=segment.global_rate_limit_per_minute,
                         max_retries=segment.max_retries, sleep=deadline.sleep)


def _page_until(client: Any, stream_name: str, params: list[dict[str, str]], deadline: Deadline) -> None:
    """Page through `stream_name` (cycling over parameter sets) until the deadline."""
    from segment_assets.streams import STREAMS

    stream = STREAMS[stream_name]
    while time.monotonic() < deadline.at:
        for path in params:
            pages = client.pages(stream, path, {})
            try:
                for _ in pages:
                    if time.monotonic() >= deadline.at:
                        return
            finally:
                pages.close()


def _measure(sim: SimulatorProcess, clients: int, stream: str, params: list[dict[str, str]], seconds: float,
             per_minute: float, page_size: int | None = None) -> Measured:
    deadline = Deadline()
    built = [_client(sim, deadline, page_size) for _ in range(clients)]
    sim.reset()
    start = time.monotonic()
    deadline.at = start + seconds
    threads = [threading.Thread(target=_page_until, args=(c, stream, params, deadline)) for c in built]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # CLOCK_MONOTONIC is system-wide on Linux: the simulator's timestamps compare with ours.
    events = sim.stats(events=True)["events"]
    steady = [t for t, _, status in events if status == 200 and start + seconds / 2 <= t <= start + seconds]
    waited = sum(c.stats.snapshot()["wait_seconds"] for c in built)
    return Measured(len(steady) / (seconds / 2), per_minute / 60.0, len(events),
                    sum(1 for *_, s in events if s == 429), waited)


def run(settings: Settings, work: Workdir) -> Section:
    section = Section(3, "Rate-limit utilisation", method=__doc__.split("\n\n", 1)[1].replace("\n", " "))
    table = Table(["scenario", "runs", "limit", "achieved req/s", "utilisation", "requests", "429 share",
                   "client slept s"])
    seconds = settings.rate_seconds
    results: dict[str, list[Measured]] = {}

    def add(name: str, limit: str, measured: list[Measured]) -> None:
        results[name] = measured
        table.rows.append([name, str(len(measured)), limit, Spread.of([m.achieved for m in measured]).fmt(".2f"),
                           Spread.of([100 * m.utilisation for m in measured]).fmt(".1f", " %"),
                           Spread.of([m.requests for m in measured]).fmt(",.0f"),
                           Spread.of([100 * m.share_429 for m in measured]).fmt(".2f", " %"),
                           Spread.of([m.client_wait for m in measured]).fmt(".1f")])

    # Enough events for the run at the limit with 1000-row pages, however long it is set to last.
    events = int(GLOBAL_PER_MINUTE / 60 * seconds * 1000 * 1.5) + 100_000
    config = {"counts": {"audit_events": events}, "latency_ms": LATENCY_MS, "rate_limits": "realistic"}
    main = []
    for _ in range(settings.rate_runs):
        with work.simulator(**config) as sim:  # a fresh simulator: full buckets, like a token unused for a minute
            main.append(_measure(sim, 1, "audit_events", [{}], seconds, GLOBAL_PER_MINUTE))
    add("listAuditEvents, global limit, fresh token", f"{GLOBAL_PER_MINUTE}/min", main)
    if settings.rate_scenarios:
        seconds = round(seconds / 2)
        with work.simulator(**config) as sim:
            sim.drain("listAuditEvents")
            add("listAuditEvents, global limit, budget already spent", f"{GLOBAL_PER_MINUTE}/min",
                [_measure(sim, 1, "audit_events", [{}], seconds, GLOBAL_PER_MINUTE)])
        with work.simulator(**config) as sim:
            add("listAuditEvents, two runs sharing the token (each its own client)", f"{GLOBAL_PER_MINUTE}/min",
                [_measure(sim, 2, "audit_events", [{}], seconds, GLOBAL_PER_MINUTE)])
        per_minute, rules_page = 200, 10
        with work.simulator(latency_ms=LATENCY_MS, rate_limits="realistic",
                            counts={"rules": int(per_minute / 60 * seconds * rules_page) + 100,
                                    "tracking_plans": 1}) as sim:
            plan = _tracking_plan(sim)
            add(f"listRulesFromTrackingPlan (page size {rules_page}), per-endpoint limit", f"{per_minute}/min",
                [_measure(sim, 1, "tracking_plan_rules", [{"trackingPlanId": plan}], seconds, per_minute,
                          rules_page)])
    section.tables.append(table)
    m = results["listAuditEvents, global limit, fresh token"]
    util, share = Spread.of([100 * x.utilisation for x in m]), Spread.of([100 * x.share_429 for x in m])
    section.figures += [
        Figure(f"utilisation of the limit, sustained {settings.rate_seconds / 2:g} s window", util.fmt(".1f", " %"),
               "≥ 90 %", util.min >= 90),
        Figure("requests answered 429", share.fmt(".2f", " %"), "< 1 %", share.max < 1),
    ]
    for name, measured in results.items():
        if name.startswith("listAuditEvents, global limit, fresh"):
            continue
        x = measured[0]
        section.figures.append(Figure(f"{name}: utilisation / 429 share",
                                      f"{100 * x.utilisation:.1f} % / {100 * x.share_429:.2f} %"))
    section.notes.append("The scenarios after the first go beyond the brief (no target).")
    spent = results.get("listAuditEvents, global limit, budget already spent")
    if spent:
        x = spent[0]
        section.notes.append(
            f"Budget already spent: {x.requests} request(s) in the run, {x.rate_limited} answered 429, and the client "
            f"was told to wait {x.client_wait:.0f} s in all. A 200 answered with `X-RateLimit-Remaining: 0` carries "
            "`X-RateLimit-Reset` = when the simulator's bucket is full again (up to 60 s), and the client pauses every "
            "request until then (`SegmentClient._observe_headers`), although the bucket allows the next request "
            f"after 1/{GLOBAL_PER_MINUTE // 60} s: utilisation collapses for about a minute after any run that ends "
            "with the token's budget spent.")
    shared = results.get("listAuditEvents, two runs sharing the token (each its own client)")
    if shared:
        x = shared[0]
        section.notes.append(
            f"Two runs sharing the token: together {x.achieved:.1f} requests/s, {100 * x.utilisation:.0f} % of the "
            "token's limit, because each process paces itself at the full limit; the simulator absorbs it only "
            "while its one-minute burst lasts. The buckets are per process, so concurrent runs in the `segment_api` "
            "pool (limit 4) can send up to 4× the limit.")
    section.notes.append(f"Each run of the main scenario lasts {settings.rate_seconds:g} s, the others {seconds:g} s; "
                         "the achieved rate is taken over the second half of each run. "
                         "The client's token bucket starts with a burst (up to 50 requests) that at ~28 requests/s "
                         "unpaced takes ~6 s to spend, so shorter windows read above 100 %.")
    return section


def _tracking_plan(sim: SimulatorProcess) -> str:
    import httpx

    r = httpx.get(f"{sim.url}/tracking-plans", headers={"Authorization": f"Bearer {sim.token}"})
    return r.json()["data"]["trackingPlans"][0]["id"]
