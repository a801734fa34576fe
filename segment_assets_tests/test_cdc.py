"""Change capture end to end: simulated workspace mutations between real Dagster runs into DuckDB.

Config streams: the exact I/U/D rows each run appends to `<table>__ct`, a killed run, the
rerun. Partitioned streams: a re-run replaces its window, a range backfill is one run equal to
its single-partition runs, and `dagster asset materialize --partition-range` does the same.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter, materialize
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from segment_assets.api.streams import STREAMS, Partitioning, StreamSpec
from segment_assets.api.tables import table_def
from segment_assets.orchestration.assets import asset_key, build_assets
from segment_assets.orchestration.partitions import partitions_def
from segment_assets.orchestration.resources import DuckDBStorage
from segment_assets.simulator import Simulator
from segment_assets.storage import DuckDBTarget, q
from segment_assets_tests.conftest import materializations, segment_for
from segment_assets_tests.ground_truth import served, served_item_row, stored
from segment_assets_tests.services import popen

# Parents before children: a child reads its parent ids from the parent's stored table.
STREAM_NAMES = (
    "sources",
    "destinations",
    "source_connected_destinations",
    "tracking_plans",
    "tracking_plan_rules",
    "labels",
)
SELECTION = [asset_key(n) for n in STREAM_NAMES]
Change = tuple[str, tuple[Any, ...]]  # (header__change_oper, primary key)


@pytest.fixture(autouse=True)
def quiet_instance(dagster_home: Path) -> None:
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    """In-process runs record into an in-memory instance; the subprocess ones use DAGSTER_HOME."""
    with DagsterInstance.ephemeral() as instance:
        yield instance


# -- helpers -------------------------------------------------------------------------------


def table_rows(
    target: DuckDBTarget, stream: StreamSpec, sql: str | None = None, params: list[Any] | None = None
) -> dict[tuple, dict[str, Any]]:
    table = table_def(stream.name)
    con = target.sql_session()
    try:
        arrow = con.sql(sql or f"SELECT * FROM {q(table.name)}", params=params).to_arrow_table()
    finally:
        con.close()
    rows = arrow.select(table.column_names).cast(table.arrow_schema()).to_pylist()
    out = {tuple(r[k] for k in stream.primary_key): r for r in rows}
    assert len(out) == len(rows), f"{stream.name}: duplicate keys"
    return out


def replayed_rows(target: DuckDBTarget, stream: StreamSpec) -> dict[tuple, dict[str, Any]]:
    """The table as its change table implies it: the last I/U/D per key, deletes dropped."""
    keys = ", ".join(q(k) for k in stream.primary_key)
    return table_rows(
        target,
        stream,
        f"""
        SELECT * FROM (
            SELECT *, row_number() OVER (PARTITION BY {keys} ORDER BY header__change_seq DESC) AS _n
            FROM {q(stream.name + "__ct")} WHERE header__change_oper <> 'B')
        WHERE _n = 1 AND header__change_oper <> 'D'""",
    )


def changes(target: DuckDBTarget, stream: StreamSpec, run_ids: list[str]) -> list[Change]:
    keys = ", ".join(q(k) for k in stream.primary_key)
    marks = ", ".join("?" for _ in run_ids)
    rows = target.query(
        f"SELECT header__change_oper, {keys} FROM {q(stream.name + '__ct')} "
        f"WHERE header__run_id IN ({marks}) ORDER BY header__change_seq",
        run_ids,
    )
    return [(r[0], tuple(r[1:])) for r in rows]


def sync(sim: Simulator, storage: DuckDBStorage, instance: DagsterInstance) -> str:
    result = materialize(
        build_assets(),
        resources={"segment": segment_for(sim), "storage": storage},
        selection=SELECTION,
        instance=instance,
    )
    assert result.success
    return result.run_id


@dataclass
class Mutations:
    expected: dict[str, set[Change]]  # per stream: the change rows the next sync must write


def mutate(sim: Simulator) -> Mutations:
    """Create, update and delete across the six streams; return the exact change rows that implies."""
    ws = sim.workspace
    sources = sorted(ws.list("sources"), key=lambda s: s["id"])
    renamed, dropped = sources[0], sources[1]
    connected = {
        s["id"]: [d["id"] for d in sim.items("listConnectedDestinationsFromSource", {"sourceId": s["id"]})]
        for s in sources
    }
    destinations = [d for d in ws.list("destinations") if d["sourceId"] not in (renamed["id"], dropped["id"])]
    gone_dest, edited_dest = destinations[0], destinations[1]
    rules = {
        p["id"]: sim.items("listRulesFromTrackingPlan", {"trackingPlanId": p["id"]}) for p in ws.list("tracking_plans")
    }
    idents = [f"{r['type']}:{r.get('key')}" for rs in rules.values() for r in rs]
    # The simulator addresses a rule by type:key: edit rules of the plan that has some no other plan shares.
    ruled, renamed_plan, gone_plan = sorted(rules, key=lambda p: (-len(rules[p]), p))
    unique = [r for r in rules[ruled] if idents.count(f"{r['type']}:{r.get('key')}") == 1 and r.get("key")]
    edited_rule, gone_rule = unique[0], unique[1]
    labels = ws.list("labels")

    new_source = ws.create("sources", name="Created by CDC test", slug="cdc-test")
    ws.update("sources", renamed["id"], name="Renamed by CDC test")
    ws.delete("sources", dropped["id"])
    new_dest = ws.create("destinations", sourceId=new_source["id"], name="Created by CDC test")
    ws.update("destinations", edited_dest["id"], enabled=not edited_dest["enabled"])
    ws.delete("destinations", gone_dest["id"])
    ws.update("tracking_plans", renamed_plan, name="Renamed by CDC test")
    ws.delete("tracking_plans", gone_plan)
    ws.create("rules", trackingPlanId=renamed_plan, type="TRACK", key="CDC Test Event")
    ws.update("rules", f"{edited_rule['type']}:{edited_rule['key']}", version=edited_rule.get("version", 1) + 10)
    ws.delete("rules", f"{gone_rule['type']}:{gone_rule['key']}")
    ws.create("labels", key="team", value="cdc")
    ws.delete("labels", f"{labels[2]['key']}:{labels[2]['value']}")

    return Mutations(
        {
            "sources": {("I", (new_source["id"],)), ("U", (renamed["id"],)), ("D", (dropped["id"],))},
            "destinations": {("I", (new_dest["id"],)), ("U", (edited_dest["id"],)), ("D", (gone_dest["id"],))},
            # The dropped source takes its connections along; the others follow their destination.
            "source_connected_destinations": {
                ("I", (new_source["id"], new_dest["id"])),
                ("U", (edited_dest["sourceId"], edited_dest["id"])),
                ("D", (gone_dest["sourceId"], gone_dest["id"])),
                *{("D", (dropped["id"], d)) for d in connected[dropped["id"]]},
            },
            "tracking_plans": {("U", (renamed_plan,)), ("D", (gone_plan,))},
            "tracking_plan_rules": {
                ("I", (renamed_plan, "TRACK", "CDC Test Event")),
                ("U", (ruled, edited_rule["type"], edited_rule["key"])),
                ("D", (ruled, gone_rule["type"], gone_rule["key"])),
                *{("D", (gone_plan, r["type"], r.get("key") or "")) for r in rules[gone_plan]},
            },
            "labels": {("I", ("team", "cdc")), ("D", (labels[2]["key"], labels[2]["value"]))},
        }
    )


def assert_current_equals_served(target: DuckDBTarget, sim: Simulator) -> None:
    for name in STREAM_NAMES:
        stream = STREAMS[name]
        assert stored(target, stream) == served(stream, sim), name


def assert_changes_replay_to_current(target: DuckDBTarget, names: tuple[str, ...] = STREAM_NAMES) -> None:
    for name in names:
        if target.table_exists(name):
            assert replayed_rows(target, STREAMS[name]) == table_rows(target, STREAMS[name]), name


# -- config streams: reload and compare ----------------------------------------------------


def test_sync_mutate_sync_writes_exact_change_rows_then_an_unchanged_rerun_writes_none(
    sim: Simulator, storage: DuckDBStorage, target: DuckDBTarget, instance: DagsterInstance
) -> None:
    first = sync(sim, storage, instance)
    for name in STREAM_NAMES:
        stream = STREAMS[name]
        assert sorted(changes(target, stream, [first])) == sorted(("I", k) for k in served(stream, sim))

    mutations = mutate(sim)
    second = sync(sim, storage, instance)
    for name in STREAM_NAMES:
        got = changes(target, STREAMS[name], [second])
        assert len(got) == len(set(got)) and set(got) == mutations.expected[name], name
        stamps = target.query(
            f"SELECT DISTINCT header__timestamp, left(header__change_seq, 16) FROM {name}__ct WHERE header__run_id = ?",
            [second],
        )
        assert len(stamps) == 1, f"{name}: one transaction, one timestamp and one change_seq prefix"
    assert_current_equals_served(target, sim)
    assert_changes_replay_to_current(target)

    third = sync(sim, storage, instance)
    assert all(changes(target, STREAMS[n], [third]) == [] for n in STREAM_NAMES)
    assert_current_equals_served(target, sim)


SUBPROCESS_SYNC = textwrap.dedent("""
    import sys
    from segment_assets.cli.commands import run_sync
    from segment_assets.orchestration.resources import DuckDBStorage, SegmentResource
    url, token, path, *streams = sys.argv[1:]
    run_sync(streams, segment=SegmentResource(api_token=token, api_url=url, pace_requests=False, max_concurrency=2),
             storage=DuckDBStorage(path=path))
