"""What a sync is doing, told where its user looks.

Two listeners, neither of which the engine knows by type:

- **observers** in this process (the `segment-assets sync` terminal view): `engine/runner.py` and
  `orchestration/assets.py` report each run's progress and each stream's start and end here, and an
  observer registered with `watch()` receives them. Dagster runs launched elsewhere have none and pay
  nothing. Calls come from worker threads.
- **the run's log** (Dagster's event log for a run launched from the UI): `RunProgress` collects, from
  any thread, the client's 429 and retry messages and each running stream's figures, and hands them
  as lines to a `say(level, text)` callback only when `flush()` is called, by the one thread that
  reports the run. A running stream gets a line at most every `interval` seconds (30 by default):
  Dagster writes each log line to its event log (milliseconds each on SQLite), so nothing is logged
  per request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from segment_assets.api.client import SegmentClient
    from segment_assets.api.streams import StreamSpec
    from segment_assets.engine.runner import StreamOutcome

PROGRESS_INTERVAL_SECONDS = 30.0


class Observer(Protocol):
    def run_started(self, run: RunProgress, streams: list[StreamSpec]) -> None: ...

    def stream_started(self, stream: StreamSpec) -> None: ...

    def stream_finished(self, outcome: StreamOutcome) -> None: ...


_observers: list[Observer] = []
_guard = threading.Lock()


@contextmanager
def watch(observer: Observer) -> Iterator[Observer]:
    with _guard:
        _observers.append(observer)
    try:
        yield observer
    finally:
        with _guard:
            _observers.remove(observer)


def emit(method: str, *args: Any) -> None:
    for observer in list(_observers):
        getattr(observer, method)(*args)


def seconds_left(
    made: int, planned: int | None, elapsed: float, per_minute: float | None, waited: float = 0.0
) -> float | None:
    """Estimated seconds until a stream's last planned request: what is left at its endpoint's limit
    when it has one (a paced stream goes no faster), else at the pace seen so far; None when there
    is nothing to go on. Pages past the first of a request are not planned: a lower bound.

    `waited`: the rate-limit waits the stream has booked. A wait counts from when it is booked, so
    while it runs the booked total is ahead of the time elapsed: the next request is that far off,
    and only the ones after it are still to be paced."""
    if planned is None or made > planned:  # more pages than planned requests: nothing to scale by
        return None
    left = planned - made
    if left == 0:
        return 0.0
    booked = max(0.0, waited - elapsed)
    if booked and per_minute:  # the pace seen so far is mostly that wait: the limit says more
        return booked + (left - 1) * 60.0 / per_minute
    at_limit = left * 60.0 / per_minute if per_minute else booked
    seen = elapsed / made * left if made else None
    if seen is None and not per_minute:
        return None
    return max(at_limit, seen or 0.0)


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass
class _Running:
    stream: StreamSpec
    started: float
    planned: int | None = None  # requests planned (parameter sets); None until the stream has planned them
    last_line: float = 0.0


class RunProgress:
    """One run's progress: its running streams and the messages its client sent, as log lines."""

    def __init__(
        self,
        client: SegmentClient,
        say: Callable[[int, str], None] | None = None,
        *,
        interval: float = PROGRESS_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.say = say
        self.interval = interval
        self.clock = clock
        self._running: dict[str, _Running] = {}
        self._messages: list[tuple[int, str]] = []
        self._lock = threading.Lock()

    # -- from any thread ----------------------------------------------------------------------

    def started(self, stream: StreamSpec) -> None:
        now = self.clock()
        with self._lock:
            self._running[stream.name] = _Running(stream, now, last_line=now)

    def planned(self, stream: StreamSpec, requests: int) -> None:
        with self._lock:
            running = self._running.get(stream.name)
            if running:
                running.planned = requests

    def message(self, level: int, text: str) -> None:
        """A message for the run's log (the client's 429s and retries); said at the next flush."""
        with self._lock:
            self._messages.append((level, text))

    def ended(self, stream: StreamSpec) -> None:
        with self._lock:
            self._running.pop(stream.name, None)

    # -- figures --------------------------------------------------------------------------------

    def stream_seconds_left(self, name: str, now: float | None = None) -> float | None:
        with self._lock:
            running = self._running.get(name)
        if running is None:
            return None
        return self._left(running, self.client.stats_for(name).snapshot(), now)

    def seconds_left(self, now: float | None = None) -> float | None:
        """The longest estimate of the running streams (the run's, when its slowest stream is running)."""
        with self._lock:
            running = list(self._running.values())
        lefts = [self._left(r, self.client.stats_for(r.stream.name).snapshot(), now) for r in running]
        known = [x for x in lefts if x is not None]
        return max(known) if known else None

    def _left(self, running: _Running, stats: dict[str, Any], now: float | None) -> float | None:
        elapsed = (self.clock() if now is None else now) - running.started
        per_minute = self.client.limiter.per_operation.get(running.stream.operation_id)
        return seconds_left(stats["requests"], running.planned, elapsed, per_minute, stats["wait_seconds"])

    def line(self, name: str, now: float | None = None) -> str:
        """`stream: 312 of ~1,378 requests, 9,810 rows, 604 s of rate-limit waits, about 42 min left`.
        A wait counts from the moment it is booked, so the figure may run ahead of the clock."""
        with self._lock:
            running = self._running.get(name)
        stats = self.client.stats_for(name).snapshot()
        made, planned = stats["requests"], running.planned if running else None
        if planned is None:
            requests = f"{made:,} requests (planning)"
        elif made <= planned:
            requests = f"{made:,} of ~{planned:,} requests"
        else:
            requests = f"{made:,} requests (~{planned:,} planned, more pages than one each)"
        left = self._left(running, stats, now) if running else None
        return (
            f"{name}: {requests}, {stats['records']:,} rows, {stats['wait_seconds']:,.0f} s of rate-limit waits, "
            + (f"about {duration(left)} left" if left is not None else "time left not known")
        )

    # -- from the thread that reports the run --------------------------------------------------

    def flush(self) -> None:
        """Say the queued messages, then a line for each stream whose last line is `interval` old."""
        if self.say is None:
            return
        now = self.clock()
        with self._lock:
            messages, self._messages = self._messages, []
            due = [r for r in self._running.values() if now - r.last_line >= self.interval]
            for r in due:
                r.last_line = now
        for level, text in messages:
            self.say(level, text)
        for r in sorted(due, key=lambda r: r.started):
            self.say(logging.INFO, self.line(r.stream.name, now))


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}" + ("" if n == 1 else "s")


def finished_line(outcome: StreamOutcome) -> str:
    """One line per finished stream for the run's log: what the materialization says, in words."""
    md = outcome.metadata
    name = outcome.stream.name
    if outcome.status == "unavailable":
        return f"{name}: unavailable ({md.get('segment/unavailable_reason', 'no reason given')})"
    changes = (
        f", +{md.get('segment/inserted', 0)} ~{md.get('segment/updated', 0)} -{md.get('segment/deleted', 0)}"
        if "segment/inserted" in md
        else ""
    )
    return (
        f"{name}: done, {md.get('dagster/row_count', 0):,} rows{changes}, "
        f"{_count(int(md.get('segment/api_requests', 0) or 0), 'request')}, {md.get('segment/seconds', 0):.1f} s"
        + (
            f" ({md['segment/rate_limit_wait_seconds']:,.0f} s of rate-limit waits)"
            if md.get("segment/rate_limit_wait_seconds")
            else ""
        )
    )
