"""The live workspace over real HTTP: changes on a timer, the on-demand control endpoint, and
`segment-assets simulate --live` as a process."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from segment_assets.simulator import CHANGES, Simulator
from segment_assets_tests.services import free_port, popen, stop

NOW = datetime(2024, 6, 15, 12, 30, tzinfo=UTC)


def _client(sim: Simulator, token: str | None = "default") -> httpx.Client:
    headers = {} if token is None else {"Authorization": f"Bearer {sim.token if token == 'default' else token}"}
    return httpx.Client(base_url=sim.url, headers=headers, timeout=10)


def _events(http: httpx.Client, count: int = 1000, **query: Any) -> list[dict[str, Any]]:
    response = http.get("/audit-events", params={"pagination[count]": count, **query})
    assert response.status_code == 200, response.text
    return response.json()["data"]["events"]


def _labels(http: httpx.Client) -> set[str]:
    return {f"{label['key']}:{label['value']}" for label in http.get("/labels").json()["data"]["labels"]}


def _all(http: httpx.Client, path: str, key: str) -> list[dict[str, Any]]:
    return http.get(path, params={"pagination[count]": 1000}).json()["data"][key]


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(seed=7, now=NOW) as s:
        yield s


# ---- live mode ---------------------------------------------------------------------------------


def test_live_mode_changes_objects_and_records_audit_events() -> None:
    with Simulator(seed=7, now=NOW, live_interval=0.15, live_changes=2) as sim, _client(sim) as http:
        # The seeded state (the first tick may already have changed what HTTP would show).
        seeded = Simulator(seed=7, now=NOW).workspace
        sources_before = {s["id"]: s for s in seeded.list("sources")}
        destinations_before = {d["id"]: d for d in seeded.list("destinations")}
        labels_before = {f"{x['key']}:{x['value']}" for x in seeded.list("labels")}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # two full rounds of the change kinds
            live = [e for e in _events(http, 100) if e["actor"] == "public-api-token"]
            if len(live) >= 2 * len(CHANGES):
                break
            time.sleep(0.1)
        assert sim.live_loop is not None
        sim.live_loop.stop()  # freeze the workspace; the server keeps serving
        # Seeded events end at the anchor `now`; the live ones come after it.
        live = [e for e in _events(http, 1000, startTime=NOW.isoformat()) if e["actor"] == "public-api-token"]
        assert len(live) >= 2 * len(CHANGES), "the live mode made too few changes in 20 s"
        assert {e["type"] for e in live} >= {
            "Source Modified",
            "Destination Modified",
            "Label Created",
            "Label Deleted",
            "Destination Filter Modified",
            "Tracking Plan Modified",
        }
        # Stamped with the simulator clock, which runs on from `now`, newest first.
        stamps = [datetime.fromisoformat(e["timestamp"]) for e in live]
        assert stamps == sorted(stamps, reverse=True)
        assert all(NOW < t < sim.now() for t in stamps)

        # Every change is served: the newest event of each resource describes its current state.
        newest: dict[tuple[str, str], dict[str, Any]] = {}
        for event in live:
            newest.setdefault((event["resourceType"], event["resourceId"]), event)
        labels_now = _labels(http)
        for (rtype, rid), event in newest.items():
            if rtype == "Source":
                served = http.get(f"/sources/{rid}").json()["data"]["source"]
                assert served["name"] == event["resourceName"] != sources_before[rid]["name"]
            elif rtype == "Destination":
                flips = sum(e["resourceId"] == rid and e["type"] == "Destination Modified" for e in live)
                served = http.get(f"/destinations/{rid}").json()["data"]["destination"]
                assert served["enabled"] == (destinations_before[rid]["enabled"] != (flips % 2 == 1))
            elif rtype == "Label":  # a label's id is "key:value"
                assert (rid in labels_now) == (event["type"] == "Label Created") and rid not in labels_before
            elif rtype == "Destination Filter":
                destination = sim.workspace.get("destination_filters", rid)["destinationId"]  # type: ignore[index]
                served = http.get(f"/destination/{destination}/filters/{rid}").json()["data"]["filter"]
                assert served["title"] == event["resourceName"] and served["updatedAt"] > NOW.isoformat()[:19]
            elif rtype == "Tracking Plan":  # a rule was added to it
                added = sum(e["resourceId"] == rid and e["type"] == "Tracking Plan Modified" for e in live)
                rules = _all(http, f"/tracking-plans/{rid}/rules", "rules")
                assert len(rules) == len(seeded.children("rules", None, (rid,))) + added
            else:
                raise AssertionError(f"unexpected live change {event}")


def test_live_mode_is_off_by_default(sim: Simulator) -> None:
    assert sim.live_loop is None
    with _client(sim) as http:
        before = _events(http, 5)
        time.sleep(0.3)
        assert _events(http, 5) == before


# ---- the control endpoint ----------------------------------------------------------------------


def _served_change(http: httpx.Client, change: dict[str, Any]) -> None:
    """The object the control endpoint says it changed is served changed."""
    obj, ident = change["object"], change["id"]
    if change["change"] == "rename_source":
        assert http.get(f"/sources/{ident}").json()["data"]["source"]["name"] == obj["name"] == change["resourceName"]
    elif change["change"] == "toggle_destination":
        assert http.get(f"/destinations/{ident}").json()["data"]["destination"]["enabled"] == obj["enabled"]
    elif change["change"] == "create_label":
        assert ident in _labels(http) and change["resourceName"] == obj["value"]
    elif change["change"] == "delete_label":
        assert ident not in _labels(http) and change["resourceName"] == obj["value"]
    elif change["change"] == "update_destination_filter":
        served = http.get(f"/destination/{obj['destinationId']}/filters/{ident}").json()["data"]["filter"]
        # updatedAt is the one the change record holds; its audit event is stamped a moment later,
        # not necessarily in the same millisecond.
        assert served == obj and served["updatedAt"] == obj["updatedAt"]
        assert NOW < datetime.fromisoformat(obj["updatedAt"]) <= datetime.fromisoformat(change["timestamp"])
    elif change["change"] == "add_tracking_plan_rule":
        plan = change["resourceId"]
        rules = _all(http, f"/tracking-plans/{plan}/rules", "rules")
        assert [r for r in rules if r["key"] == obj["key"]] == [obj] and "deprecatedAt" not in obj
        assert change["resourceType"] == "Tracking Plan" and change["type"] == "Tracking Plan Modified"
    else:
        raise AssertionError(f"no check for {change['change']}")


@pytest.mark.parametrize("name", CHANGES)
def test_control_endpoint_applies_a_named_change(sim: Simulator, name: str) -> None:
    with _client(sim) as http:
        if name == "delete_label":
            assert http.post("/__simulator/mutate", json={"change": "create_label"}).status_code == 200
        before = _events(http, 1)[0]
        response = http.post("/__simulator/mutate", json={"change": name})
        assert response.status_code == 200, response.text
        change = response.json()["data"]
        assert change["change"] == name and change["kind"] and change["id"]
        newest = _events(http, 1)[0]
        assert newest["id"] == change["auditEventId"] != before["id"]
        assert {k: newest[k] for k in ("type", "resourceType", "resourceId", "resourceName", "timestamp")} == {
            k: change[k] for k in ("type", "resourceType", "resourceId", "resourceName", "timestamp")
        }
        assert newest["type"].endswith(change["action"]) or name == "add_tracking_plan_rule"
        assert NOW <= datetime.fromisoformat(newest["timestamp"]) <= sim.now()
        _served_change(http, change)


def test_control_endpoint_takes_turns_and_an_empty_body(sim: Simulator) -> None:
    with _client(sim) as http:
        changes = [http.post("/__simulator/mutate").json()["data"] for _ in range(len(CHANGES))]
        assert [c["change"] for c in changes] == list(CHANGES)
        ids = [e["id"] for e in _events(http, len(CHANGES))]
        assert ids == [c["auditEventId"] for c in reversed(changes)]
        assert changes[2]["id"] == changes[-1]["id"]  # the live mode deletes the label it created
        for change in changes[:2] + changes[3:5]:
            _served_change(http, change)


def test_control_endpoint_requires_the_token(sim: Simulator) -> None:
    with _client(sim) as http, _client(sim, None) as anonymous, _client(sim, "wrong") as wrong:
        before = _events(http, 3)
        for client in (anonymous, wrong):
            response = client.post("/__simulator/mutate", json={"change": "rename_source"})
            assert response.status_code == 401 and response.json()["errors"][0]["type"] == "unauthorized"
            assert client.post("/__simulator/nothing-here").status_code == 401  # no probing without a token
        assert _events(http, 3) == before  # nothing changed


def test_control_endpoint_errors_and_isolation(sim: Simulator) -> None:
    with _client(sim) as http:
        assert http.get("/__simulator/mutate").status_code == 405
        unknown = http.post("/__simulator/reset")
        assert unknown.status_code == 404 and "/__simulator/mutate" in unknown.json()["errors"][0]["message"]
        bad = http.post("/__simulator/mutate", json={"change": "burn_it_down"})
        assert bad.status_code == 422 and "rename_source" in bad.json()["errors"][0]["message"]
        for body in (b"{not json", b"[1, 2]"):
            response = http.post("/__simulator/mutate", content=body, headers={"Content-Type": "application/json"})
            assert response.status_code == 422 and response.json()["errors"][0]["field"] == "body"
        # Control requests are not API traffic: no faults, no rate limits, no stats.
        sim.reset_stats()
        sim.inject("500")
        assert http.post("/__simulator/mutate").status_code == 200
        assert sim.stats.total == 0
        assert http.get("/labels").status_code == 500  # the fault still waits for the API
        # No Segment path begins with the control prefix.
        assert not [p for p in sim.spec.document["paths"] if p.startswith("/__")]


def test_mutate_from_python(sim: Simulator) -> None:
    change = sim.mutate("toggle_destination")
    assert sim.workspace.get("destinations", change["id"])["enabled"] == change["object"]["enabled"]
    with pytest.raises(ValueError, match="unknown change"):
        sim.mutate("nope")


# ---- the command line --------------------------------------------------------------------------


@pytest.mark.e2e
def test_command_line_live_mode() -> None:
    port = free_port()
    proc = popen(
        [
            sys.executable,
            "-m",
            "segment_assets.simulator",
            "--port",
            str(port),
            "--live-interval",
            "0.2",
            "--live-changes",
            "1",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert f"http://127.0.0.1:{port}" in proc.stdout.readline()  # type: ignore[union-attr]
        assert "1 changes every 0.2 s" in proc.stdout.readline()  # type: ignore[union-attr]
        printed = [proc.stdout.readline() for _ in range(3)]  # type: ignore[union-attr]
        assert all(line.startswith("live change: ") for line in printed), printed
        events = httpx.get(
            f"http://127.0.0.1:{port}/audit-events",
            params={"pagination[count]": 50},
            headers={"Authorization": "Bearer sim-token"},
        ).json()["data"]["events"]
        types = [f"{e['type']} {e['resourceName']!r} ({e['resourceId']})" for e in events]
        assert all(line[len("live change: ") :].strip() in types for line in printed)
    finally:
        stop(proc)


def test_command_line_rejects_a_bad_interval() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "segment_assets.simulator", "--live-interval", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "live interval must be a positive number" in done.stderr
