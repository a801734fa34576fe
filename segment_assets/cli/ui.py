"""`segment-assets ui`: the Dagster UI and daemon (`dagster dev`), with a terminal that keeps what
helps: warnings and errors, the services' start and stop, each run's own lines, and one line per
backfill when it ends.

Why not a Dagster setting: `dagster dev --log-level` is one level for every service. At `info` the
backfill daemon writes its whole target (every asset and partition range) three or four times per
iteration, every 30 s, for as long as a backfill runs: hundreds of lines for one "Materialize
all"; at `warning` it says nothing about backfills at all, and Dagster has no per-logger level
(its issue #4299). So the services log at `info` in Dagster's structured form (`--log-format
json`, one JSON object per line, with the logger's name and the backfill's id), and this picks
the records to show. Lines that are not such records (the runs' own console lines, Python
warnings, tracebacks) are shown as they come.

`--log-level LEVEL` or `--log-format FORMAT` given by the user turn the selection off: then
`dagster dev` prints what it prints.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import IO, Any

# `dagster dev` is marked superseded by `dg dev`, which runs the very same implementation for a
# workspace file: that one warning is ignored, nothing else.
DAGSTER_DEV_WARNING_FILTER = "ignore:Function `dev_command` is superseded:FutureWarning"
SERVICE_LOGGERS = frozenset({"dagster", "dagster-webserver"})  # start, serving URL, shut down
SHOWN_LEVELS = frozenset({"warning", "error", "critical", "exception"})
# How the backfill daemon says a backfill ended: an asset backfill's last iteration (or its
# cancellation), a job backfill's completion.
_ASSET_BACKFILL_END = re.compile(
    r"completed (?:cancellation )?iteration with status BulkActionStatus\."
    r"(COMPLETED_SUCCESS|COMPLETED_FAILED|COMPLETED|FAILED|CANCELED)\b"
)
_JOB_BACKFILL_END = re.compile(r"^Backfill completed for \S+ for (\d+) partitions")
_SUBMITTED_RUN = re.compile(r"^Submitted run ")
_SERVING = re.compile(r"^Serving dagster-webserver on (\S+)")
_ENDINGS = {
    "COMPLETED_SUCCESS": "succeeded",
    "COMPLETED": "completed",
    "COMPLETED_FAILED": "completed with failed runs",
    "FAILED": "failed",
    "CANCELED": "canceled",
}


class ServicesConsole:
    """Turns `dagster dev --log-format json` output into the terminal's lines, one input line at a
    time (`line` returns what to print, or None). Holds what it must remember across lines: the
    UI's address and, per backfill still running, its runs submitted and whether its end was said."""

    def __init__(self) -> None:
        self.url: str | None = None
        self.backfill_runs: dict[str, int] = {}
        self.backfills_ended: set[str] = set()

    def line(self, text: str) -> str | None:
        record = _record(text)
        if record is None:
            return text
        event = str(record.get("event", ""))
        logger = str(record.get("logger", ""))
        level = str(record.get("level", "info")).lower()
        if logger == "dagster-webserver" and (serving := _SERVING.match(event)):
            self.url = serving.group(1)
        backfill = record.get("backfill_id")
        if level in SHOWN_LEVELS:
            return _format(record, logger, level, event)
        if isinstance(backfill, str):
            return self._backfill(record, backfill, event)
        if logger in SERVICE_LOGGERS:
            return _format(record, logger, level, event)
        return None

    def _backfill(self, record: dict[str, Any], backfill: str, event: str) -> str | None:
        if _SUBMITTED_RUN.match(event):
            self.backfill_runs[backfill] = self.backfill_runs.get(backfill, 0) + 1
            return None
        if backfill in self.backfills_ended:
            return None
        if asset_end := _ASSET_BACKFILL_END.search(event):
            ending = _ENDINGS[asset_end.group(1)]
        elif job_end := _JOB_BACKFILL_END.match(event):
            ending = f"completed, {job_end.group(1)} partitions"
        else:
            return None
        self.backfills_ended.add(backfill)
        runs = self.backfill_runs.pop(backfill, 0)
        said = f"backfill {backfill} {ending}"
        if runs:
            said += f" ({runs} run{'s' if runs != 1 else ''} launched)"
        if self.url:
            said += f": {self.url.rstrip('/')}/runs/b/{backfill}"
        return _format(record, "dagster.daemon.BackfillDaemon", "info", said)


def _record(text: str) -> dict[str, Any] | None:
    if not text.startswith("{"):
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) and "event" in record and "logger" in record else None


def _format(record: dict[str, Any], logger: str, level: str, event: str) -> str:
    """Dagster's own console layout (`2026-12-02 19:56:15 +0000 - dagster - INFO - ...`), with the
    traceback of an error record when it carries one."""
    stamp = str(record.get("timestamp", ""))
    try:
        # Local time, as the runs' own lines (Dagster's console logger) show it.
        stamp = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone().strftime("%Y-%m-%d %H:%M:%S %z")
    except ValueError:
        pass
    text = f"{stamp} - {logger} - {level.upper()} - {event}"
    for detail in ("exception", "exc_info", "stack"):
        if isinstance(record.get(detail), str) and record[detail] not in ("", "None"):
            text += "\n" + record[detail]
    return text


def dagster_dev_argv(args: Sequence[str]) -> tuple[list[str], bool]:
    """The `dagster dev` command for `segment-assets ui ARGS`, and whether its output is selected
    (not when the user chose a log level or format)."""
    chosen = any(a.split("=")[0] in ("--log-level", "--log-format") for a in args)
    base = [sys.executable, "-W", DAGSTER_DEV_WARNING_FILTER, "-m", "dagster", "dev"]
    if chosen:
        return [*base, *args], False
    return [*base, "--log-format", "json", "--log-level", "info", *args], True


def relay(source: IO[str], out: IO[str], console: ServicesConsole | None) -> None:
    """Every line of `source` to `out`, through `console`, until `source` ends. Once `out` is gone
    (`./run ui | head`, a closed terminal) the lines are still read and dropped: a full pipe would
    otherwise block `dagster dev` and its runs on their next line."""
    shown_to: IO[str] | None = out
    for raw in source:
        text = raw.rstrip("\n")
        shown = console.line(text) if console is not None else text
        if shown is not None and shown_to is not None:
            try:
                shown_to.write(shown + "\n")
                shown_to.flush()
            except (OSError, ValueError):  # EPIPE, EIO; ValueError: the stream was closed
                shown_to = None


def main(args: Sequence[str]) -> int:
    argv, selected = dagster_dev_argv(args)
    # Ctrl-C reaches `dagster dev` and this process alike (one process group): dagster dev shuts
    # its services down, and this keeps relaying until it has. SIGTERM (from a supervisor) is
    # passed on. The handlers are set before the child starts: a signal this process ignores
    # (a shell's background job ignores SIGINT) would stay ignored in the child, whereas a
    # handler goes back to the default there.
    started: list[subprocess.Popen[str]] = []

    def pass_on(signum: int, frame: object) -> None:
        for child in started:
            child.send_signal(signum)

    signal.signal(signal.SIGINT, lambda signum, frame: None)
    signal.signal(signal.SIGTERM, pass_on)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    started.append(proc)
    assert proc.stdout is not None
    relaying = threading.Thread(
        target=relay, args=(proc.stdout, sys.stdout, ServicesConsole() if selected else None), daemon=True
    )
    relaying.start()
    code = proc.wait()
    # A run worker that outlives `dagster dev` keeps the pipe open: its last lines get a moment,
    # not a wait for it to end.
    relaying.join(timeout=5)
    return code
