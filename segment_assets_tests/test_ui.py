"""The Dagster UI as a user drives it: `dagster dev` (webserver + daemon) on the project's code
location and instance settings, two Segment workspaces side by side (a connections file, two
simulators as their APIs), Chromium through Playwright.

Each step is checked on screen and again through GraphQL or the DuckDB file. Screenshots go to
test-artifacts/ui/; the webserver start and run timings are printed and written to
test-artifacts/ui/timings.json.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from segment_assets.orchestration.connections import connection_from_env
from segment_assets_tests.ground_truth import served_audit_event_ids
from segment_assets_tests.services import (
    PROJECT_ROOT,
    DagsterDev,
    chromium_page,
    dagster_dev,
    show_in_catalog,
    wait_until,
)

pytestmark = [pytest.mark.ui, pytest.mark.timeout(2400)]

# Everything that names the product's Dagster objects, in one place. Two workspaces are loaded;
# the user's path runs on the first, and the last test refreshes both.
CONNECTION, OTHER = "us_prod", "eu_prod"
KEY_PREFIX: tuple[str, ...] = ("segment", CONNECTION)
SCHEMA = CONNECTION  # each workspace's tables in a schema of its own, in one DuckDB file
LOCATION, REPOSITORY = "segment_assets", "__repository__"
CONFIG_JOB = f"segment_{CONNECTION}_config"
AUDIT_SENSOR = f"segment_{CONNECTION}_audit_trail_sensor"
GROUPS = tuple(
    f"{c}__{g}"
    for c in (CONNECTION, OTHER)
    for g in ("sources", "destinations", "warehouses", "protocols", "iam", "audit", "usage", "delivery")
)
PARENT, CHILD = "sources", "source_connected_destinations"
DAILY = "audit_events"

ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "ui"
RUN_TIMEOUT = 1500.0  # a full config run: ~2 min on an idle two-core machine, far more on a shared one
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
BACKFILL_TERMINAL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
TIMINGS: dict[str, Any] = {}


def key_path(stream: str) -> str:
    """`segment/sources`: the key as URLs and the selection syntax spell it."""
    return "/".join((*KEY_PREFIX, stream))


def key_list(stream: str) -> list[str]:
    return [*KEY_PREFIX, stream]


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ui_sim() -> Iterator[Any]:
    # In-process, so the test can change the workspace (an audit event) while Dagster reads it.
    from segment_assets.simulator import Simulator

    with Simulator(seed=7) as sim:
        yield sim


@pytest.fixture(scope="module")
def other_sim() -> Iterator[Any]:
    from segment_assets.simulator import Simulator

    with Simulator(seed=11, scale=0.5, tokens=("eu-token",)) as sim:
        yield sim


@pytest.fixture(scope="module")
def duckdb_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ui-data") / "ui.duckdb"


@pytest.fixture(scope="module")
def dev(
    ui_sim: Any, other_sim: Any, duckdb_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DagsterDev]:
    connections = tmp_path_factory.mktemp("ui-config") / "connections.yaml"
    connections.write_text(
        yaml.safe_dump(
            {
                "connections": [
                    {
                        "name": name,
                        "token_env": f"SEGMENT_{name.upper()}_TOKEN",
                        "api_url": sim.url,
                        "duckdb_path": str(duckdb_file),
                        "pace_requests": False,
                    }
                    for name, sim in ((CONNECTION, ui_sim), (OTHER, other_sim))
                ]
            }
        )
    )
    env = {
        "SEGMENT_CONNECTIONS": str(connections),
        f"SEGMENT_{CONNECTION.upper()}_TOKEN": ui_sim.token,
        f"SEGMENT_{OTHER.upper()}_TOKEN": other_sim.token,
    }
    with dagster_dev(tmp_path_factory.mktemp("ui-home"), env) as running:
        TIMINGS["webserver_ready_seconds"] = round(running.started_seconds, 1)
        print(f"\n[ui] dagster dev ready (code location loaded, daemons healthy) in {running.started_seconds:.1f}s")
        yield running
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "timings.json").write_text(json.dumps(TIMINGS, indent=2) + "\n")
    print(f"[ui] timings: {json.dumps(TIMINGS)}")


@pytest.fixture(scope="module")
def page(dev: DagsterDev) -> Iterator[Any]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with chromium_page() as p:
        p.set_default_timeout(30_000)
        yield p


@pytest.fixture(autouse=True)
def screenshot_on_failure(request: pytest.FixtureRequest, page: Any) -> Iterator[None]:
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed > failed:
        shot(page, f"FAILED-{request.node.name}")


# -- helpers ---------------------------------------------------------------------------------


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def visit(page: Any, dev: DagsterDev, path: str) -> None:
    page.goto(dev.url + path, wait_until="networkidle")


def run_ids(dev: DagsterDev) -> set[str]:
    data = dev.graphql("{ runsOrError(limit: 200) { ... on Runs { results { runId } } } }")
    return {r["runId"] for r in data["runsOrError"]["results"]}


def new_run(dev: DagsterDev, before: set[str], what: str, timeout: float = 120.0) -> str:
    def created() -> str | None:
        fresh = run_ids(dev) - before
        return next(iter(fresh)) if len(fresh) == 1 else None

    return wait_until(created, what=f"the run of {what} to be created", timeout=timeout, interval=1.0)


_RUN = """query($id: ID!) { runOrError(runId: $id) { __typename ... on Run {
  runId jobName status startTime endTime assetSelection { path } tags { key value }
  stepStats { stepKey status } } } }"""
_RUN_ERRORS = """query($id: ID!) { logsForRun(runId: $id, limit: 2000) { ... on EventConnection { events {
  __typename ... on ExecutionStepFailureEvent { stepKey error { message } }
  ... on RunFailureEvent { message } } } } }"""


def run_info(dev: DagsterDev, run_id: str) -> dict[str, Any]:
    return dev.graphql(_RUN, {"id": run_id})["runOrError"]


def wait_for_run(dev: DagsterDev, run_id: str, label: str, timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
    """Wait until the run ends; it must succeed (else the step errors are the message). Records its timing."""
    run = wait_until(
        lambda: (r := run_info(dev, run_id))["status"] in TERMINAL and r,
        what=f"run {run_id} ({label}) to finish",
        timeout=timeout,
        interval=2.0,
    )
    if run["status"] != "SUCCESS":
        events = dev.graphql(_RUN_ERRORS, {"id": run_id})["logsForRun"]["events"]
        errors = [
            f"{e.get('stepKey') or 'run'}: {(e.get('error') or {}).get('message') or e.get('message')}"
            for e in events
            if e["__typename"] in ("ExecutionStepFailureEvent", "RunFailureEvent")
        ]
        raise AssertionError(f"run {run_id} ({label}) ended {run['status']}:\n" + "\n".join(errors))
    seconds = round(run["endTime"] - run["startTime"], 1)
    TIMINGS[label] = {"run_id": run_id, "seconds": seconds, "steps": len(run["stepStats"])}
    print(f"[ui] run {label}: {len(run['stepStats'])} step(s) in {seconds}s")
    return run


def expect_launched(page: Any, text: str) -> None:
    """The toast Dagster shows after a launch, and no error dialog instead."""
    page.get_by_text(re.compile(text)).first.wait_for(state="visible", timeout=120_000)
    assert_no_error_dialog(page)


def assert_no_error_dialog(page: Any) -> None:
    dialogs = page.get_by_role("dialog")
    texts = [dialogs.nth(i).inner_text() for i in range(dialogs.count()) if dialogs.nth(i).is_visible()]
    assert not texts, f"unexpected dialog: {texts}"


def open_run_page(page: Any, dev: DagsterDev, run_id: str, name: str) -> None:
    visit(page, dev, f"/runs/{run_id}")
    page.get_by_text("Success", exact=True).first.wait_for(state="visible")
    page.get_by_text("RUN_SUCCESS").first.wait_for(state="visible")  # the event log has loaded
    shot(page, name)


def query_duckdb(path: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    # Read-only, after the runs ended; a retry covers a writer that has not let go of the file yet.
    def read() -> list[tuple[Any, ...]]:
        with duckdb.connect(str(path), read_only=True) as con:
            return con.execute(sql, params or []).fetchall()

    return wait_until(lambda: [read()], what=f"DuckDB {path} to be readable", timeout=60)[0]


def toggle_running(page: Any) -> None:
    """The sensor page's Running switch (a checkbox drawn as a switch, inside its label)."""
    page.locator("label", has=page.get_by_role("checkbox")).first.click()


