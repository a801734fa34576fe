"""Every query of the README's "Questions answered in SQL" runs on a synced demo workspace and answers right.

The workspace is synced twice, with a source renamed and a destination toggled in between, so
the change tables hold updates that the audit trail explains. "Today" is pinned when the module
starts, for the sync (Dagster's `partition_loading_context`: the last complete day is the day
before it) and for the queries (`current_date` reads as that date), so a run across midnight UTC
answers as any other. The simulator's clock starts two hours before that midnight, so the
changes, like the rest of its audit trail, fall on "yesterday": the daily partition the sync loads.
"""

from __future__ import annotations

import io
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from dagster import partition_loading_context

from segment_assets.cli.commands import run_sync
from segment_assets.orchestration.resources import DuckDBStorage, SegmentResource
from segment_assets.simulator import Simulator

# One module-scoped sync of the whole demo workspace.
pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = "## Questions answered in SQL"


def queries() -> tuple[list[str], dict[str, str]]:
    """(setup statements before the first question, question title -> its SQL)."""
    text = README.read_text(encoding="utf-8")
    assert SECTION in text, f"README.md has no section {SECTION!r}"
    text = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    setup: list[str] = []
    by_title: dict[str, str] = {}
    title = None
    for heading, sql in re.findall(r"^### (.+?)$|^```sql\n(.*?)^```", text, re.S | re.M):
        if heading:
            title = heading
        elif title is None:
            setup.append(sql)
        else:
            assert title not in by_title, f"question {title!r} has two sql blocks"
            by_title[title] = sql
    return setup, by_title


SETUP, QUERIES = queries()


@dataclass
class Loaded:
    db: Path
    today: datetime  # the pinned "today" (a UTC midnight)
    day: datetime  # start of the UTC day the daily partition covers ("yesterday")
    renamed: dict[str, Any]
    name_before: str
    toggled: dict[str, Any]
    destinations: list[dict[str, Any]]
    sources: list[dict[str, Any]]
    tracking_plan_of: dict[str, str | None]
    audit_events: list[dict[str, Any]]
    volume: list[dict[str, Any]]
    syncs: dict[str, list[dict[str, Any]]]
    between: datetime  # a moment after the first sync and before the changes
    sources_then: list[dict[str, Any]]  # the sources at that moment


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    tmp = tmp_path_factory.mktemp("sql_examples")
    db = tmp / "segment_assets.duckdb"
    noon = today + timedelta(hours=12)  # the sync's "now": its last complete day is the one before `today`
    with pytest.MonkeyPatch.context() as mp, Simulator(seed=7, now=today - timedelta(hours=2)) as sim:
        mp.setenv("DAGSTER_HOME", str(tmp / "dagster_home"))
        segment = SegmentResource(api_token=sim.token, api_url=sim.url, pace_requests=False)
        storage = DuckDBStorage(path=str(db))
        with partition_loading_context(effective_dt=noon):
            run_sync(None, segment=segment, storage=storage, out=io.StringIO())
        sources_then = sim.items("listSources")
        names = {s["id"]: s["name"] for s in sources_then}
        between = datetime.now(UTC)
        renamed = sim.mutate("rename_source")
        toggled = sim.mutate("toggle_destination")
        with partition_loading_context(effective_dt=noon):
            run_sync(["sources", "destinations", "audit_events"], segment=segment, storage=storage, out=io.StringIO())
        day = today - timedelta(days=1)
        window = {"startTime": _iso(day), "endTime": _iso(today)}
        sources = sim.items("listSources")
        yield Loaded(
            db=db,
            today=today,
            day=day,
            renamed=renamed,
            name_before=names[renamed["id"]],
            toggled=toggled,
            destinations=sim.items("listDestinations"),
            sources=sources,
            tracking_plan_of={
                s["id"]: sim.items("getSource", {"sourceId": s["id"]})[0]["trackingPlanId"] for s in sources
            },
            audit_events=sim.items("listAuditEvents", query=window),
            volume=sim.items(
                "getEventsVolumeFromWorkspace",
                query={**window, "granularity": "HOUR", "groupBy": ["eventName", "eventType", "source"]},
            ),
            syncs={
                w["id"]: sim.items("listSyncsFromWarehouse", {"warehouseId": w["id"]})
                for w in sim.items("listWarehouses")
            },
            between=between,
            sources_then=sources_then,
        )


def answer(loaded: Loaded, title: str) -> list[dict[str, Any]]:
    con = duckdb.connect(str(loaded.db), read_only=True)
    try:
        for statement in SETUP:
            con.execute(statement)
        # The pinned "today", whatever the clock says by now.
        sql = re.sub(r"\bcurrent_date\b", f"DATE '{loaded.today.date().isoformat()}'", QUERIES[title], flags=re.I)
        # The moment a history question asks about: one between the two syncs.
        sql = re.sub(r"(SET VARIABLE as_of = TIMESTAMPTZ )'[^']*'", rf"\1'{loaded.between.isoformat()}'", sql)
        rel = con.sql(sql)
        return [dict(zip(rel.columns, row)) for row in rel.fetchall()]
    finally:
        con.close()


def test_the_draft_has_the_questions_asked_for() -> None:
    assert SETUP and "SET TimeZone = 'UTC'" in SETUP[0]
    assert len(QUERIES) >= 7
    for title in (
        "Which destinations are disabled?",
        "Which sources have no tracking plan?",
        "Who changed what yesterday?",
        "Event volume per source, last week",
    ):
        assert title in QUERIES


@pytest.mark.parametrize("title", list(QUERIES))
def test_every_query_runs(loaded: Loaded, title: str) -> None:
    rows = answer(loaded, title)
    assert isinstance(rows, list)


