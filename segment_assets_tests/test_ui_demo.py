"""The demo workspace as a new user first sees it in the UI: `segment-assets sync`, then `dagster dev`
on the same instance, the asset list in Chromium. A workspace that follows the spec opens without a
warning: every asset check passed, on screen and through GraphQL. The screenshot goes to
test-artifacts/ui/demo_assets.png.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from segment_assets.api.streams import materialized_streams
from segment_assets.cli.commands import run_sync
from segment_assets.orchestration.resources import DuckDBStorage
from segment_assets.simulator import Simulator
from segment_assets_tests.conftest import segment_for
from segment_assets_tests.services import PROJECT_ROOT, DagsterDev, chromium_page, dagster_dev

pytestmark = [pytest.mark.ui, pytest.mark.timeout(1800)]

ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "ui"

_CHECKS = """{ assetNodes { assetKey { path } assetChecksOrError { ... on AssetChecks { checks {
  name executionForLatestMaterialization { status evaluation { severity } } } } } } }"""
_RUNS = "{ runsOrError { ... on Runs { results { jobName status tags { key value } } } } }"


@pytest.fixture
def synced_demo(tmp_path: Path, dagster_home: Path) -> Iterator[tuple[DagsterDev, Simulator]]:
    db = tmp_path / "demo.duckdb"
    with Simulator(seed=7) as sim:
        run_sync(None, segment=segment_for(sim), storage=DuckDBStorage(path=str(db)), out=io.StringIO())
        env = {
            "SEGMENT_API_TOKEN": sim.token,
            "SEGMENT_API_URL": sim.url,
            "SEGMENT_DUCKDB_PATH": str(db),
            "SEGMENT_PACE_REQUESTS": "false",
        }
        with dagster_dev(dagster_home, env) as dev:
            yield dev, sim


def test_the_synced_demo_opens_without_a_warning(synced_demo: tuple[DagsterDev, Simulator]) -> None:
    dev, _ = synced_demo
    nodes = dev.graphql(_CHECKS)["assetNodes"]
    evaluations = {
        ("/".join(n["assetKey"]["path"]), c["name"]): (c["executionForLatestMaterialization"] or {}).get("status")
        for n in nodes
        for c in n["assetChecksOrError"]["checks"]
    }
    assert len(evaluations) == 2 * len(materialized_streams())
    assert {k: v for k, v in evaluations.items() if v != "SUCCEEDED"} == {}
    # The sync's runs are the workspace's jobs, tagged as the CLI's.
    runs = dev.graphql(_RUNS)["runsOrError"]["results"]
    assert sorted(r["jobName"] for r in runs) == ["segment_config", "segment_daily", "segment_monthly"]
    assert all({"key": "segment/trigger", "value": "cli"} in r["tags"] for r in runs)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # Tall, so the virtualised list draws most of the demo's 75 assets.
    with chromium_page(height=3900) as page:
        # A loaded machine serves the first page slowly: wait for what the test reads, not for the
        # network to fall quiet (the UI polls).
        page.set_default_timeout(180_000)
        page.goto(f"{dev.url}/assets", wait_until="domcontentloaded")
        try:
            page.get_by_text("segment / audit_events").first.wait_for(state="visible")
            # Each row's status (and its checks) loads after the list: wait until every row has one.
            page.wait_for_function("() => !document.body.innerText.includes('Loading...')", timeout=180_000)
        finally:
            page.screenshot(path=str(ARTIFACTS / "demo_assets.png"), full_page=True)
        text: Any = page.locator("body").inner_text()
        # An asset whose parent-key columns (space_id, event_name) the check took for new fields.
        page.goto(f"{dev.url}/assets/segment/space_event_properties?view=checks", wait_until="domcontentloaded")
        page.get_by_text("schema_drift").first.wait_for(state="visible")
        page.wait_for_function("() => !document.body.innerText.includes('Loading...')", timeout=120_000)
        page.screenshot(path=str(ARTIFACTS / "demo_space_event_properties_checks.png"), full_page=True)
        checks_text: str = page.locator("main, body").first.inner_text()
    assert "Passed" in checks_text and "warning" not in checks_text.lower() and "Failed" not in checks_text
    assert text.count("segment / ") >= 50, "the list is drawn"
    assert "Materialized" in text
    assert "warning" not in text.lower(), "a check warns in the asset list"
