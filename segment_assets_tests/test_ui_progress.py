"""Progress where the user looks (issue 17): a run launched from the UI whose stream is paced by
its endpoint's documented limit says, while it waits, what it has done and what is left, and then
what it wrote, in the run's event log, on the run page in Chromium.

The simulator enforces the documented limits (`rate_limits="realistic"`). `warehouse_syncs` reads
one request per warehouse at 2/min: the demo has three warehouses, so the third request waits for
the 60.5 s window, and a progress line is due 30 s into the stream (`PROGRESS_INTERVAL_SECONDS`;
nothing shortens it for a UI run, and nothing shortens the stream). The screenshot goes to
test-artifacts/ui/progress_lines.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from segment_assets.simulator import Simulator
from segment_assets_tests.services import (
    PROJECT_ROOT,
    DagsterDev,
    chromium_page,
    dagster_dev,
    show_in_catalog,
    wait_until,
)

pytestmark = [pytest.mark.ui, pytest.mark.timeout(600)]

ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "ui"
PARENT, PACED = "warehouses", "warehouse_syncs"  # listSyncsFromWarehouse: 2 requests a minute
RUN_TIMEOUT = 300.0  # ~65 s of run on an idle machine: one minute is the rate limit's

PROGRESS = re.compile(
    rf"^{PACED}: (?P<made>[\d,]+) of ~(?P<planned>[\d,]+) requests, (?P<rows>[\d,]+) rows, "
    r"(?P<waits>[\d,]+) s of rate-limit waits, about (?P<left>\d+) (?P<unit>s|min) left$"
)
FINISHED = re.compile(
    rf"^{PACED}: done, (?P<rows>[\d,]+) rows(, \+\d+ ~\d+ -\d+)?, (?P<requests>[\d,]+) requests, [\d.]+ s "
    r"\((?P<waits>[\d,]+) s of rate-limit waits\)$"
)

TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
_RUNS = "{ runsOrError { ... on Runs { results { runId } } } }"
_RUN = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
_LOG = """query($id: ID!) { logsForRun(runId: $id, limit: 5000) { ... on EventConnection { events {
  __typename ... on MessageEvent { message timestamp } } } } }"""


@pytest.fixture
def paced_dev(tmp_path: Path, dagster_home: Path) -> Iterator[tuple[DagsterDev, Simulator, Path]]:
    db = tmp_path / "progress.duckdb"
    with Simulator(seed=7, rate_limits="realistic") as sim:
        env = {
            "SEGMENT_API_TOKEN": sim.token,
            "SEGMENT_API_URL": sim.url,
            "SEGMENT_DUCKDB_PATH": str(db),
            # Paced at the documented limits (the default): the waits are the client's, counted by it.
            "SEGMENT_PACE_REQUESTS": "true",
        }
        with dagster_dev(dagster_home, env) as dev:
            yield dev, sim, db


def run_ids(dev: DagsterDev) -> set[str]:
    return {r["runId"] for r in dev.graphql(_RUNS)["runsOrError"]["results"]}


def messages(dev: DagsterDev, run_id: str) -> list[str]:
    events = dev.graphql(_LOG, {"id": run_id})["logsForRun"]["events"]
    return [e["message"] for e in events if e["__typename"] == "LogMessageEvent"]


def test_a_paced_stream_tells_its_progress_in_the_run_log(paced_dev: tuple[DagsterDev, Simulator, Path]) -> None:
    dev, sim, db = paced_dev
    warehouses = sim.items("listWarehouses")
    syncs = sum(len(sim.items("listSyncsFromWarehouse", {"warehouseId": w["id"]})) for w in warehouses)
    assert len(warehouses) == 3 and syncs > 0, "at 2/min the third warehouse's request waits for the window"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    with chromium_page() as page:
        page.set_default_timeout(60_000)
        try:
            # The parent and the paced stream, shown in the catalog and launched as a user selects them.
            selection = f'key:"segment/{PARENT}" or key:"segment/{PACED}"'
            show_in_catalog(page, dev.url, selection, f"/assets/segment/{PACED}")
            page.locator("label", has=page.get_by_role("checkbox")).first.click()  # selects the two shown
            before = run_ids(dev)
            page.get_by_role("button", name="Materialize selected (2)").click()
            page.get_by_text(re.compile("Launched run")).first.wait_for(state="visible", timeout=120_000)
            run_id = wait_until(
                lambda: next(iter(run_ids(dev) - before), None), what="the run to be created", timeout=120
            )

            ended = wait_until(
                lambda: (status := dev.graphql(_RUN, {"id": run_id})["runOrError"]["status"]) in TERMINAL and status,
                what=f"run {run_id} to end",
                timeout=RUN_TIMEOUT,
                interval=2.0,
            )
            said = messages(dev, run_id)
            assert ended == "SUCCESS", said
            lines = [m for m in said if PROGRESS.match(m)]
            done = [m for m in said if FINISHED.match(m)]
            assert lines and done, f"no progress line or no finished line of {PACED} among {said}"

            # The run page: its event log, filtered to the paced stream's lines, as the user reads it.
            page.goto(f"{dev.url}/runs/{run_id}", wait_until="networkidle")
            page.get_by_text("RUN_SUCCESS").first.wait_for(state="visible")  # the event log has loaded
            page.get_by_placeholder(re.compile("Filter")).first.fill(f"{PACED}:")
            page.get_by_text(lines[0], exact=True).first.wait_for(state="visible")
            page.get_by_text(done[0], exact=True).first.wait_for(state="visible")
        except BaseException:
            page.screenshot(path=str(ARTIFACTS / "FAILED-progress_lines.png"), full_page=True)
            raise
        page.screenshot(path=str(ARTIFACTS / "progress_lines.png"), full_page=True)

    print(f"\n[ui] dagster dev ready in {dev.started_seconds:.1f} s; the run's lines:", *lines, *done, sep="\n[ui]   ")
    line = lines[0]
    progress = PROGRESS.match(line)
    assert progress, line
    made, planned, rows = (int(progress[k].replace(",", "")) for k in ("made", "planned", "rows"))
    # Said while the stream was running: requests left, rows of the warehouses read so far, a wait booked.
    assert planned == len(warehouses) and 0 < made < planned, line
    assert rows <= syncs, line
    assert int(progress["waits"]) > 0, line  # and a time left (0 s if the line came just before the last request)
    assert said.index(line) < said.index(done[0]), "the progress line comes before the finished one"

    assert len(done) == 1, said
    finished = FINISHED.match(done[0])
    assert finished, done
    with duckdb.connect(str(db), read_only=True) as con:
        stored = con.execute(f"SELECT count(*) FROM segment.{PACED}").fetchone()
    assert stored is not None and int(finished["rows"].replace(",", "")) == stored[0] == syncs
    assert int(finished["requests"]) == len(warehouses)
    assert int(finished["waits"]) >= 30, "the third request waited for the 60.5 s window"
