"""`segment-assets doctor` against real simulators on loopback: token, region, features, cost."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from segment_assets.api.paging import Page
from segment_assets.cli.doctor.probe import Count, page_count
from segment_assets.cli.doctor.report import diagnose, main
from segment_assets.orchestration.connections import Connection
from segment_assets.simulator import Simulator
from segment_assets_tests.test_component import component_tree

TOKEN = "tok-us-Zq81-not-to-be-printed"
EU_TOKEN = "tok-eu-Pw27-not-to-be-printed"


def run(argv: list[str], env: dict[str, str], region_urls: dict[str, str] | None = None) -> tuple[int, str]:
    out = io.StringIO()
    kwargs: dict[str, Any] = {"region_urls": region_urls} if region_urls else {}
    code = main(argv, out=out, environ=env, **kwargs)
    text = out.getvalue()
    assert TOKEN not in text and EU_TOKEN not in text, "the doctor printed a token"
    return code, text


@pytest.fixture
def us() -> Any:
    with Simulator(seed=7, tokens=(TOKEN,)) as sim:
        yield sim


@pytest.fixture
def eu() -> Any:
    with Simulator(seed=8, tokens=(EU_TOKEN,)) as sim:
        yield sim


def test_working_connection_exits_0_names_the_workspace_and_lists_features(us: Simulator) -> None:
    code, text = run([], {"SEGMENT_API_TOKEN": TOKEN, "SEGMENT_API_URL": us.url})
    assert code == 0, text
    workspace = us.items("getWorkspace")[0]
    assert f"workspace {workspace['name']!r} (slug {workspace['slug']}" in text
    for area in (
        "Protocols",
        "Spaces",
        "Audience",
        "Functions",
        "Reverse ETL",
        "Destination Subscriptions",
        "Live Plugins",
        "Audit Trail",
        "Space Filters",
    ):
        assert any(
            line.split()[: len(area.split()) + 1] == [*area.split(), "available"]
            for line in text.splitlines()
            if line.startswith("    ")
        ), f"{area} not listed as available:\n{text}"
    assert "NOT AVAILABLE" not in text
    assert f"the doctor made {us.stats.total} request(s)" in text
    assert us.stats.total <= 40, "the doctor must stay cheap"


def test_json_report_counts_parents_and_bounds_the_sync_by_the_slow_endpoints(us: Simulator) -> None:
    code, text = run(["--json"], {"SEGMENT_API_TOKEN": TOKEN, "SEGMENT_API_URL": us.url})
    assert code == 0
    report = json.loads(text)
    assert report["ok"] is True
    conn = report["connections"][0]
    assert conn["requests"] == us.stats.total
    est = conn["estimate"]
    warehouses = us.items("listWarehouses")
    # Root lists are counted exactly from totalEntries of a one-item page.
    assert est["rows"]["sources"] == str(len(us.items("listSources")))
    assert est["rows"]["warehouses"] == str(len(warehouses))
    functions = us.items("listFunctions", query={"resourceType": "INSERT_SOURCE"})
    streams = {s["stream"]: s for s in est["streams"]}
    # getAdvancedSyncScheduleFromWarehouse: one unpaginated request per warehouse at 2/min; the shared
    # budget lets 2 go at once, then 2 more each minute.
    schedules = streams["warehouse_advanced_sync_schedules"]
    assert (schedules["requests"], schedules["requests_precision"]) == (len(warehouses), "exact")
    assert schedules["chain_seconds"] == pytest.approx((-(-len(warehouses) // 2) - 1) * 60.0)
    # A deeper level is extrapolated from one sampled parent and says so.
    first_connected = us.items("listConnectedSourcesFromWarehouse", {"warehouseId": warehouses[0]["id"]})
    selective = streams["warehouse_selective_syncs"]
    assert selective["requests"] == len(warehouses) * len(first_connected)
    assert selective["requests_precision"] == "approx"
    assert selective["chain"] == ["warehouses", "warehouse_connected_sources"]
    assert est["top"][0] == "warehouse_selective_syncs"
    assert est["bound_by"] == "warehouse_selective_syncs"
    assert est["min_seconds"] == pytest.approx((-(-selective["requests"] // 2) - 1) * 60.0)
    # INSERT_* functions only feed insert_function_instances: counted per resourceType.
    inserts = sum(
        len(us.items("listFunctions", query={"resourceType": t}))
        for t in ("INSERT_DESTINATION", "INSERT_SOURCE", "INSERT_TRANSFORMATION")
    )
    assert functions and streams["insert_function_instances"]["requests"] == inserts
    assert est["requests"] == sum(s["requests"] for s in est["streams"])
    # Sample values come inline with the property lists: the share of full lists on the sampled page
    # (one request, as before) scales down the one-request-per-property count.
    for name, parent in (
        ("space_event_property_sample_values", "space_event_properties"),
        ("space_trait_sample_values", "space_traits"),
    ):
        samples = streams[name]
        properties = int(est["rows"][parent].lstrip("≈≥"))
        assert samples["requests"] < properties and samples["requests_precision"] == "approx", samples
        assert "inline" in samples["note"]


def test_disabled_feature_is_reported_not_available_with_its_empty_tables() -> None:
    with Simulator(seed=7, tokens=(TOKEN,), disabled_features=("Protocols", "Spaces")) as sim:
        code, text = run(["--json"], {"SEGMENT_API_TOKEN": TOKEN, "SEGMENT_API_URL": sim.url})
        by_op = dict(sim.stats.by_operation)
        _, plain = run([], {"SEGMENT_API_TOKEN": TOKEN, "SEGMENT_API_URL": sim.url})
    assert code == 0, "a plan without Protocols is a working connection"
    features = {f["area"]: f for f in json.loads(text)["connections"][0]["features"]}
    protocols = features["Protocols"]
    assert protocols["status"] == "not available" and protocols["http_status"] == 403
    assert {"tracking_plans", "tracking_plan_rules", "tracking_plan_sources", "transformations"} == set(
        protocols["empty_tables"]
    )
    assert features["Spaces"]["status"] == "not available"
    assert {"spaces", "audiences", "space_traits"} <= set(features["Spaces"]["empty_tables"])
    # Areas below a refused parent are known empty without asking.
    assert features["Audience"]["status"] == "not available"
    assert "listAudiences" not in by_op
    assert features["Functions"]["status"] == "available"
    estimate = json.loads(text)["connections"][0]["estimate"]
    streams = {s["stream"]: s for s in estimate["streams"]}
    assert streams["tracking_plan_rules"]["requests"] == 0 and streams["space_traits"]["requests"] == 0
    assert "Protocols" in plain and "NOT AVAILABLE" in plain and "tracking_plan_rules" in plain


def test_bad_token_exits_1_names_the_variable_after_one_request_per_region(us: Simulator, eu: Simulator) -> None:
    urls = {"us": us.url, "eu": eu.url}
    code, text = run([], {"SEGMENT_API_TOKEN": "not-a-token"}, urls)
    assert code == 1
    assert "SEGMENT_API_TOKEN" in text and "every region" in text and "Create token" in text
    # One request where the token is configured, one to the other region to tell "wrong region" apart.
    assert (us.stats.total, eu.stats.total) == (1, 1)
    assert dict(us.stats.by_status) == {401: 1}


def test_bad_token_on_a_custom_url_costs_exactly_one_request(us: Simulator, eu: Simulator) -> None:
    code, text = run(
        [],
        {"SEGMENT_API_TOKEN": "not-a-token", "SEGMENT_API_URL": us.url + "/"},
        {"us": "http://127.0.0.1:9", "eu": eu.url},
    )
    assert code == 1 and "SEGMENT_API_TOKEN" in text and "HTTP 401" in text
    assert (us.stats.total, eu.stats.total) == (1, 0), "no region probe when the URL is not a region's"
    assert "the doctor made 1 request(s)" in text


def test_token_of_the_other_region_says_which_setting_to_change(us: Simulator, eu: Simulator) -> None:
    urls = {"us": us.url, "eu": eu.url}
    code, text = run([], {"SEGMENT_API_TOKEN": EU_TOKEN}, urls)
    assert code == 1
    assert "EU region" in text and "SEGMENT_REGION=eu" in text
    assert (us.stats.total, eu.stats.total) == (1, 1)


def test_named_connection_in_the_wrong_region_points_at_its_file(us: Simulator, eu: Simulator, tmp_path: Path) -> None:
    config = tmp_path / "connections.yaml"
    config.write_text(
        "connections:\n  - name: emea\n    token_env: SEGMENT_EMEA_TOKEN\n    region: eu\n"
        "  - name: other\n    token_env: SEGMENT_OTHER_TOKEN\n"
    )
    env = {"SEGMENT_CONNECTIONS": str(config), "SEGMENT_EMEA_TOKEN": TOKEN}
    code, text = run(["--connection", "emea", "--no-estimate"], env, {"us": us.url, "eu": eu.url})
    assert code == 1
    assert "`region: us` for connection 'emea'" in text and str(config) in text and "SEGMENT_EMEA_TOKEN" in text
    assert (eu.stats.total, us.stats.total) == (1, 1)

    code, text = run([], env, {"us": us.url, "eu": eu.url})  # every connection: 'other' has no token
    assert code == 2 and "SEGMENT_OTHER_TOKEN is not set" in text

    code, _ = run(["--connection", "nope"], env)
    assert code == 2


def test_a_component_workspace_is_checked_and_its_yaml_named_for_the_fix(us: Simulator, eu: Simulator) -> None:
    attributes = {"name": "acme", "token_env": "ACME_TOKEN", "region": "eu"}
    with component_tree(attributes) as tree:
        out = io.StringIO()
        code = main(
            ["--no-estimate"],
            out=out,
            environ={"ACME_TOKEN": TOKEN},
            components=tree,
            region_urls={"us": us.url, "eu": eu.url},
        )
    text = out.getvalue()
    assert code == 1 and "connection 'acme': token from ACME_TOKEN, region eu" in text
    assert "set `region: us` for connection 'acme' in the component YAML of 'acme'" in text
    assert (eu.stats.total, us.stats.total) == (1, 1)


def test_missing_token_names_the_variable_and_how_to_create_one(us: Simulator) -> None:
    code, text = run([], {"SEGMENT_API_URL": us.url})
    assert code == 2
    assert "SEGMENT_API_TOKEN is not set" in text and "Access Management > Tokens" in text
    assert us.stats.total == 0


@pytest.mark.e2e
def test_doctor_runs_as_a_command_without_printing_the_token(us: Simulator) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGMENT_")}
    env.update({"SEGMENT_API_TOKEN": TOKEN, "SEGMENT_API_URL": us.url})
    out = subprocess.run(
        [sys.executable, "-m", "segment_assets.cli.doctor", "--no-estimate"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "token accepted" in out.stdout
    assert TOKEN not in out.stdout + out.stderr


def test_report_of_one_connection_is_available_as_data(us: Simulator) -> None:
    report = diagnose(
        Connection(name="acme", token_env="ACME_TOKEN", api_url=us.url), environ={"ACME_TOKEN": TOKEN}, estimate=False
    )
    assert report.ok and report.workspace == {k: us.items("getWorkspace")[0][k] for k in ("id", "slug", "name")}
    assert report.estimate is None and report.requests == us.stats.total


def page(records: list[Any], pagination: dict[str, Any] | None) -> Page:
    data: dict[str, Any] = {"items": records}
    if pagination is not None:
        data["pagination"] = pagination
    return Page(records, data)


def test_page_count_uses_total_entries_else_says_at_least() -> None:
    assert page_count(page([{}], {"current": "MA==", "next": "MQ==", "totalEntries": 40})) == Count(40)
    assert page_count(page([{}], {"current": "MA==", "next": None})) == Count(1)
    assert page_count(page([], None)) == Count(0)
    assert page_count(page([{}], {"current": "MA==", "next": "MQ=="})) == Count(2, "at_least")


def test_counts_keep_their_least_certain_kind() -> None:
    assert Count(3) * Count(4) == Count(12)
    assert Count(3) * Count(4, "approx") == Count(12, "approx")
    assert Count(3, "approx") + Count(2, "at_least") == Count(5, "at_least")
    assert Count(0) * Count(9, "at_least") == Count(0)
    assert str(Count(12, "approx")) == "≈12" and str(Count(2, "at_least")) == "≥2" and str(Count(7)) == "7"
