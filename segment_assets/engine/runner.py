"""Running streams: one stream end to end (plan, read, write), and many at once.

Why threads inside one run (and not a process per stream): a full sync is bound by the
API's per-endpoint rate limits, not by CPU. A 2/min endpoint spends minutes waiting while
every other endpoint could be read, so streams whose parents are loaded start at once and
wait on their own budgets side by side. Threads share one client and one rate budget, cost
nothing to start (a Dagster step process costs seconds on a small machine), and keep one asset
per stream: the multi-asset that runs them (`orchestration/assets.py`) yields each stream's
materialization as soon as its table is committed.

A run (`StreamRun`) has one stop event and one fan-out pool. The stop is set when the caller
stops iterating `run_streams`, when an interrupt reaches the thread that iterates it, by the
CLI's signal handler and at process exit (`api/stops.py`); the client reads it before every
request and during every wait. A stopped run still reports every stream: what was committed
before or while stopping as "ok", the rest as "stopped".
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any, Literal

import pyarrow as pa

from segment_assets.api.client import RequestStats, SegmentClient
from segment_assets.api.errors import SegmentAuthError, SyncStopped
from segment_assets.api.streams import STREAMS, StreamSpec, UpdateMethod
from segment_assets.api.tables import table_def
from segment_assets.engine import progress
from segment_assets.engine.cycles import open_cycle, resumable
from segment_assets.engine.reading import FetchOutcome, ParentKeys, fetch_batches, plan_requests, stored_watermarks
from segment_assets.engine.windows import clamp_to_retention, iso, period_starts, window_queries, window_scope
from segment_assets.storage import KeyCheck, Target, WriteResult
from segment_assets.storage.base import seq_range_label

# "stopped": the run was stopped before the stream finished (or started); its table is as it was.
Status = Literal["ok", "unavailable", "failed", "skipped", "stopped"]


@dataclass
class StreamRun:
    """What every stream of one run shares: the client, the target, the run's one stop event and
    its one fan-out pool.

    The stop is the client's (`SegmentClient(stop=...)`): one flag, read by every request and wait
    of the run. The fan-out pool is created on first use and ended by close(); its threads live as
    long as the run, so each keeps one HTTP client for all of it.
    """

    client: SegmentClient
    target: Target
    run_id: str
    method_for: Callable[[StreamSpec], UpdateMethod]
    max_streams: int = 16
    fanout_concurrency: int = 8
    strict: bool = True
    stabilities: Sequence[str] = ("v1", "beta", "alpha")
    time_window: tuple[datetime, datetime] | None = None  # [start, end) of the run's partitions
    budget_for: Callable[[StreamSpec], int | None] = lambda stream: None  # requests per run (cycles.py)
    paced_streams: int = -1  # paced streams that may run beside the slots (run_streams); -1: as many as declared
    progress_interval: float = progress.PROGRESS_INTERVAL_SECONDS  # a running stream's line at most this often
    parents: ParentKeys = field(init=False)
    progress: progress.RunProgress = field(init=False)  # says nothing until given a `say` (orchestration/assets.py)
    _fanout: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)
    _fanout_guard: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.parents = ParentKeys(self.target)
        self.progress = progress.RunProgress(self.client, interval=self.progress_interval)

    @property
    def stop(self) -> threading.Event:
        return self.client.stop

    def fanout_pool(self) -> Executor:
        """The pool every fan-out stream of the run sends its requests to. Sized so that each
        stream that may run at once (`max_streams` holding slots, plus every paced stream, which
        holds none: `run_streams`) can keep `fanout_concurrency` requests in flight: a stream
        sleeping on a 2/min budget then holds only its own share. Threads start as they are needed."""
        paced = PACED_STREAMS if self.paced_streams < 0 else self.paced_streams
        with self._fanout_guard:
            if self._fanout is None:
                self._fanout = ThreadPoolExecutor(
                    max_workers=(max(1, self.max_streams) + paced) * max(1, self.fanout_concurrency),
                    thread_name_prefix="segment-fanout",
                )
            return self._fanout

    def paced(self, stream: StreamSpec) -> bool:
        """The client paces this stream's endpoint at a limit of its own (see `run_streams`)."""
        return stream.operation_id in self.client.limiter.per_operation

    def close(self) -> None:
        """End the fan-out pool (its requests end at once if `stop` is set); the caller closes the
        client, which closes every thread's HTTP client."""
        with self._fanout_guard:
            pool, self._fanout = self._fanout, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class StreamOutcome:
    stream: StreamSpec
    status: Status
    metadata: dict[str, Any] = field(default_factory=dict)
    key_check: KeyCheck | None = None
    error: BaseException | None = None
    messages: list[tuple[int, str]] = field(default_factory=list)  # (logging level, text) for the run log
    new_undocumented: list[str] | None = None  # fields the API sent undocumented for the first time (None: not read)
    undocumented: list[str] = field(default_factory=list)  # every undocumented field seen so far

    def log(self, level: int, text: str) -> None:
        self.messages.append((level, text))


