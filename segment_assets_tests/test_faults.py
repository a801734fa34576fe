"""Issue 5's fault suite: the simulator misbehaves, real DuckDB files hold the result.

Every test compares data: a faulty run's tables against a clean run's, a failed run's
tables against what was there before, a change table's replay against its current table.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
from dagster import DagsterInstance, ExecuteInProcessResult, materialize, serialize_value

from segment_assets.api.client import SegmentClient
from segment_assets.api.streams import STREAMS, StreamSpec, materialized_streams
from segment_assets.cli.commands import _instance, run_sync
from segment_assets.engine import progress
from segment_assets.engine.runner import StreamOutcome
from segment_assets.orchestration.assets import asset_key, build_assets
from segment_assets.orchestration.partitions import partitions_def
from segment_assets.orchestration.resources import DuckDBStorage, SegmentResource
from segment_assets.simulator import Simulator
from segment_assets_tests.conftest import segment_for
from segment_assets_tests.services import popen

ROOT = Path(__file__).resolve().parent.parent
ASSETS = build_assets()
BY_TABLE = {s.table: s for s in materialized_streams()}
# Two simulators only serve the same time-based rows if their clocks share an anchor.
ANCHOR = datetime.now(UTC).replace(microsecond=0)
VOLATILE_HEADERS = ("header__change_seq", "header__timestamp", "header__run_id")

# Every paging mode (cursor, none, per-key cursors, top-level count, numeric offset), fan-out
# over parents two levels deep, a watermark stream, and daily and monthly partitions.
REPRESENTATIVE = [
    "workspace",
    "sources",
    "source_connected_destinations",
    "destinations",
    "destination_filters",
    "tracking_plans",
    "tracking_plan_rules",
    "labels",
    "credentials",
    "credential_consumers",
    "user_groups",
    "user_group_users",
    "catalog_destinations",
    "warehouses",
    "warehouse_syncs",
    "destination_subscriptions",
    "reverse_etl_sync_statuses",
    "spaces",
    "space_filters",
    "audiences",
    "audit_events",
    "events_volume",
    "delivery_successful_delivery",
    "usage_api_calls_daily",
]
SMALL = ["sources", "destinations", "source_connected_destinations", "tracking_plans", "tracking_plan_rules"]


# -- running syncs ----------------------------------------------------------------------------


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """SegmentResource has no backoff field: shrink the client's default so retries cost ms."""
    init = SegmentClient.__init__

    def fast(self: SegmentClient, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("backoff_base", 0.01)
        kwargs.setdefault("backoff_cap", 0.1)
        init(self, *args, **kwargs)

    monkeypatch.setattr(SegmentClient, "__init__", fast)


def _window(stream: str) -> Any:
    return STREAMS[stream].windowing.partitioning if STREAMS[stream].windowing else None


def sync(sim: Simulator, path: Path, streams: Sequence[str], **overrides: Any) -> list[ExecuteInProcessResult]:
    """Materialize `streams` as `run_sync` does (config, then the latest daily and monthly partitions),
    on an in-memory Dagster instance, which costs half as much per step as a SQLite one."""
    resources = {"segment": segment_for(sim, **overrides), "storage": DuckDBStorage(path=str(path))}
    results = []
    for window in dict.fromkeys(_window(s) for s in streams):
        names = [s for s in streams if _window(s) is window]
        results.append(
            materialize(
                ASSETS,
                instance=DagsterInstance.ephemeral(),
                resources=resources,
                selection=[asset_key(s) for s in names],
                raise_on_error=False,
                partition_key=partitions_def(window).get_last_partition_key() if window else None,
            )
        )
    return results


def failures(results: Sequence[ExecuteInProcessResult]) -> dict[str, str]:
    """Stream -> its error, as the step failure records it: the multi-asset's Failure lists one
    `stream: error` line per failed stream; a refused token stops the run and is keyed 'token'."""
    out = {}
    for event in (e for r in results for e in r.all_events if e.is_step_failure):
        error, parts = event.event_specific_data.error, []
        while error is not None:
            parts.append(error.message.strip())
            if error.cls_name == "Failure":
                for line in error.message.strip().splitlines()[1:]:
                    stream, _, message = line.partition(": ")
                    out[stream] = message
            elif error.cls_name == "SegmentAuthError":
                out["token"] = error.message.strip()
            error = error.cause
    return out


# -- reading DuckDB files -----------------------------------------------------------------------


def _connect(path: Path) -> tuple[duckdb.DuckDBPyConnection, str]:
    con = duckdb.connect(str(path), read_only=True)
    return con, con.execute("SELECT current_database()").fetchone()[0]


def _tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'segment' "
        "AND table_name NOT LIKE '\\_%' ESCAPE '\\' AND table_type = 'BASE TABLE' ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'segment' "
        "AND table_name = ? ORDER BY ordinal_position",
        [table],
    ).fetchall()
    return [r[0] for r in rows]


def dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows, sorted; change tables without their run-specific headers."""
    con, cat = _connect(path)
    try:
        out = {}
        for table in _tables(con):
            cols = ", ".join(f'"{c}"' for c in _columns(con, table) if c not in VOLATILE_HEADERS)
            out[table] = con.execute(f'SELECT {cols} FROM "{cat}".segment."{table}" ORDER BY ALL').fetchall()
        return out
    finally:
        con.close()


def dump_exact(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows with every column, change headers included."""
    con, cat = _connect(path)
    try:
        return {t: con.execute(f'SELECT * FROM "{cat}".segment."{t}" ORDER BY ALL').fetchall() for t in _tables(con)}
    finally:
        con.close()


def integrity_problems(path: Path) -> list[str]:
    """Duplicate keys in any table or change table, and change tables whose replay is not the table."""
    con, cat = _connect(path)
    problems = []
    try:
        tables = _tables(con)
        for table in (t for t in tables if not t.endswith("__ct")):
            keys = ", ".join(f'"{k}"' for k in BY_TABLE[table].primary_key)
            cur = f'"{cat}".segment."{table}"'
            dupes = con.execute(f"SELECT count(*) - count(DISTINCT ({keys})) FROM {cur}").fetchone()[0]
            if dupes:
                problems.append(f"{table}: {dupes} duplicate key(s)")
            if f"{table}__ct" not in tables:
                continue
            ct = f'"{cat}".segment."{table}__ct"'
            dupes = con.execute(
                f"SELECT count(*) - count(DISTINCT ({keys}, header__change_seq, header__change_oper)) FROM {ct}"
            ).fetchone()[0]
            if dupes:
                problems.append(f"{table}__ct: {dupes} change event(s) recorded twice")
            cols = ", ".join(f'"{c}"' for c in _columns(con, table))
            differ = con.execute(f"""
                WITH last AS (
                    SELECT *, row_number() OVER (PARTITION BY {keys} ORDER BY header__change_seq DESC) AS rn
                    FROM {ct} WHERE header__change_oper <> 'B'),
                replay AS (SELECT {cols} FROM last WHERE rn = 1 AND header__change_oper <> 'D')
                SELECT count(*) FROM ((SELECT * FROM replay EXCEPT ALL SELECT {cols} FROM {cur})
                                      UNION ALL (SELECT {cols} FROM {cur} EXCEPT ALL SELECT * FROM replay))
            """).fetchone()[0]
            if differ:
                problems.append(f"{table}: {differ} row(s) differ from the replay of {table}__ct")
    finally:
        con.close()
    return problems


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    con, cat = _connect(path)
    try:
        con.execute(f'USE "{cat}".segment')
        return con.execute(sql).fetchall()
    finally:
        con.close()


def differing(a: dict[str, list], b: dict[str, list], tables: Sequence[str] | None = None) -> list[str]:
    names = sorted(set(a) | set(b)) if tables is None else tables
    return [t for t in names if a.get(t) != b.get(t)]


def mutate(sim: Simulator) -> None:
    """Changes a second run must apply: insert, update and delete rows of parents and children."""
    ws = sim.workspace
    sources, destinations = ws.list("sources"), ws.list("destinations")
    ws.create("sources", name="Arrived Between Runs")
    ws.update("sources", sources[0]["id"], name="Renamed Between Runs")
    ws.delete("destinations", destinations[-1]["id"])
    ws.update("destinations", destinations[0]["id"], enabled=not destinations[0]["enabled"])
    plan = ws.list("tracking_plans")[0]["id"]
    ws.create("rules", trackingPlanId=plan, type="TRACK", key="Added Between Runs")