""")


@pytest.mark.e2e
def test_kill_mid_run_leaves_tables_consistent_and_the_rerun_converges(
    storage: DuckDBStorage, target: DuckDBTarget, instance: DagsterInstance
) -> None:
    sim = Simulator(seed=7, latency_ms=40)
    sim.start()
    try:
        first = sync(sim, storage, instance)
        mutations = mutate(sim)
        sim.reset_stats()
        proc = popen(
            [sys.executable, "-c", SUBPROCESS_SYNC, sim.url, sim.token, storage.path, *STREAM_NAMES],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            # Children page through their parents' ids: by then the parents' writes are committed.
            while sim.stats.by_operation["listConnectedDestinationsFromSource"] < 2:
                assert proc.poll() is None and time.monotonic() < deadline, "the sync ended before the kill"
                time.sleep(0.005)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
        assert proc.returncode == -signal.SIGKILL

        assert_changes_replay_to_current(target)
        killed = {n: [c for c in changes(target, STREAMS[n], _runs_except(target, n, first))] for n in STREAM_NAMES}
        assert set(killed["sources"]) == mutations.expected["sources"]  # committed before the kill
        assert killed["source_connected_destinations"] == []  # was being read: nothing of it written

        rerun = sync(sim, storage, instance)
        assert_current_equals_served(target, sim)
        assert_changes_replay_to_current(target)
        for name in STREAM_NAMES:
            after_first = changes(target, STREAMS[name], _runs_except(target, name, first))
            assert sorted(after_first) == sorted(mutations.expected[name]), name  # nothing lost, nothing twice
        assert changes(target, STREAMS["sources"], [rerun]) == []
    finally:
        sim.stop()


def _runs_except(target: DuckDBTarget, name: str, run_id: str) -> list[str]:
    rows = target.query(f"SELECT DISTINCT header__run_id FROM {name}__ct WHERE header__run_id <> ?", [run_id])
    return [r[0] for r in rows] or ["-"]


# -- partitioned streams: replace a window -------------------------------------------------

AUDIT = STREAMS["audit_events"]
DAILY = partitions_def(Partitioning.DAILY)


def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def served_audit(sim: Simulator, start: datetime, end: datetime) -> list[dict[str, Any]]:
    events = sim.items("listAuditEvents", {}, {"startTime": _iso(start), "endTime": _iso(end)})
    return sorted((served_item_row(AUDIT, e, {}) for e in events), key=lambda r: r["id"])


def audit_rows(target: DuckDBTarget, start: datetime | None = None, end: datetime | None = None) -> list[dict]:
    where, params = ("WHERE timestamp >= ? AND timestamp < ?", [start, end]) if start else ("", [])
    return sorted(stored(target, AUDIT, where, params).values(), key=lambda r: r["id"])


def last_days(n: int) -> list[str]:
    keys = DAILY.get_partition_keys()
    return keys[-n:]


def test_partition_rerun_replaces_and_never_duplicates(
    sim: Simulator, storage: DuckDBStorage, target: DuckDBTarget
) -> None:
    neighbour, key = last_days(2)
    resources = {"segment": segment_for(sim), "storage": storage}
    for k in (neighbour, key):
        assert materialize(
            build_assets(), resources=resources, selection=[asset_key("audit_events")], partition_key=k
        ).success
    window = DAILY.time_window_for_partition_key(key)
    other = DAILY.time_window_for_partition_key(neighbour)
    before, untouched = audit_rows(target, window.start, window.end), audit_rows(target, other.start, other.end)
    assert before == served_audit(sim, window.start, window.end) and before and untouched
    added = sim.workspace.add_audit_events(3, at=window.start + timedelta(hours=5))
    assert materialize(
        build_assets(), resources=resources, selection=[asset_key("audit_events")], partition_key=key
    ).success
    after = audit_rows(target, window.start, window.end)
    assert after == served_audit(sim, window.start, window.end)
    assert {r["id"] for r in after} == {r["id"] for r in before} | {e["id"] for e in added}
    assert audit_rows(target, other.start, other.end) == untouched
    assert len(audit_rows(target)) == len(after) + len(untouched)


@pytest.fixture
def five_days(sim: Simulator) -> tuple[list[str], datetime, datetime]:
    keys = last_days(6)[:5]  # ends the day before yesterday: nothing new lands in it meanwhile
    return keys, DAILY.time_window_for_partition_key(keys[0]).start, DAILY.time_window_for_partition_key(keys[-1]).end


def test_range_backfill_in_one_run_equals_five_single_partition_runs(
    sim: Simulator, tmp_path: Path, instance: DagsterInstance, five_days: tuple[list[str], datetime, datetime]
) -> None:
    keys, start, end = five_days
    ranged, single = DuckDBTarget(tmp_path / "ranged.duckdb"), DuckDBTarget(tmp_path / "single.duckdb")
    result = materialize(
        build_assets(),
        resources={"segment": segment_for(sim), "storage": DuckDBStorage(path=ranged.path)},
        selection=[asset_key("audit_events")],
        instance=instance,
        tags={ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]},
    )
    assert result.success
    mats = materializations(result, "audit_events")
    assert sorted(m.partition for m in mats) == keys  # one run, one materialization per partition
    assert {m.metadata["segment/window"].value for m in mats} == {f"{_iso(start)} .. {_iso(end)}"}
    # Dagster records the run's metadata on each of the 5 partitions: it says the counts are the
    # window's, and gives each partition its own rows (which add up to the window's).
    [by_partition] = {json.dumps(m.metadata["segment/rows_by_partition"].value) for m in mats}
    stored = dict(
        ranged.query(
            "SELECT strftime(timestamp AT TIME ZONE 'UTC', '%Y-%m-%d'), count(*) FROM audit_events "
            "GROUP BY 1 ORDER BY 1"
        )
    )
    assert json.loads(by_partition) == {key: stored.get(key, 0) for key in keys}
    assert sum(json.loads(by_partition).values()) == mats[0].metadata["dagster/row_count"].value
    assert all("whole window" in m.metadata["segment/metadata_scope"].value for m in mats)
    for key in keys:
        assert materialize(
            build_assets(),
            resources={"segment": segment_for(sim), "storage": DuckDBStorage(path=single.path)},
            selection=[asset_key("audit_events")],
            partition_key=key,
            instance=instance,
        ).success
    assert audit_rows(ranged) == audit_rows(single) == served_audit(sim, start, end)
    assert len(audit_rows(ranged)) > 5 * 20


@pytest.mark.e2e
def test_cli_partition_range_materializes_in_one_run(
    sim: Simulator, tmp_path: Path, dagster_home: Path, five_days: tuple[list[str], datetime, datetime]
) -> None:
    keys, start, end = five_days
    path = tmp_path / "cli.duckdb"
    env = {
        **os.environ,
        "SEGMENT_API_TOKEN": sim.token,
        "SEGMENT_API_URL": sim.url,
        "SEGMENT_DUCKDB_PATH": str(path),
        "SEGMENT_PACE_REQUESTS": "false",
        "DAGSTER_HOME": str(dagster_home),
    }
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("dagster")),
            "asset",
            "materialize",
            "-m",
            "segment_assets.definitions",
            "--select",
            "segment/audit_events",
            "--partition-range",
            f"{keys[0]}...{keys[-1]}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sim-token" not in done.stdout + done.stderr
    assert audit_rows(DuckDBTarget(path)) == served_audit(sim, start, end)
    with DagsterInstance.get() as instance:
        runs = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.SUCCESS]))
    assert len(runs) == 1
    assert (runs[0].tags[ASSET_PARTITION_RANGE_START_TAG], runs[0].tags[ASSET_PARTITION_RANGE_END_TAG]) == (
        keys[0],
        keys[-1],
    )