def sync_stream(stream: StreamSpec, run: StreamRun, parent_unavailable: str | None = None) -> StreamOutcome:
    """Read one stream and write its table; never raises (the outcome carries the error)."""
    started = time.monotonic()
    out = StreamOutcome(stream, "ok")
    progress.emit("stream_started", stream)
    run.progress.started(stream)
    try:
        _sync(stream, run, parent_unavailable, out)
    except BaseException as exc:
        out.status, out.error = "failed", exc
        # The requests of a stream that failed count as much as those of one that was written.
        out.metadata.setdefault("segment/api_requests", run.client.stats_for(stream.name).snapshot()["requests"])
    finally:
        run.progress.ended(stream)
    out.metadata["segment/seconds"] = round(time.monotonic() - started, 3)
    return out


def _sync(stream: StreamSpec, run: StreamRun, parent_unavailable: str | None, out: StreamOutcome) -> None:
    table = table_def(stream.name)
    target = run.target
    method = run.method_for(stream)
    md = out.metadata
    md.update(
        {
            "dagster/table_name": target.table_name(table.name),
            "segment/table_uri": target.table_uri(table.name),
            "segment/operation_id": stream.operation_id,
            "segment/update_method": method.value,
        }
    )

    def unavailable(why: str) -> None:
        target.ensure_table(table)
        out.status = "unavailable"
        out.key_check = target.check_primary_key(table)
        md.update(
            {
                "segment/status": "unavailable",
                "segment/unavailable_reason": why,
                "dagster/row_count": out.key_check.rows,
            }
        )
        md.setdefault("segment/api_requests", 0)
        out.log(logging.WARNING, f"{stream.name}: stream unavailable, table left as it was: {why}")

    if parent_unavailable:
        return unavailable(parent_unavailable)
    if stream.stability not in run.stabilities:
        return unavailable(
            f"{stream.stability} endpoints are switched off in configuration (stabilities={list(run.stabilities)})"
        )
    window = chunks = None
    if stream.windowing:
        if run.time_window is None:
            raise ValueError(f"stream {stream.name} is partitioned: materialize it with a partition or a range")
        md["segment/window"] = f"{iso(run.time_window[0])} .. {iso(run.time_window[1])}"
        window = clamp_to_retention(stream.windowing, *run.time_window)
        if window is None:
            return unavailable(
                f"the window is older than the API's {stream.windowing.retention_days}-day retention: "
                "nothing was requested and rows already loaded for it are kept"
            )
        chunks = window_queries(stream.windowing, *window)

    client = run.client
    stats = client.stats_for(stream.name)
    before = stats.snapshot()
    # A stream whose parent's list carries its records requests only the parents whose list was cut.
    inline = run.parents.inline(stream) if stream.inline else None
    # A resumable stream learns from the target how many parents it has before it reads any: a
    # big fan-out (740,000 properties) never lists them all in this process.
    cycle = open_cycle(stream, table, target, run.budget_for(stream)) if resumable(stream, method) else None
    if cycle:
        out.log(
            logging.INFO,
            f"{stream.name}: {cycle.state.parents_total} parents exceed one run's budget of {cycle.budget} "
            f"requests: reading {len(cycle.chunk)} of cycle {cycle.state.cycle} "
            f"({cycle.state.parents_done} done before this run)",
        )
        parents = cycle.chunk
    else:
        parents = inline.requested if inline else run.parents.rows(stream)
    requests = plan_requests(stream, parents, chunks)
    run.progress.planned(stream, len(requests))
    fetch = FetchOutcome()
    shaper = table.shaper(strict=run.strict)
    watermarks = stored_watermarks(stream, target) if method is UpdateMethod.WATERMARK else None
    batches = fetch_batches(
        stream, client, requests, fetch, run.fanout_pool(), run.fanout_concurrency, shaper, watermarks
    )
    if inline:
        batches = itertools.chain(inline.batches(shaper), batches)
    # Knowing a stream is refused before the write keeps a gated stream's old table intact.
    staged = _peek(batches)
    if fetch.fully_unavailable:
        _request_stats(md, stats, before)
        return unavailable(fetch.unavailable[0])
    if window is not None and stream.windowing:
        result = target.replace_window(
            table, staged, time_column=stream.windowing.time_column, start=window[0], end=window[1], run_id=run.run_id
        )
    elif cycle:
        result = cycle.write(staged, run.run_id)
        md.update(cycle.metadata())
    elif method is UpdateMethod.WATERMARK:
        result = target.upsert(table, staged, run_id=run.run_id)
    else:
        result = target.write_snapshot(table, staged, method=method, run_id=run.run_id)
    _request_stats(md, stats, before)
    if inline:
        md["segment/inline_parents"] = inline.complete_count  # counted as the write read them
    md.update(_write_metadata(result))
    whole = run.time_window
    if whole is not None and stream.windowing and len(period_starts(stream.windowing.partitioning, *whole)) > 1:
        times = target.read_arrow(table.name, [stream.windowing.time_column]).column(0)
        md.update(window_scope(stream.windowing, *whole, times))
    md["segment/parameter_sets"] = len(requests)
    if stream.watermark and method is UpdateMethod.WATERMARK:
        md["segment/watermark_stops"] = fetch.watermark_stops
    if fetch.parents_gone:
        md["segment/parents_gone"] = fetch.parents_gone
    _schema_drift(stream, target, shaper.undocumented, out)
    if shaper.invalid_values:
        md["segment/invalid_values"] = dict(shaper.invalid_values)
        out.log(
            logging.WARNING,
            f"{stream.name}: values that are not what the API schema says were loaded as NULL: "
            f"{dict(shaper.invalid_values)}",
        )
    if shaper.missing_required:
        md["segment/missing_required_fields"] = dict(shaper.missing_required)
        out.log(
            logging.WARNING,
            f"{stream.name}: records lacked required fields, loaded as NULL: {dict(shaper.missing_required)}",
        )
    if fetch.unavailable_count:
        md["segment/unavailable_parameter_sets"] = fetch.unavailable_count
        md["segment/unavailable_example"] = fetch.unavailable[0]
    out.key_check = result.key_check
    # The one summary line per stream is said by whoever reports the outcome (`progress.finished_line`).