# -- transient faults: the result is the clean result ------------------------------------------


@pytest.mark.e2e
def test_transient_faults_converge_to_the_clean_tables(tmp_path: Path, fast_backoff: None) -> None:
    clean_db, faulty_db = tmp_path / "clean.duckdb", tmp_path / "faulty.duckdb"
    with Simulator(seed=11, scale=0.3, now=ANCHOR) as clean:
        assert not failures(sync(clean, clean_db, REPRESENTATIVE, page_size=3))
    faults = (
        "429:0.05:ms_before_next=40,500:0.14,502:0.03,503:0.03,timeout:0.02:seconds=2,"
        "reset:0.03,malformed:0.01,truncated:0.01"
    )
    with Simulator(seed=11, scale=0.3, now=ANCHOR, faults=faults) as faulty:
        faulty.inject("429", times=6, ms_before_next=50)  # a storm before anything else
        results = sync(faulty, faulty_db, REPRESENTATIVE, page_size=3, max_retries=10, read_timeout=0.5)
        served = faulty.stats["by_status"]
    assert not failures(results)
    assert served.get(429, 0) >= 6 and served.get(500, 0) > 0, "the faults were served"

    expected, got = dump(clean_db), dump(faulty_db)
    assert all(expected[STREAMS[s].table] for s in REPRESENTATIVE), "every compared table holds rows"
    assert sorted(got) == sorted(expected)
    assert differing(expected, got) == []
    assert integrity_problems(faulty_db) == []


# -- malformed data: persistent is a clear error, transient is invisible -----------------------

PERSISTENT = [
    pytest.param("malformed", {}, ("stream sources", "unreadable 200 body"), id="malformed"),
    pytest.param("truncated", {}, ("stream sources", "unreadable 200 body"), id="truncated"),
    pytest.param("repeat_cursor", {}, ("stream sources", "cursor", "twice"), id="repeat_cursor"),
    pytest.param("missing_field", {"field": "id"}, ("stream sources", "primary-key field 'id'"), id="missing_key"),
    pytest.param(
        "missing_field",
        {"field": "slug"},
        ("stream sources", "'slug'", "require_documented_fields"),
        id="missing_required",
    ),
    pytest.param(
        "type_change", {"field": "name"}, ("stream sources", "'name'", "changed the field's type"), id="type_change"
    ),
]
TRANSIENT = [
    pytest.param("malformed", {}, id="malformed"),
    pytest.param("truncated", {}, id="truncated"),
    pytest.param("repeat_cursor", {}, id="repeat_cursor"),
    pytest.param("missing_field", {"field": "id"}, id="missing_key"),
    pytest.param("missing_field", {"field": "slug"}, id="missing_required"),
    pytest.param("type_change", {"field": "name"}, id="type_change"),
]


