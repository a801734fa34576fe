"""The runs of `segment-assets sync`: the workspace's own jobs (`segment_config`, `segment_daily`,
`segment_monthly`), executed in this process against the instance, one thread per job.

Concurrent, because the configuration run can wait minutes on rate limits (2 requests a minute
for warehouse syncs) while the time-based runs need seconds. The time-based runs start as soon as
the configuration tables they read their parents from (sources, destinations, their connections)
are written, not when the whole configuration run ends; with no such parent selected, at once.

Two things decide how the runs start:
- Dagster configures Python logging (`logging.config.dictConfig`) as each run starts. Doing so
  while another run's thread emits an event can deadlock the two (logging's module lock against
  the emitting handler's lock), so runs start only while every running run is held in one of our
  progress callbacks, where it emits nothing: a run starts others, each new run waits in its
  `run_started` callback until the last of the batch has started, then all proceed.
- Dagster installs signal handlers only in the main thread: runs in other threads leave them to
  the CLI's SIGTERM/SIGINT handler, which stops every run's streams (`stops.stop_all`); each run
  then ends with its committed tables reported, and `SyncRuns.run` raises KeyboardInterrupt once
  all have. A refused token stops every run, and no run starts after it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dagster import AssetKey, DagsterInstance, ExecuteInProcessResult, JobDefinition

    from segment_assets.api.streams import StreamSpec
    from segment_assets.engine.progress import RunProgress
    from segment_assets.engine.runner import StreamOutcome

CLI_TRIGGER = "cli"  # the value of the runs' `segment/trigger` tag (schedules: "schedule")


@dataclass(eq=False)
class PlannedRun:
    """One job run: the job, the partition (None: not partitioned) and the streams it reads."""

    job: JobDefinition
    partition_key: str | None
    streams: list[StreamSpec]
    asset_keys: list[AssetKey]
    # Streams of the first run to be reported before this run starts. The time-based runs share one
    # set (their parents), so they start together, in one batch.
    needs: set[str] = field(default_factory=set)
    result: ExecuteInProcessResult | None = None
    error: BaseException | None = None  # raised by Dagster itself (not a step failure)
    thread: threading.Thread | None = None
    started: threading.Event = field(default_factory=threading.Event)  # its streams began, or it ended
    ended: threading.Event = field(default_factory=threading.Event)  # its thread has nothing left to do

    def owns(self, streams: list[StreamSpec]) -> bool:
        return bool(streams) and streams[0].name in {s.name for s in self.streams}


@dataclass
class SyncRuns:
    """Runs `runs` (the first, if any, is the configuration run the others may wait on); `outcomes`
    collects what their streams report (this is a `progress.Observer`)."""

    runs: list[PlannedRun]
    instance: DagsterInstance
    tags: Mapping[str, str]
    run_config: Mapping[str, Any]
    outcomes: list[StreamOutcome] = field(default_factory=list)
    _finished: set[str] = field(default_factory=set)
    _pending: list[PlannedRun] = field(default_factory=list)
    _batch_done: threading.Event = field(default_factory=threading.Event)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _launching: threading.Lock = field(default_factory=threading.Lock)

    # -- progress.Observer (called in the runs' threads) -------------------------------------

    def run_started(self, run: RunProgress, streams: list[StreamSpec]) -> None:
        planned = next((r for r in self.runs if r.owns(streams)), None)
        if planned is None:
            return
        batch = self._batch_done
        planned.started.set()
        batch.wait()  # emit nothing while the other runs of its batch start

    def stream_started(self, stream: StreamSpec) -> None:
        pass

    def stream_finished(self, outcome: StreamOutcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)
            self._finished.add(outcome.stream.name)
        self._launch(ready_only=True)

    # -- running -------------------------------------------------------------------------------

    def run(self) -> None:
        """Every run to its end. KeyboardInterrupt (the CLI's signal handler, in this thread)
        stops them all; it is raised again once every run has ended.

        Waits on each run's `ended` event, never in `Thread.join`: on Python 3.11, KeyboardInterrupt
        raised inside `join` while the thread runs makes `join` release the thread's state lock and
        mark it stopped (the clean-up added for bpo-45274), so the interrupt would be handled while
        the run still executes."""
        self._pending = list(self.runs)
        try:
            self._launch(ready_only=True)
            self._wait_all()
        except KeyboardInterrupt:
            while True:
                try:
                    self.stop()
                    self._wait_all(and_stop=True)
                    break
                except KeyboardInterrupt:  # a second signal: the runs are ending already
                    continue
            raise

    def _wait_all(self, and_stop: bool = False) -> None:
        """Until every launched run has ended (a run that launches others ends after launching them)."""
        while True:
            running = [r for r in self.runs if r.thread is not None and not r.ended.is_set()]
            if not running:
                return
            running[0].ended.wait(0.25)
            if and_stop:
                self.stop()  # a run that registered its stop after the signal stops too

    def stop(self) -> None:
        from segment_assets.api import stops

        self._stopping.set()
        self._batch_done.set()
        stops.stop_all()

    def _launch(self, ready_only: bool) -> None:
        """Start the pending runs that may start (all of them if not `ready_only`), as one batch.
        Called where no run of this process emits events: the main thread before any run, a run's
        progress callback, or the first run's thread once its run has ended."""
        with self._launching:
            with self._lock:
                if self._stopping.is_set():
                    self._pending.clear()
                    return
                ready = [r for r in self._pending if not ready_only or r.needs <= self._finished]
                if not ready:
                    return
                self._pending = [r for r in self._pending if r not in ready]
                batch = self._batch_done = threading.Event()
            for r in ready:
                r.thread = threading.Thread(target=self._execute, args=(r,), name=f"segment-sync-{r.job.name}")
                r.thread.start()
                r.started.wait()
            batch.set()

    def _execute(self, planned: PlannedRun) -> None:
        try:
            self._execute_run(planned)
        finally:
            planned.started.set()
            planned.ended.set()

    def _execute_run(self, planned: PlannedRun) -> None:
        try:
            planned.result = planned.job.execute_in_process(
                instance=self.instance,
                partition_key=planned.partition_key,
                asset_selection=planned.asset_keys,
                raise_on_error=False,
                tags=dict(self.tags),
                run_config=dict(self.run_config),
            )
            if "SegmentAuthError" in failed_error_classes(planned.result):
                self.stop()  # a refused token stops the whole sync: no further request, no further run
        except BaseException as exc:  # Dagster's own error, reported by the caller
            planned.error = exc
        finally:
            planned.started.set()
        if planned is self.runs[0]:
            self._launch(ready_only=False)  # what waited on it starts now, whatever its parents did


def failed_error_classes(result: ExecuteInProcessResult) -> set[str]:
    return {root_error(e).cls_name for e in result.all_events if e.is_step_failure}


def root_error(event: Any) -> Any:
    error = event.event_specific_data.error
    while error.cause is not None:  # Dagster wraps the stream's own error; show that one
        error = error.cause
    return error


def summary_rows(outcomes: Sequence[StreamOutcome]) -> list[dict[str, Any]]:
    """One row per stream a run reported, failed ones included (with the requests they made)."""
    rows = []
    for outcome in outcomes:
        md = outcome.metadata
        written = outcome.status in ("ok", "unavailable")
        rows.append(
            {
                "stream": outcome.stream.name,
                "rows": md.get("dagster/row_count", 0) if written else 0,
                "requests": md.get("segment/api_requests", 0),
                "seconds": md.get("segment/seconds", 0.0),
                "status": md.get("segment/status", "ok") if written else outcome.status,
                "changes": f"+{md.get('segment/inserted', 0)} ~{md.get('segment/updated', 0)} "
                f"-{md.get('segment/deleted', 0)}"
                if written
                else "-",
            }
        )
    return rows