_SENSOR = """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { __typename ... on Sensor {
  sensorState { status ticks(limit: 20) { status runIds skipReason error { message } } } } } }"""


def sensor_state(dev: DagsterDev) -> dict[str, Any]:
    selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": AUDIT_SENSOR}
    return dev.graphql(_SENSOR, {"s": selector})["sensorOrError"]["sensorState"]


# -- the user's path -------------------------------------------------------------------------


def test_lineage_shows_the_segment_groups(page: Any, dev: DagsterDev) -> None:
    visit(page, dev, "/asset-groups")
    for group in GROUPS:
        page.get_by_role("button", name=group, exact=False).first.wait_for(state="visible")
    expected = dev.graphql("{ assetNodes { groupName } }")["assetNodes"]
    assert set(GROUPS) <= {n["groupName"] for n in expected}
    shot(page, "01-lineage-groups")


def test_materialize_a_source_and_its_child_shows_rows_and_columns(
    page: Any, dev: DagsterDev, ui_sim: Any, duckdb_file: Path
) -> None:
    selection = f'key:"{key_path(PARENT)}" or key:"{key_path(CHILD)}"'
    show_in_catalog(page, dev.url, selection, f"/assets/{key_path(CHILD)}")
    # The header checkbox selects every asset the filter shows: exactly the two.
    page.locator("label", has=page.get_by_role("checkbox")).first.click()
    launch = page.get_by_role("button", name="Materialize selected (2)")
    launch.wait_for(state="visible")
    shot(page, "02-catalog-two-assets-selected")
    before = run_ids(dev)
    launch.click()
    expect_launched(page, "Launched run")
    run_id = new_run(dev, before, "sources + child")
    run = wait_for_run(dev, run_id, "materialize_sources_and_child")
    assert sorted(a["path"] for a in run["assetSelection"]) == sorted([key_list(PARENT), key_list(CHILD)])
    open_run_page(page, dev, run_id, "03-run-sources-success")

    # The asset page: the row count the run recorded, and the table's columns.
    sources = ui_sim.items("listSources")
    stored = query_duckdb(duckdb_file, f"SELECT count(*) FROM {SCHEMA}.sources")[0][0]
    assert stored == len(sources)
    columns = [
        r[0]
        for r in query_duckdb(
            duckdb_file,
            f"SELECT column_name FROM information_schema.columns WHERE table_schema = '{SCHEMA}' "
            "AND table_name = 'sources' ORDER BY ordinal_position",
        )
    ]
    visit(page, dev, f"/assets/{key_path(PARENT)}")
    row_count = page.get_by_text("Row count", exact=True).first
    row_count.wait_for(state="visible")
    shown = row_count.evaluate("e => e.parentElement.innerText")
    assert re.search(rf"\b{len(sources)}\b", shown), f"asset page shows {shown!r}, expected {len(sources)} rows"
    for column in columns:
        assert page.get_by_role("cell", name=column, exact=True).count() == 1, f"column {column} not shown"
    shot(page, "04-asset-sources-rows-and-columns")
    child_rows = query_duckdb(duckdb_file, f"SELECT count(*) FROM {SCHEMA}.source_connected_destinations")[0][0]
    expected_child = sum(
        len(ui_sim.items("listConnectedDestinationsFromSource", {"sourceId": s["id"]})) for s in sources
    )
    assert child_rows == expected_child > 0


