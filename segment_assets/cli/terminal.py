"""The `segment-assets sync` view: a live status line on a terminal, one line per stream when
the output is a pipe or a file (CI logs), and the summary table at the end. Dagster's own log
lines are kept for `--verbose` and the UI."""

from __future__ import annotations

import shutil
import sys
import threading
import time
from typing import IO, TYPE_CHECKING, Any

from segment_assets.engine.progress import duration

if TYPE_CHECKING:
    from segment_assets.api.streams import StreamSpec
    from segment_assets.engine.progress import RunProgress
    from segment_assets.engine.runner import StreamOutcome


class TerminalProgress:
    """A `progress.Observer` drawing what the sync does."""

    def __init__(self, total: int, out: IO[str] = sys.stdout, live: bool | None = None, interval: float = 0.25) -> None:
        self.out = out
        self.live = out.isatty() if live is None else live
        self.total = total
        self.done = 0
        self.rows = 0
        self.running: dict[str, float] = {}
        self.runs: list[RunProgress] = []
        self.started = time.monotonic()
        self.interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- progress.Observer -------------------------------------------------------------------

    def run_started(self, run: RunProgress, streams: list[StreamSpec]) -> None:
        with self._lock:
            self.runs.append(run)

    def stream_started(self, stream: StreamSpec) -> None:
        with self._lock:
            self.running[stream.name] = time.monotonic()

    def stream_finished(self, outcome: StreamOutcome) -> None:
        md = outcome.metadata
        with self._lock:
            self.running.pop(outcome.stream.name, None)
            self.done += 1
            self.rows += int(md.get("dagster/row_count", 0) or 0)
        if not self.live:
            status = outcome.status if outcome.status != "ok" else "done"
            detail = (
                f"{md.get('dagster/row_count', 0)} rows, {md.get('segment/api_requests', 0)} requests"
                if outcome.status in ("ok", "unavailable")
                else str(outcome.error)
            )
            self._write(f"[{self.done}/{self.total}] {outcome.stream.name}: {status} ({detail})\n")

    # -- drawing -----------------------------------------------------------------------------

    def __enter__(self) -> TerminalProgress:
        if self.live:
            self._thread = threading.Thread(target=self._draw_loop, name="segment-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
            self._write("\r\033[K")

    def status_line(self) -> str:
        with self._lock:
            running = sorted(self.running, key=self.running.get)  # type: ignore[arg-type]
            runs = list(self.runs)
            done, rows = self.done, self.rows
        clients = [r.client for r in runs]
        stats = [c.stats.snapshot() for c in clients]
        # The run's own estimate, the one its progress lines in the event log give.
        lefts = [x for x in (r.seconds_left() for r in runs) if x is not None]
        requests = sum(s["requests"] for s in stats)
        waited = sum(s["wait_seconds"] for s in stats)
        current = ", ".join(running[:2]) + (f" +{len(running) - 2}" if len(running) > 2 else "")
        pages = sum(c.stats_for(n).snapshot()["pages"] for c in clients for n in running[:2])
        line = (
            f"{done}/{self.total} streams · {requests:,} requests · {rows:,} rows · "
            f"rate-limit waits {waited:,.0f}s · {time.monotonic() - self.started:,.0f}s"
            + (f" · about {duration(max(lefts))} left" if lefts else "")
            + (f" · now: {current} ({pages} pages)" if running else "")
        )
        width = shutil.get_terminal_size((120, 20)).columns
        return line[: width - 1]

    def _draw_loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._write("\r\033[K" + self.status_line())

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()


def print_summary(rows: list[dict[str, Any]], seconds: float, out: IO[str]) -> None:
    print(f"\n{'stream':44} {'rows':>9} {'requests':>9} {'seconds':>8}  changes", file=out)
    for r in sorted(rows, key=lambda r: r["stream"]):
        status = "" if r["status"] == "ok" else f"  ({r['status']})"
        print(
            f"{r['stream']:44} {r['rows']:>9} {r['requests']:>9} {r['seconds']:>8.2f}  {r['changes']}{status}", file=out
        )
    print(
        f"{'TOTAL':44} {sum(r['rows'] for r in rows):>9} {sum(r['requests'] for r in rows):>9} {seconds:>8.2f}",
        file=out,
    )