@pytest.fixture(scope="module")
def sources_loaded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`sources` loaded from seed 5 ("before"), and from seed 5 after `mutate` ("after")."""
    home = tmp_path_factory.mktemp("sources")
    paths = {"before": home / "before.duckdb", "after": home / "after.duckdb"}
    with Simulator(seed=5, scale=0.5) as sim:
        assert not failures(sync(sim, paths["before"], ["sources"], page_size=2))
        mutate(sim)
        assert not failures(sync(sim, paths["after"], ["sources"], page_size=2))
    return paths


def _faulty_sources_run(
    sources_loaded: dict[str, Path], tmp_path: Path, kind: str, params: dict[str, Any], times: int
) -> tuple[Path, dict[str, str]]:
    db = tmp_path / "sources.duckdb"
    db.write_bytes(sources_loaded["before"].read_bytes())
    with Simulator(seed=5, scale=0.5) as sim:
        mutate(sim)  # a successful run would change the table
        sim.inject(kind, "listSources", times=times, **params)
        results = sync(sim, db, ["sources"], page_size=2, max_retries=2)
    return db, failures(results)


@pytest.mark.parametrize(("kind", "params", "says"), PERSISTENT)
def test_persistent_bad_page_fails_clearly_and_keeps_the_table(
    sources_loaded: dict[str, Path],
    tmp_path: Path,
    fast_backoff: None,
    kind: str,
    params: dict[str, Any],
    says: tuple[str, ...],
) -> None:
    db, failed = _faulty_sources_run(sources_loaded, tmp_path, kind, params, times=50)
    assert list(failed) == ["sources"], "the stream fails"
    assert [s for s in says if s not in failed["sources"]] == [], failed["sources"]
    assert dump_exact(db) == dump_exact(sources_loaded["before"]), "table and change table untouched"


@pytest.mark.parametrize(("kind", "params"), TRANSIENT)
def test_transient_bad_page_is_invisible(
    sources_loaded: dict[str, Path], tmp_path: Path, fast_backoff: None, kind: str, params: dict[str, Any]
) -> None:
    db, failed = _faulty_sources_run(sources_loaded, tmp_path, kind, params, times=1)
    assert failed == {}
    assert dump(db)["sources"] == dump(sources_loaded["after"])["sources"]
    assert integrity_problems(db) == []


# -- kill -9 in the middle of a write -----------------------------------------------------------


def _env(sim: Simulator, db: Path, token: str | None = None) -> dict[str, str]:
    return {
        **os.environ,
        "SEGMENT_API_TOKEN": token or sim.token,
        "SEGMENT_API_URL": sim.url,
        "SEGMENT_PACE_REQUESTS": "false",
        "SEGMENT_DUCKDB_PATH": str(db),
        "PYTHONPATH": str(ROOT),
    }


def _spawn(args: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    # Output goes to a file: a full pipe would stall a child, possibly while it holds the DuckDB lock.
    with log.open("w") as out:
        return popen([sys.executable, *args], env=env, cwd=log.parent, stdout=out, stderr=subprocess.STDOUT)


def _wait_for(check: Callable[[], bool], proc: subprocess.Popen, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc.poll() is not None:
            raise AssertionError(f"the sync ended (rc {proc.returncode}) before {what}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.e2e
def test_kill_9_mid_write_keeps_committed_tables_and_the_rerun_converges(tmp_path: Path) -> None:
    db, reference_db, marker = tmp_path / "killed.duckdb", tmp_path / "reference.duckdb", tmp_path / "paused"
    with Simulator(seed=13, scale=0.4, latency_ms=15) as sim:
        assert not failures(sync(sim, db, SMALL))
        before = dump_exact(db)
        mutate(sim)
        # The rules (a child) are written after the parents have committed their changes:
        # freeze that write after its DELETE/INSERTs, before COMMIT, and SIGKILL it there.
        log = tmp_path / "worker.log"
        proc = _spawn(
            [
                "-m",
                "segment_assets_tests.fault_worker",
                *SMALL,
                "--pause-before-commit",
                "tracking_plan_rules",
                "--marker",
                str(marker),
            ],
            _env(sim, db),
            log,
        )
        try:
            _wait_for(marker.exists, proc, 60, "the tracking_plan_rules write reached COMMIT", log)
            assert list(db.parent.glob(".staging/tracking_plan_rules.*.parquet")), "the write had staged its rows"
        finally:
            proc.send_signal(signal.SIGKILL)  # kill -9, mid-transaction
            proc.wait(10)
        assert proc.returncode == -signal.SIGKILL

        after_kill = dump_exact(db)
        assert after_kill["tracking_plan_rules"] == before["tracking_plan_rules"], "the open write left no trace"
        assert after_kill["tracking_plan_rules__ct"] == before["tracking_plan_rules__ct"]
        for table in ("sources", "destinations"):
            assert after_kill[table] != before[table], f"{table} committed its changes before the kill"
        assert integrity_problems(db) == []

        assert not failures(sync(sim, db, SMALL))  # the rerun
        assert not list(db.parent.glob(".staging/*.parquet")), "the killed run's staging file was swept"
        assert not failures(sync(sim, reference_db, SMALL))  # a clean run of the same workspace
    assert differing(dump(reference_db), dump(db), [STREAMS[s].table for s in SMALL]) == []
    assert integrity_problems(db) == []
    # The changes committed before the kill are not recorded a second time by the rerun.
    assert query(db, "SELECT header__change_oper FROM sources__ct WHERE name = 'Renamed Between Runs'") == [("U",)]
    assert query(db, "SELECT header__change_oper FROM sources__ct WHERE name = 'Arrived Between Runs'") == [("I",)]
    assert query(
        db, "SELECT header__change_oper FROM destinations__ct WHERE header__change_oper <> 'I' ORDER BY 1"
    ) == [("D",), ("U",)]
    assert query(db, "SELECT header__change_oper FROM tracking_plan_rules__ct WHERE key = 'Added Between Runs'") == [
        ("I",)
    ]


# -- 401 and 403 ----------------------------------------------------------------------------------


def test_401_at_start_is_fatal_names_the_variable_and_changes_nothing(tmp_path: Path) -> None:
    db, wrong = tmp_path / "auth.duckdb", "sk-revoked-token-999"
    with Simulator(seed=3, scale=0.3, tokens=("good-token-1",)) as sim:
        assert not failures(sync(sim, db, SMALL))
        before = dump_exact(db)
        mutate(sim)
        sim.reset_stats()
        bad = SegmentResource(api_token=wrong, api_url=sim.url, pace_requests=False)
        resources = {"segment": bad, "storage": DuckDBStorage(path=str(db))}
        result = materialize(
            ASSETS,
            resources=resources,
            selection=[asset_key(s) for s in SMALL],
            instance=DagsterInstance.ephemeral(),
            raise_on_error=False,
        )
        refused = sim.stats["by_status"]
        served = sim.stats.total
    failed = failures([result])
    assert not result.success and list(failed) == ["token"], "one failure for the run, not one per stream"
    assert "HTTP 401" in failed["token"] and "SEGMENT_API_TOKEN" in failed["token"] and wrong not in failed["token"]
    assert "Create token" in failed["token"], "the message says how to create a token"
    assert refused == {401: 1} and served == 1, "the first 401 stops the sync: exactly one request"
    assert dump_exact(db) == before


class RevokeWhenStarted:
    """A progress observer that makes the simulator refuse the token once stream `name` starts."""

    def __init__(self, sim: Simulator, name: str) -> None:
        self.sim, self.name = sim, name

    def run_started(self, run: progress.RunProgress, streams: list[StreamSpec]) -> None:
        pass

    def stream_started(self, stream: StreamSpec) -> None:
        if stream.name == self.name:
            for op in ("listConnectedDestinationsFromSource", "listRulesFromTrackingPlan"):
                self.sim.inject("401", op, times=1000)

    def stream_finished(self, outcome: StreamOutcome) -> None:
        pass


def test_401_mid_run_stops_the_sync_and_keeps_the_unwritten_tables(tmp_path: Path) -> None:
    db = tmp_path / "auth.duckdb"
    with Simulator(seed=3, scale=0.3) as sim:
        assert not failures(sync(sim, db, SMALL))
        before = dump_exact(db)
        mutate(sim)
        sim.reset_stats()
        # One request at a time, so "after the first 401" is well defined: requests already in
        # flight beside it (concurrent streams) would each get their own 401, and are not "after".
        # The token is revoked when the last stream starts (the longest chain goes first, so that
        # is source_connected_destinations): the parents and the rules are read by then.
        with progress.watch(RevokeWhenStarted(sim, "source_connected_destinations")):
            failed = failures(sync(sim, db, SMALL, max_streams=1, max_concurrency=1))
        sources_now = sim.items("listSources")
        refused = sim.stats["by_status"].get(401)
    assert list(failed) == ["token"], failed
    assert "HTTP 401" in failed["token"] and "SEGMENT_API_TOKEN" in failed["token"] and sim.token not in failed["token"]
    assert refused == 1, "no request after the first 401"
    after = dump_exact(db)
    table = "source_connected_destinations"
    assert after[table] == before[table] and after[f"{table}__ct"] == before[f"{table}__ct"]
    assert {r[0] for r in after["sources"]} == {s["id"] for s in sources_now}, "parents read before it loaded"
    assert after["tracking_plan_rules"] != before["tracking_plan_rules"], "a child read before it loaded"
    assert integrity_problems(db) == []


def test_sync_summary_says_why_a_stream_failed(tmp_path: Path) -> None:
    with Simulator(seed=3, scale=0.3, tokens=("good-token-1",)) as sim:
        out = io.StringIO()
        bad = SegmentResource(api_token="sk-revoked-token-999", api_url=sim.url, pace_requests=False)
        with pytest.raises(SystemExit, match="sync failed"):
            run_sync(["sources"], segment=bad, storage=DuckDBStorage(path=str(tmp_path / "s.duckdb")), out=out)
    failed = [line for line in out.getvalue().splitlines() if line.startswith("FAILED")]
    assert failed and all("SEGMENT_API_TOKEN" in line for line in failed), failed


def test_sync_summary_counts_the_requests_of_a_failed_stream(tmp_path: Path, fast_backoff: None) -> None:
    with Simulator(seed=3, scale=0.3) as sim:
        sim.inject("500", "listLabels", times=100)
        out = io.StringIO()
        with pytest.raises(SystemExit, match="sync failed"):
            run_sync(
                ["sources", "labels"],
                segment=segment_for(sim, max_retries=2),
                storage=DuckDBStorage(path=str(tmp_path / "s.duckdb")),
                out=out,
            )
        served = sim.stats.by_operation["listLabels"]
    [line] = [line for line in out.getvalue().splitlines() if line.startswith("labels ")]
    stream, rows, requests, *_ = line.split()
    assert served == 3 and (rows, requests) == ("0", "3"), line
    assert line.endswith("(failed)"), line
    total = next(line for line in out.getvalue().splitlines() if line.startswith("TOTAL"))
    assert total.split()[2] == "4", "the total counts the failed stream's requests"


GATED = ("Protocols", "Spaces", "Functions", "Audience", "Audit Trail")


@pytest.mark.e2e
def test_403_gated_streams_succeed_as_unavailable_and_others_load(tmp_path: Path) -> None:
    db = tmp_path / "gated.duckdb"
    roots = {
        "tracking_plans": "Protocols",
        "transformations": "Protocols",
        "functions": "Functions",
        "spaces": "Spaces",
        "audit_events": "Audit Trail",
    }
    children = ["tracking_plan_rules", "function_versions", "audiences"]
    open_ = {"sources": "listSources", "destinations": "listDestinations", "users": "listUsers"}
    streams = [*open_, "source_connected_destinations", *roots, *children]
    with Simulator(seed=7, scale=0.3, disabled_features=GATED) as sim:
        rows = run_sync(streams, segment=segment_for(sim), storage=DuckDBStorage(path=str(db)), out=io.StringIO())
        served = {t: sorted(i["id"] for i in sim.items(op)) for t, op in open_.items()}
    instance = DagsterInstance.get()
    assert sorted(r["stream"] for r in rows) == sorted(streams), "every asset materialized"
    metadata = {
        s: {
            k: getattr(v, "value", v)
            for k, v in instance.get_latest_materialization_event(asset_key(s)).asset_materialization.metadata.items()
        }
        for s in streams
    }
    for stream, feature in roots.items():
        assert metadata[stream]["segment/status"] == "unavailable", stream
        assert feature in metadata[stream]["segment/unavailable_reason"], stream
    tables = dump(db)
    for stream in [*roots, *children]:
        assert tables[STREAMS[stream].table] == [], f"{stream} is empty"
    for table, ids in served.items():
        assert ids and sorted(r[0] for r in tables[table]) == ids, f"{table} loads normally"
        assert metadata[table].get("segment/status", "ok") == "ok"
    assert tables["source_connected_destinations"], "children of open streams load too"


# -- two writers at once --------------------------------------------------------------------------


@pytest.mark.e2e
def test_concurrent_syncs_into_one_file_all_complete_correctly(tmp_path: Path) -> None:
    db, reference_db = tmp_path / "shared.duckdb", tmp_path / "reference.duckdb"
    first = ["sources", "destinations", "source_connected_destinations", "destination_filters"]
    other = ["users", "user_groups", "user_group_users", "labels", "catalog_destinations"]
    _instance()  # DAGSTER_HOME exists from an earlier run (its first use is racy: see the next test)
    with Simulator(seed=17, scale=0.3, latency_ms=40) as sim:
        # Two runs of the same streams and one of different streams, all at once, one DAGSTER_HOME.
        logs = [tmp_path / f"sync-{n}.log" for n in range(3)]
        procs = [
            _spawn(["-m", "segment_assets", "sync", "--select", *select], _env(sim, db), log)
            for select, log in zip((first, other, first), logs)
        ]
        for proc in procs:
            proc.wait(120)
        assert [p.returncode for p in procs] == [0, 0, 0], "\n\n".join(log.read_text() for log in logs)
        assert not failures(sync(sim, reference_db, [*first, *other]))
    tables = [STREAMS[s].table for s in [*first, *other]]
    assert differing(dump(reference_db), dump(db), tables) == []
    assert integrity_problems(db) == []
    # The second writer of the same streams found nothing new: one insert per row, no more.
    changes = dump(db)
    for stream in first:
        table = STREAMS[stream].table
        assert [r[-1] for r in changes[f"{table}__ct"]] == ["I"] * len(changes[table]), table


@pytest.mark.e2e
def test_first_use_of_dagster_home_by_concurrent_syncs(dagster_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Threads race exactly like separate `segment-assets sync` processes do, without paying for imports.
    errors: list[str] = []
    for attempt in range(3):  # the race shows on the first attempt in practice; more make a pass meaningful
        monkeypatch.setenv("DAGSTER_HOME", str(dagster_home / str(attempt)))
        start = threading.Barrier(4)

        def first_use(start: threading.Barrier = start) -> None:
            start.wait()
            try:
                _instance()
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")

        threads = [threading.Thread(target=first_use) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []


# -- the token stays secret -----------------------------------------------------------------------

SECRET = "sk-known-secret-abc123"


def _files_containing(root: Path, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def _duckdb_values_containing(path: Path, needle: str) -> list[str]:
    con, cat = _connect(path)
    try:
        hits = []
        for table in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'segment'"
        ).fetchall():
            cols = _columns(con, table[0])
            where = " OR ".join(f'CAST("{c}" AS VARCHAR) LIKE ?' for c in cols)
            n = con.execute(
                f'SELECT count(*) FROM "{cat}".segment."{table[0]}" WHERE {where}', [f"%{needle}%"] * len(cols)
            ).fetchone()[0]
            if n:
                hits.append(table[0])
        return hits
    finally:
        con.close()


@pytest.mark.e2e
def test_the_token_appears_in_no_log_file_table_or_metadata(
    tmp_path: Path,
    dagster_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    fast_backoff: None,
) -> None:
    caplog.set_level(logging.DEBUG)
    db = tmp_path / "data" / "secret.duckdb"
    streams = [
        *SMALL,
        "functions",
        "users",
        "credentials",
        "credential_consumers",
        "audit_events",
        "usage_api_calls_daily",
    ]
    with Simulator(
        seed=19,
        scale=0.3,
        tokens=(SECRET,),
        faults="429:0.05:ms_before_next=20,500:0.1,reset:0.02",
        disabled_features=("Functions",),
    ) as sim:
        sim.inject("401", "listRulesFromTrackingPlan", times=100)  # the error path is covered too
        # As in production: the token only in the environment, resolved by Dagster at launch.
        for name, value in _env(sim, db, SECRET).items():
            if name.startswith("SEGMENT_"):
                monkeypatch.setenv(name, value)
        out = io.StringIO()
        with pytest.raises(SystemExit, match="sync failed"):
            run_sync(streams, out=out)
        assert sim.stats["by_status"].get(200), "the secret token was accepted"
    captured = capfd.readouterr()

    instance = DagsterInstance.get()
    runs = instance.get_runs()
    assert runs and caplog.records, "there is something to scan"
    # The scanners find what they should: the 401's advice is in the event log's files, ids in the tables.
    assert _files_containing(dagster_home, b"Set SEGMENT_API_TOKEN")
    assert "sources" in _duckdb_values_containing(db, sim.items("listSources")[0]["id"])
    events = [record for run in runs for record in instance.all_logs(run.run_id)]
    materializations = [e.asset_materialization for e in events if e.asset_materialization]
    assert materializations, "streams read before the 401 were written"

    assert SECRET not in out.getvalue() + captured.out + captured.err
    assert SECRET not in caplog.text
    assert [e for e in events if SECRET in serialize_value(e)] == []
    assert [r.run_id for r in runs if SECRET in serialize_value(r)] == []
    assert [m.asset_key for m in materializations if SECRET in str(m.metadata)] == []
    assert _files_containing(dagster_home, SECRET.encode()) == []
    assert _files_containing(db.parent, SECRET.encode()) == []  # DuckDB file, WAL, .staging
    assert _duckdb_values_containing(db, SECRET) == []