def test_backfill_of_three_days_runs_as_one_run(page: Any, dev: DagsterDev, ui_sim: Any, duckdb_file: Path) -> None:
    today = ui_sim.now().astimezone(UTC).date()
    first, last = today - timedelta(days=3), today - timedelta(days=1)
    visit(page, dev, f"/assets/{key_path(DAILY)}")
    page.get_by_role("button", name="Materialize…").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Backfills all partitions in a single run.").wait_for(state="visible")  # BackfillPolicy
    partitions = dialog.get_by_placeholder("No matching partitions")
    partitions.fill(f"[{first}...{last}]")
    partitions.press("Enter")
    dialog.get_by_text("3 partitions").wait_for(state="visible")
    shot(page, "05-backfill-dialog-three-days")
    dialog.get_by_role("button", name="Launch backfill").click()
    expect_launched(page, "Created backfill")

    backfills = dev.graphql("{ partitionBackfillsOrError(limit: 5) { ... on PartitionBackfills { results { id } } } }")
    backfill_id = backfills["partitionBackfillsOrError"]["results"][0]["id"]
    query = """query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill {
      status numPartitions runs { runId status } } } }"""

    def backfill() -> dict[str, Any]:
        return dev.graphql(query, {"id": backfill_id})["partitionBackfillOrError"]

    started = time.monotonic()
    wait_until(
        lambda: backfill()["runs"], what=f"the daemon to launch backfill {backfill_id}", timeout=120, interval=1.0
    )
    run_id = backfill()["runs"][0]["runId"]
    run = wait_for_run(dev, run_id, "backfill_3_days")
    done = wait_until(
        lambda: (b := backfill())["status"] in BACKFILL_TERMINAL and b,
        what=f"backfill {backfill_id} to complete",
        timeout=120,
        interval=1.0,
    )
    TIMINGS["backfill_3_days"]["from_launch_seconds"] = round(time.monotonic() - started, 1)
    assert done["status"] == "COMPLETED_SUCCESS", done
    assert done["numPartitions"] == 3
    assert len(done["runs"]) == 1, "BackfillPolicy.single_run: three partitions, one run"
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == (
        str(first),
        str(last),
    )

    # The terminal, as `./run ui` shows it (`segment-assets ui`): one line for the backfill, with
    # its page, and none of the backfill daemon's partition lists.
    def terminal_lines() -> list[str]:
        return dev.process.log_path.read_text(errors="replace").splitlines()

    said = wait_until(
        lambda: [line for line in terminal_lines() if backfill_id in line],
        what=f"the terminal's line for backfill {backfill_id}",
        timeout=60,
    )
    assert len(said) == 1 and said[0].endswith(f"succeeded (1 run launched): {dev.url}/runs/b/{backfill_id}"), said
    assert not [line for line in terminal_lines() if "Asset partitions to request" in line or "- segment/" in line]

    visit(page, dev, f"/runs/b/{backfill_id}")
    page.get_by_text("Succeeded", exact=True).first.wait_for(state="visible")
    shot(page, "06-backfill-succeeded")

    served = served_audit_event_ids(ui_sim, first, last)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    stored = {
        r[0]
        for r in query_duckdb(
            duckdb_file, f"SELECT id FROM {SCHEMA}.audit_events WHERE timestamp >= ? AND timestamp < ?", [start, end]
        )
    }
    assert served and stored == served


