"""`segment-assets ui`: what its terminal keeps of `dagster dev`'s output.

`snapshots/dagster_dev_backfill.log` is what `dagster dev --log-format json --log-level info`
(Dagster 1.13.27) printed for one three-day backfill of `audit_events` from start to Ctrl-C,
recorded from a real run; `test_ui.py` checks the same against a live `dagster dev`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from segment_assets.cli.ui import ServicesConsole, dagster_dev_argv, relay
from segment_assets_tests.services import LOOPBACK, PROJECT_ROOT, free_port, wait_until

RECORDING = Path(__file__).resolve().parent / "snapshots" / "dagster_dev_backfill.log"
BACKFILL = "inrejrfw"


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The terminal shows local time, as Dagster's console lines do; these tests read it in UTC.
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def shown(lines: list[str]) -> list[str]:
    out = io.StringIO()
    relay(io.StringIO("".join(line + "\n" for line in lines)), out, ServicesConsole())
    return out.getvalue().splitlines()


def record(event: str, logger: str = "dagster.daemon.BackfillDaemon", level: str = "info", **extra: str) -> str:
    return json.dumps(
        {"event": event, "logger": logger, "level": level, "timestamp": "2026-12-02T19:56:48.6Z", **extra}
    )


def test_a_backfill_session_keeps_one_line_per_backfill_and_drops_the_lists() -> None:
    recorded = RECORDING.read_text().splitlines()
    lines = shown(recorded)

    backfill_records = [r for r in recorded if f'"backfill_id": "{BACKFILL}"' in r]
    assert len(backfill_records) > 10  # the daemon's own lines for this one backfill
    about_backfill = [line for line in lines if BACKFILL in line]
    assert about_backfill == [
        "2026-12-02 19:57:18 +0000 - dagster.daemon.BackfillDaemon - INFO - "
        f"backfill {BACKFILL} succeeded (1 run launched): http://127.0.0.1:45127/runs/b/{BACKFILL}"
    ]
    for listing in (
        "Asset partitions to request",
        "Backfill iteration summary",
        "Overall backfill status",
        "- segment/",
    ):
        assert not any(listing in line for line in lines), listing
    # The other daemons' routine lines go; the services' start and stop and the run's own line stay.
    assert not any(
        "QueuedRunCoordinatorDaemon" in line or "configured with the following daemons" in line for line in lines
    )
    assert "2026-12-02 19:56:15 +0000 - dagster - INFO - Launching Dagster services..." in lines
    assert any("Serving dagster-webserver on http://127.0.0.1:45127" in line for line in lines)
    assert any(line.endswith("audit_events: done, 99 rows, +99 ~0 -0, 1 request, 0.4 s") for line in lines)
    assert lines[-1].endswith("dagster - INFO - Dagster services shut down.")
    # Lines that are not Dagster's records (here Python's warning) pass as they are.
    assert lines[:2] == recorded[:2]
    assert len(lines) < len(recorded) / 2


def test_warnings_and_errors_are_shown_with_their_traceback_whatever_the_logger() -> None:
    lines = shown(
        [
            record(
                "Sensor tick failed", logger="dagster.daemon.SensorDaemon", level="error", exception="Traceback: boom"
            ),
            record("Backfill failed to evaluate", level="warning", backfill_id="abc"),
            record("Checking for new runs for sensor: s", logger="dagster.daemon.SensorDaemon"),
        ]
    )
    assert lines == [
        "2026-12-02 19:56:48 +0000 - dagster.daemon.SensorDaemon - ERROR - Sensor tick failed",
        "Traceback: boom",
        "2026-12-02 19:56:48 +0000 - dagster.daemon.BackfillDaemon - WARNING - Backfill failed to evaluate",
    ]


def test_times_are_local_as_in_the_runs_own_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    lines = shown([record("Launching Dagster services...", logger="dagster")])
    assert lines == ["2026-12-02 20:56:48 +0100 - dagster - INFO - Launching Dagster services..."]


def test_each_backfill_gets_its_own_single_line_whatever_way_it_ends() -> None:
    ended = "Asset backfill {} completed iteration with status BulkActionStatus.{}."
    lines = shown(
        [
            record(ended.format("one", "REQUESTED"), backfill_id="one"),
            record("Submitted run r1 for assets/checks segment/x", backfill_id="one"),
            record("Submitted run r2 for assets/checks segment/y", backfill_id="one"),
            record(ended.format("two", "REQUESTED"), backfill_id="two"),
            record(ended.format("one", "COMPLETED_FAILED"), backfill_id="one"),
            record(ended.format("one", "COMPLETED_FAILED"), backfill_id="one"),  # a later iteration says it again
            record(
                "Asset backfill two completed cancellation iteration with status BulkActionStatus.CANCELED.",
                backfill_id="two",
            ),
            record("Backfill completed for three for 4 partitions", backfill_id="three"),
        ]
    )
    assert [line.split(" - INFO - ")[1] for line in lines] == [
        "backfill one completed with failed runs (2 runs launched)",
        "backfill two canceled",
        "backfill three completed, 4 partitions",
    ]


def test_a_log_level_or_format_of_the_users_turns_the_selection_off() -> None:
    argv, selected = dagster_dev_argv(["-w", "workspace.yaml"])
    assert selected and argv[:2] == [sys.executable, "-W"]
    assert argv[-6:] == ["--log-format", "json", "--log-level", "info", "-w", "workspace.yaml"]
    for users in (["--log-level", "debug"], ["--log-format=rich"]):
        argv, selected = dagster_dev_argv(users)
        assert not selected and argv[-len(users) :] == users and argv.count("--log-level") <= 1


def _as_a_background_job() -> None:
    # What a shell does to a job started with `&`: SIGINT ignored, inherited across exec.
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.e2e
def test_ctrl_c_stops_dagster_dev_even_when_started_as_a_background_job(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    log = tmp_path / "ui.log"
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    argv = [sys.executable, "-m", "segment_assets", "ui", "-w", str(PROJECT_ROOT / "workspace.yaml")]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [*argv, "-h", LOOPBACK, "-p", str(free_port())],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=home,
            env=env,
            preexec_fn=_as_a_background_job,
        )
    try:
        wait_until(lambda: "Serving dagster-webserver" in log.read_text(), what="the webserver", timeout=180)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group
        assert proc.wait(timeout=120) == 0, log.read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    lines = log.read_text().splitlines()
    assert lines[-1].endswith("dagster - INFO - Dagster services shut down."), lines
    assert not [line for line in lines if line.startswith("{")], "every service record is shown as a line"


class _GoneAfter(io.StringIO):
    """An output that breaks like a closed pipe after `lines` lines."""

    def __init__(self, lines: int) -> None:
        super().__init__()
        self.left = lines

    def write(self, text: str) -> int:
        if self.left == 0:
            raise BrokenPipeError("the reader went away")
        self.left -= 1
        return super().write(text)


def test_lines_are_still_read_when_the_terminal_is_gone() -> None:
    source = io.StringIO("".join(f"run line {n}\n" for n in range(100)))
    out = _GoneAfter(3)
    relay(source, out, ServicesConsole())
    assert out.getvalue().splitlines() == ["run line 0", "run line 1", "run line 2"]
    assert source.read() == "", "every line was read: dagster dev is never left blocked on a full pipe"