def _schema_drift(stream: StreamSpec, target: Target, seen: set[str], out: StreamOutcome) -> None:
    """Compare the undocumented fields of this read with those of earlier runs (kept in the
    target's state), so the schema-drift check names what the API started sending."""
    key = f"undocumented:{stream.table}"
    known = set(json.loads(target.read_state(key) or "[]"))
    out.new_undocumented = sorted(seen - known)
    out.undocumented = sorted(seen | known)
    if out.new_undocumented:
        target.write_state(key, json.dumps(out.undocumented))
        out.log(
            logging.WARNING,
            f"{stream.name}: the API sent fields its schema does not document: "
            f"{', '.join(out.new_undocumented)} (kept in the _extra column)",
        )


def _peek(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Pull the first batch before the target is touched, so a refused stream is known up front."""
    first = next(batches, None)

    def chain() -> Iterator[pa.RecordBatch]:
        if first is not None:
            yield first
        yield from batches

    return chain()


def _request_stats(md: dict[str, Any], stats: RequestStats, before: Mapping[str, Any]) -> None:
    after = stats.snapshot()
    md["segment/api_requests"] = after["requests"] - before["requests"]
    md["segment/pages"] = after["pages"] - before["pages"]
    md["segment/retries"] = after["retries"] - before["retries"]
    md["segment/rate_limited_429"] = after["rate_limited"] - before["rate_limited"]
    md["segment/rate_limit_waits"] = after["rate_limit_waits"] - before["rate_limit_waits"]
    md["segment/rate_limit_wait_seconds"] = round(after["wait_seconds"] - before["wait_seconds"], 3)


def _write_metadata(result: WriteResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "dagster/row_count": result.rows,
        "segment/rows_read": result.staged,
        "segment/inserted": result.inserted,
        "segment/updated": result.updated,
        "segment/deleted": result.deleted,
        "segment/change_rows": result.change_rows,
        "segment/write_seconds": round(result.seconds, 3),
    }
    label = seq_range_label(result.change_seq_first, result.change_seq_last)
    if label:
        out["segment/change_seq_range"] = label
    if result.version is not None:
        out["segment/table_version"] = result.version
    return out


# -- many streams at once --------------------------------------------------------------------


@cache
def critical_path_minutes(name: str) -> float:
    """Minutes of rate-limit budget on the longest chain below `name` (per request), so the
    streams that feed the slowest endpoints start first."""
    stream = STREAMS[name]
    own = 1.0 / stream.rate_limit_per_minute if stream.rate_limit_per_minute else 0.0
    below = [critical_path_minutes(s.name) for s in STREAMS.values() if s.parent and s.parent.stream == name]
    return own + max(below, default=0.0)


def paced_by_declaration(stream: StreamSpec) -> bool:
    """The endpoint has a documented limit of its own (what the client paces when pacing is on)."""
    return bool(stream.rate_limit_per_minute)


PACED_STREAMS = sum(1 for s in STREAMS.values() if paced_by_declaration(s))  # at most this many run beside the slots


class StreamSlots:
    """Which ready stream starts next, and when.

    `max_parallel` slots bound the streams that read as fast as the network allows. A *paced*
    stream, one whose endpoint has a limit of its own, takes no slot: it spends its time asleep on
    its budget, and a sleeper holding a slot kept the run's longest chain (the space-schema sample
    values, 25/min) from starting for a whole minute while 2/min and 25/min fan-outs held every
    slot. Its load is bounded by its limit, and there are only so many such endpoints
    (`PACED_STREAMS`). Streams waiting for a slot start longest remaining chain of rate-limited
    work first (`critical_path_minutes`), not in the order they became ready.

    A stream's end is handled in its own thread (its children made ready, then its slot handed
    on), not in the thread that reports outcomes, which may be busy writing Dagster's event log.
    """

    def __init__(
        self,
        pool: Executor,
        max_parallel: int,
        paced: Callable[[StreamSpec], bool],
        start: Callable[[StreamSpec, str | None], StreamOutcome],
        ended: Callable[[StreamSpec, StreamOutcome | None, BaseException | None], None],
    ) -> None:
        self._pool, self._paced, self._start, self._ended = pool, paced, start, ended
        self._free = max(1, max_parallel)
        self._waiting: list[tuple[float, int, StreamSpec, str | None]] = []  # a heap
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._closed = False

    def ready(self, stream: StreamSpec, parent_unavailable: str | None) -> None:
        with self._lock:
            if self._paced(stream):
                self._launch(stream, parent_unavailable, holds_slot=False)
            else:
                heapq.heappush(
                    self._waiting, (-critical_path_minutes(stream.name), next(self._order), stream, parent_unavailable)
                )
                self._hand_out()

    def close(self) -> None:
        """Start nothing more (the pool is being shut down)."""
        with self._lock:
            self._closed = True

    def _hand_out(self) -> None:
        while self._free > 0 and self._waiting and not self._closed:
            _, _, stream, why = heapq.heappop(self._waiting)
            self._free -= 1
            self._launch(stream, why, holds_slot=True)

    def _launch(self, stream: StreamSpec, parent_unavailable: str | None, holds_slot: bool) -> None:
        if not self._closed:
            self._pool.submit(self._run, stream, parent_unavailable, holds_slot)

    def _run(self, stream: StreamSpec, parent_unavailable: str | None, holds_slot: bool) -> None:
        # Everything after the stream runs here too, never in the caller's thread, where an
        # interrupt may land at any moment.
        outcome: StreamOutcome | None = None
        error: BaseException | None = None
        try:
            outcome = self._start(stream, parent_unavailable)
        except BaseException as exc:  # raised in the caller's thread
            error = exc
        try:
            self._ended(stream, outcome, error)  # first: children it makes ready compete for its slot
        finally:
            if holds_slot:
                with self._lock:
                    self._free += 1
                    self._hand_out()


def run_streams(
    streams: Sequence[StreamSpec],
    sync_one: Callable[[StreamSpec, str | None], StreamOutcome],
    *,
    max_parallel: int,
    stop: threading.Event,
    paced: Callable[[StreamSpec], bool] = paced_by_declaration,
    tick: Callable[[], None] = lambda: None,
) -> Generator[StreamOutcome, None, None]:
    """Run `streams` on threads, each as soon as its parent (when also selected) is written, and
    yield their outcomes in the caller's thread as they finish: one outcome per stream. At most
    `max_parallel` streams that are not `paced` run at once, the longest chain first; a paced one
    starts at once (`StreamSlots`). `tick` is called in the caller's thread at least every 0.2 s
    while streams run (it says the run's progress: `progress.RunProgress.flush`).

    A parent that is unavailable makes its children unavailable (named in the reason) without a
    request; a failed parent skips its children. Once `stop` is set (by the caller, a signal
    handler, process exit, or an interrupt raised in this thread while it waits) nothing new
    starts, running streams end at their next request or wait, and every stream still gets its
    outcome: "ok" for one whose table was committed, even while stopping, "stopped" for one
    that did not finish or never started. A refused token sets `stop` too. Either way the
    SegmentAuthError or the interrupt is raised after the last outcome. If the caller stops
    iterating, `stop` is set and the running streams end before this generator closes.
    """
    selected = {s.name: s for s in streams}
    children: dict[str, list[StreamSpec]] = {}
    for s in streams:
        if s.parent and s.parent.stream in selected:
            children.setdefault(s.parent.stream, []).append(s)
    done: queue.Queue[tuple[StreamSpec, StreamOutcome | None, BaseException | None, bool]] = queue.Queue()
    ended: dict[str, StreamOutcome] = {}  # written by the stream threads: what an interrupt cannot lose
    ready: deque[StreamOutcome] = deque()  # outcomes to yield, in order
    reported: set[str] = set()
    outstanding = 0  # streams started or waiting for a slot whose outcome is not taken yet
    counting = threading.Lock()  # children are counted in their parent's thread
    ending: BaseException | None = None  # raised once every outcome is out
    pool = ThreadPoolExecutor(
        max_workers=max(1, max_parallel) + sum(1 for s in streams if paced(s)), thread_name_prefix="segment-stream"
    )

    def start(stream: StreamSpec, parent_unavailable: str | None) -> StreamOutcome:
        if stop.is_set():
            outcome = _not_started(stream, "the run was stopped")
        else:
            outcome = sync_one(stream, parent_unavailable)
        ended[stream.name] = outcome
        return outcome

    def on_end(stream: StreamSpec, outcome: StreamOutcome | None, error: BaseException | None) -> None:
        """In the thread of the stream that ended: its children are made ready here, before its
        outcome is reported (reporting writes Dagster's event log in the caller's thread, a tenth
        of a second or more per stream, and a fan-out whose parent waited its turn there would
        wait with it) and before its slot is handed to another stream."""
        nonlocal outstanding
        kids: list[StreamSpec] = []
        why: str | None = None
        if outcome is not None:
            outcome = settled(outcome)
            if isinstance(outcome.error, SegmentAuthError):
                stop.set()
            if not stop.is_set() and outcome.status in ("ok", "unavailable"):
                kids = children.get(stream.name, [])
            if outcome.status == "unavailable":
                why = f"its parent stream {stream.name} is unavailable: "
                why += outcome.metadata.get("segment/unavailable_reason", "")
        with counting:  # before the parent's outcome can be taken: the run is not over meanwhile
            outstanding += len(kids)
        done.put((stream, outcome, error, bool(kids)))  # first: the parent's outcome comes before its children's
        submit(kids, why, counted=True)

    slots = StreamSlots(pool, max_parallel, paced, start, on_end)

    def submit(batch: Sequence[StreamSpec], parent_unavailable: str | None = None, counted: bool = False) -> None:
        nonlocal outstanding
        for s in sorted(batch, key=lambda s: -critical_path_minutes(s.name)):
            if not counted:
                with counting:
                    outstanding += 1
            slots.ready(s, parent_unavailable)

    def not_run(parent: StreamOutcome) -> Iterator[StreamOutcome]:
        for child in children.get(parent.stream.name, ()):
            if parent.status == "failed":
                out = StreamOutcome(
                    child, "skipped", error=RuntimeError(f"not read: its parent stream {parent.stream.name} failed")
                )
            else:
                out = _not_started(child, f"the run was stopped before its parent stream {parent.stream.name} ended")
            yield out
            yield from not_run(out)

    def settled(outcome: StreamOutcome) -> StreamOutcome:
        if isinstance(outcome.error, SyncStopped) and stop.is_set():
            outcome.status = "stopped"
        return outcome

    def take() -> None:
        """Wait for the next stream to end; queue its outcome, and its children's if they will not run."""
        nonlocal outstanding, ending
        try:
            stream, result, error, kids_started = done.get(timeout=0.2)  # short waits: this thread stays interruptible
        except queue.Empty:
            return
        with counting:
            outstanding -= 1
        if error is not None or result is None:
            raise error or RuntimeError(f"stream {stream.name} ended without an outcome")
        outcome = settled(result)
        if isinstance(outcome.error, SegmentAuthError) and ending is None:
            stop.set()
            ending = outcome.error
        if not kids_started and children.get(stream.name):
            ready.extend([outcome, *not_run(outcome)])
            return
        ready.append(outcome)

    finished = False
    try:
        try:
            # A root that ends at once starts its children in this thread (its done callback).
            submit([s for s in streams if not (s.parent and s.parent.stream in selected)])
        except Exception:
            raise
        except BaseException as exc:
            stop.set()
            ending = exc
        while (ending is None or isinstance(ending, Exception)) and (outstanding or ready):
            handing: StreamOutcome | None = None
            try:
                tick()
                if not ready:
                    take()
                    continue
                handing = ready.popleft()
                reported.add(handing.stream.name)
            except Exception:
                raise
            except BaseException as exc:
                stop.set()
                ending = exc
                if handing is not None:
                    reported.discard(handing.stream.name)  # not handed out: read back below
                break
            yield handing
        if ending is not None and not isinstance(ending, Exception):
            # Interrupted anywhere in the bookkeeping above (even inside pool.submit): what was
            # queued may be half done, so the outcomes are read back from the streams themselves
            # once they have all ended.
            slots.close()
            pool.shutdown(wait=True, cancel_futures=True)  # a second interrupt here is not held back
            for s in streams:
                if s.name not in reported:
                    last = ended.get(s.name)
                    yield settled(last) if last else _not_started(s, "the run was stopped")
        finished = True
    finally:
        if not finished:
            stop.set()
        slots.close()
        pool.shutdown(wait=True, cancel_futures=True)
    if ending is not None:
        raise ending


def _not_started(stream: StreamSpec, why: str) -> StreamOutcome:
    return StreamOutcome(stream, "stopped", error=SyncStopped(f"not started: {why}"))