def test_audit_trail_sensor_runs_what_a_change_touched(
    page: Any, dev: DagsterDev, ui_sim: Any, duckdb_file: Path
) -> None:
    source = ui_sim.items("listSources")[0]
    new_name = f"{source['name']} (renamed in the UI test)"
    # A change in the workspace: the simulator records it in its audit trail ("Source Modified").
    ui_sim.workspace.update("sources", source["id"], name=new_name)
    before = run_ids(dev)

    visit(page, dev, f"/locations/{LOCATION}/sensors/{AUDIT_SENSOR}")
    page.get_by_text("Sensor has never run").wait_for(state="visible")
    toggle_running(page)
    wait_until(lambda: sensor_state(dev)["status"] == "RUNNING", what="the sensor to be RUNNING", timeout=30)
    started = time.monotonic()
    run_id = new_run(dev, before, "the audit-trail sensor", timeout=180)
    TIMINGS["sensor_tick_to_run_seconds"] = round(time.monotonic() - started, 1)
    run = wait_for_run(dev, run_id, "audit_sensor_run")
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["segment/trigger"] == "audit-trail"
    assert f"Source:{source['id']}" in tags["segment/audit_resources"]
    assert key_list("sources") in [a["path"] for a in run["assetSelection"]]
    ticks = sensor_state(dev)["ticks"]
    assert any(run_id in t["runIds"] for t in ticks), ticks

    visit(page, dev, f"/locations/{LOCATION}/sensors/{AUDIT_SENSOR}")
    page.get_by_text("1 run requested").first.wait_for(state="visible")
    shot(page, "07-sensor-on-run-requested")
    open_run_page(page, dev, run_id, "08-sensor-run-success")
    rows = query_duckdb(duckdb_file, f"SELECT name FROM {SCHEMA}.sources WHERE id = ?", [source["id"]])
    assert rows == [(new_name,)]

    visit(page, dev, f"/locations/{LOCATION}/sensors/{AUDIT_SENSOR}")
    toggle_running(page)
    wait_until(lambda: sensor_state(dev)["status"] == "STOPPED", what="the sensor to be STOPPED", timeout=30)
    shot(page, "09-sensor-off")