def test_disabled_destinations(loaded: Loaded) -> None:
    rows = answer(loaded, "Which destinations are disabled?")
    expected = {d["id"] for d in loaded.destinations if not d["enabled"]}
    assert expected, "the demo workspace has a disabled destination"
    assert {r["id"] for r in rows} == expected


def test_sources_without_tracking_plan(loaded: Loaded) -> None:
    rows = answer(loaded, "Which sources have no tracking plan?")
    expected = {sid for sid, plan in loaded.tracking_plan_of.items() if plan is None}
    assert expected and expected != set(loaded.tracking_plan_of)
    assert {r["id"] for r in rows} == expected


def test_who_changed_what_yesterday_joins_the_audit_trail_to_the_captured_changes(loaded: Loaded) -> None:
    rows = answer(loaded, "Who changed what yesterday?")
    assert sorted(r["what"] for r in rows) == sorted(e["type"] for e in loaded.audit_events)
    renamed = loaded.renamed
    row = next(
        r
        for r in rows
        if r["resource_id"] == renamed["id"]
        and r["what"] == renamed["type"]
        and r["timestamp"] == datetime.fromisoformat(renamed["timestamp"])
    )
    assert row["captured"] == "U"
    assert (row["name_before"], row["name_after"]) == (loaded.name_before, renamed["object"]["name"])
    toggled = loaded.toggled
    row = next(
        r
        for r in rows
        if r["resource_id"] == toggled["id"] and r["timestamp"] == datetime.fromisoformat(toggled["timestamp"])
    )
    assert row["captured"] == "U"
    assert (row["enabled_before"], row["enabled_after"]) == (
        not toggled["object"]["enabled"],
        toggled["object"]["enabled"],
    )
    # Changes are matched on kind, not only id: a user event captures no source change.
    assert all(r["captured"] is None for r in rows if r["what"].startswith("User "))


def test_event_volume_per_source(loaded: Loaded) -> None:
    rows = answer(loaded, "Event volume per source, last week")
    expected: dict[str, float] = defaultdict(float)
    for item in loaded.volume:
        expected[item["source"]["id"]] += sum(point["count"] for point in item["series"])
    assert {r["source_id"]: r["events"] for r in rows} == dict(expected)
    names = {s["id"]: s["name"] for s in loaded.sources}
    assert all(r["source"] == names[r["source_id"]] for r in rows)


def test_source_history_has_a_version_per_change(loaded: Loaded) -> None:
    rows = answer(loaded, "The history of a source (SCD type 2)")
    history = [r for r in rows if r["id"] == loaded.renamed["id"]]
    assert [r["name"] for r in history] == [loaded.name_before, loaded.renamed["object"]["name"]]
    assert history[0]["valid_to"] == history[1]["valid_from"]
    assert [r["is_current"] for r in history] == [False, True]
    assert {r["id"] for r in rows if r["is_current"]} == {s["id"] for s in loaded.sources}


def test_sources_enabled_at_a_moment_have_the_names_they_had_then(loaded: Loaded) -> None:
    rows = answer(loaded, "Which sources were enabled at a given moment?")
    expected = sorted((s["name"], s["id"]) for s in loaded.sources_then if s["enabled"])
    assert expected and len(expected) < len(loaded.sources_then)
    assert [(r["name"], r["id"]) for r in rows] == expected
    assert loaded.name_before in {r["name"] for r in rows} or loaded.renamed["object"]["enabled"] is False


def test_who_changed_a_destination_names_the_actor_and_the_values(loaded: Loaded) -> None:
    rows = answer(loaded, "Who changed a destination, and what exactly changed?")
    toggled = loaded.toggled
    event = next(e for e in loaded.audit_events if e["id"] == toggled["auditEventId"])
    row = next(r for r in rows if r["id"] == toggled["id"])
    assert row["who"] == (event.get("actorEmail") or event["actor"]) and row["what"] == "Destination Modified"
    assert row["changed_at"] == datetime.fromisoformat(event["timestamp"])
    assert (row["enabled_before"], row["enabled_after"]) == (
        not toggled["object"]["enabled"],
        toggled["object"]["enabled"],
    )
    assert row["settings_changed"] is False
    assert len(rows) == 1  # only the toggled destination was updated


def test_warehouses_whose_last_sync_failed(loaded: Loaded) -> None:
    rows = answer(loaded, "Warehouses whose last sync failed")
    expected = set()
    for warehouse_id, syncs in loaded.syncs.items():
        latest: dict[str, dict[str, Any]] = {}
        for sync in syncs:
            if sync["sourceId"] not in latest or sync["start"] > latest[sync["sourceId"]]["start"]:
                latest[sync["sourceId"]] = sync
        expected |= {(warehouse_id, sid) for sid, sync in latest.items() if sync["status"] == "failed"}
    names = {s["id"]: s["name"] for s in loaded.sources}
    assert {(r["warehouse_id"], r["source"]) for r in rows} == {(w, names.get(s)) for w, s in expected}
    assert all(r["status"] == "failed" for r in rows)


def test_untracked_sources_with_their_volume(loaded: Loaded) -> None:
    rows = answer(loaded, "Sources no tracking plan covers, and their event volume yesterday")
    untracked = {sid for sid, plan in loaded.tracking_plan_of.items() if plan is None}
    volume: dict[str, float] = defaultdict(float)
    for item in loaded.volume:
        volume[item["source"]["id"]] += sum(point["count"] for point in item["series"])
    names = {s["id"]: s["name"] for s in loaded.sources}
    assert {r["source"]: r["events_yesterday"] for r in rows} == {names[s]: volume.get(s) for s in untracked}