def test_materialize_all_config_assets_of_both_workspaces(
    page: Any, dev: DagsterDev, ui_sim: Any, other_sim: Any, duckdb_file: Path
) -> None:
    # The config job is what the config schedule runs: the documented way to refresh everything.
    # Both workspaces at once, as a user launches one after the other without waiting: the two runs
    # share one DuckDB file, each writing under its own schema.
    workspaces = ((CONNECTION, ui_sim), (OTHER, other_sim))
    launched = {}
    for n, (connection, _) in enumerate(workspaces):
        job = f"segment_{connection}_config"
        visit(page, dev, f"/locations/{LOCATION}/jobs/{job}")
        button = page.get_by_role("button", name="Materialize all")
        button.wait_for(state="visible")
        shot(page, f"{10 + 2 * n}-config-job-{connection}")
        before = run_ids(dev)
        button.click()
        expect_launched(page, "Launched run")
        launched[connection] = new_run(dev, before, job)
    for n, (connection, sim) in enumerate(workspaces):
        run_id = launched[connection]
        run = wait_for_run(dev, run_id, f"materialize_all_config_{connection}")
        assert run["jobName"] == f"segment_{connection}_config"
        failed = [s["stepKey"] for s in run["stepStats"] if s["status"] != "SUCCESS"]
        # One step: the workspace's configuration streams, read concurrently inside it.
        assert not failed and len(run["stepStats"]) == 1, (failed, len(run["stepStats"]))
        open_run_page(page, dev, run_id, f"{11 + 2 * n}-config-run-success-{connection}")
        assert_no_error_dialog(page)
        tables = {
            r[0]
            for r in query_duckdb(
                duckdb_file, "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [connection]
            )
        }
        assert {s.name for s in connection_from_env({}).streams() if not s.windowing} <= tables, "every config table"
        ids = {r[0] for r in query_duckdb(duckdb_file, f"SELECT id FROM {connection}.destinations")}
        assert ids == {d["id"] for d in sim.items("listDestinations")}, f"{connection} from its own API"
