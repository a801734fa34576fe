"""Storage behaviour every target shares, run on DuckDB, a local-folder lake and an S3 lake
(moto_server): atomic snapshots, exact change rows, idempotent windows, typed time columns,
schema evolution, and the primitives resumable fan-outs build on."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from segment_assets.api.streams import UpdateMethod
from segment_assets.api.tables import Column, RecordShapeError, TableDef, table_def
from segment_assets.storage import DuckDBTarget, StorageError, Target
from segment_assets.storage.lake_target import LakeTarget
from segment_assets_tests.s3_server import moto_s3, s3_lake_url  # noqa: F401 - fixtures

SOURCES = table_def("sources")
AUDIT = table_def("audit_events")
FUNCTIONS = table_def("functions")
SYNCS = table_def("warehouse_syncs")
TARGETS = ["duckdb", "lake", "s3"]
# S3 runs the tests whose behaviour depends on the object store (commits, conditional puts, listing);
# the others exercise the same LakeTarget code on a local folder, at a tenth of the time.
local_only = pytest.mark.parametrize("target", ["duckdb", "lake"], indirect=True)


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "duckdb":
        t: Target = DuckDBTarget(tmp_path / "segment_assets.duckdb")
    elif request.param == "lake":
        t = LakeTarget((tmp_path / "lake").as_uri(), stage_dir=tmp_path / "stage")
    else:
        t = LakeTarget(request.getfixturevalue("s3_lake_url"), stage_dir=tmp_path / "stage")
    yield t
    t.close()


def source(i: int, name: str | None = None, enabled: bool = True) -> dict:
    return {
        "id": f"src{i}",
        "slug": f"s{i}",
        "name": name or f"Source {i}",
        "workspaceId": "ws",
        "enabled": enabled,
        "writeKeys": [],
        "settings": {"a": i},
        "labels": [],
        "metadata": {"id": "m", "name": "JS"},
    }


def batches(records: list[dict], table: TableDef = SOURCES) -> Iterator[pa.RecordBatch]:
    yield table.shaper().batch(records, {}, {})


def snapshot(
    target: Target,
    records: list[dict],
    run_id: str = "run",
    table: TableDef = SOURCES,
    method: UpdateMethod = UpdateMethod.RELOAD_AND_COMPARE,
):
    return target.write_snapshot(table, batches(records, table), method=method, run_id=run_id)


def rows(target: Target, sql: str) -> list[tuple]:
    return target.query(sql)


@local_only
def test_first_reload_writes_an_insert_per_row(target: Target) -> None:
    result = snapshot(target, [source(1), source(2)])
    assert (result.rows, result.inserted, result.change_rows) == (2, 2, 2)
    ct = rows(target, "SELECT id, header__change_oper, header__run_id FROM sources__ct ORDER BY id")
    assert ct == [("src1", "I", "run"), ("src2", "I", "run")]


def test_snapshot_reads_back_equal_to_what_was_written(target: Target) -> None:
    written = [source(1), source(2, enabled=False), source(3, name="Ünïcode ✓")]
    snapshot(target, written)
    back = target.read_arrow("sources").sort_by("id")
    expected = SOURCES.shaper().batch(written, {}, {})
    assert back.select(SOURCES.column_names).to_pylist() == pa.Table.from_batches([expected]).sort_by("id").to_pylist()
    types = dict(
        rows(target, "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'sources'")
    )
    assert types == {c: {"TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE"}.get(t, t) for c, t in SOURCES.column_schema()}


def test_reload_and_compare_records_exact_changes(target: Target) -> None:
    snapshot(target, [source(1), source(2), source(3)], "r1")
    result = snapshot(target, [source(1), source(2, name="Renamed"), source(4)], "r2")
    assert (result.inserted, result.updated, result.deleted) == (1, 1, 1)
    current = rows(target, "SELECT id, name FROM sources ORDER BY id")
    assert current == [("src1", "Source 1"), ("src2", "Renamed"), ("src4", "Source 4")]
    changes = rows(
        target,
        "SELECT header__change_oper, id, name FROM sources__ct WHERE header__run_id = 'r2' ORDER BY header__change_seq",
    )
    assert changes == [("U", "src2", "Renamed"), ("D", "src3", "Source 3"), ("I", "src4", "Source 4")]
    seqs = [
        r[0]
        for r in rows(
            target, "SELECT header__change_seq FROM sources__ct WHERE header__run_id = 'r2' ORDER BY header__change_seq"
        )
    ]
    assert (result.change_seq_first, result.change_seq_last) == (seqs[0], seqs[-1])


def test_unchanged_reload_writes_no_change_rows(target: Target) -> None:
    first = snapshot(target, [source(1), source(2)], "r1")
    result = snapshot(target, [source(2), source(1)], "r2")
    assert result.change_rows == 0
    assert rows(target, "SELECT count(*) FROM sources__ct")[0][0] == 2
    assert result.version == first.version  # a quiet rerun commits nothing (lake: no new version)


@local_only
def test_change_seq_is_monotonic_across_tables_and_runs(target: Target) -> None:
    snapshot(target, [source(1)], "r1")
    labels = table_def("labels")
    target.write_snapshot(
        labels,
        iter([labels.shaper().batch([{"key": "env", "value": "prod"}], {}, {})]),
        method=UpdateMethod.RELOAD_AND_COMPARE,
        run_id="r2",
    )
    snapshot(target, [source(1, name="x")], "r3")
    both = (
        "SELECT header__change_seq, header__run_id FROM sources__ct UNION ALL "
        "SELECT header__change_seq, header__run_id FROM labels__ct"
    )
    got = rows(target, f"SELECT * FROM ({both}) ORDER BY header__change_seq")
    assert [r[1] for r in got] == ["r1", "r2", "r3"]
    assert all(len(r[0]) == 35 for r in got) and len({r[0] for r in got}) == 3


@local_only
def test_upsert_inserts_and_updates_without_deletes(target: Target) -> None:
    def sync(i: int, minute: int, status: str) -> dict:
        return {
            "start": f"2026-11-0{i}T00:0{minute}:00.000Z",
            "end": f"2026-11-0{i}T00:30:00.000Z",
            "status": status,
            "duration": 1.5,
            "humanDuration": "1s",
            "count": 3.0,
            "sourceId": "src1",
            "notices": [],
        }

    def write(records: list[dict], run: str):
        return target.upsert(SYNCS, iter([SYNCS.shaper().batch(records, {"warehouseId": "wh1"}, {})]), run_id=run)

    write([sync(1, 0, "SUCCESS"), sync(2, 0, "RUNNING")], "r1")
    result = write([sync(2, 0, "SUCCESS"), sync(3, 0, "RUNNING")], "r2")  # the newest only: no delete of day 1
    assert (result.inserted, result.updated, result.deleted) == (1, 1, 0)
    assert rows(target, "SELECT status FROM warehouse_syncs ORDER BY start") == [
        ("SUCCESS",),
        ("SUCCESS",),
        ("RUNNING",),
    ]
    assert sorted(rows(target, "SELECT header__change_oper FROM warehouse_syncs__ct WHERE header__run_id = 'r2'")) == [
        ("I",),
        ("U",),
    ]
    wm = target.max_by("warehouse_syncs", ["warehouse_id"], "start")
    assert wm == {("wh1",): datetime(2026, 11, 3, tzinfo=UTC)}
    with pytest.raises(ValueError, match="not a snapshot"):  # a partial read must not delete the rest
        snapshot(target, [sync(4, 0, "RUNNING")], "r3", table=SYNCS, method=UpdateMethod.WATERMARK)


def test_failed_snapshot_leaves_previous_table_intact(target: Target) -> None:
    before = snapshot(target, [source(1), source(2)], "r1")

    def broken() -> Iterator[pa.RecordBatch]:
        yield SOURCES.shaper().batch([source(5)], {}, {})
        raise ConnectionError("API went away mid-stream")

    with pytest.raises(ConnectionError):
        target.write_snapshot(SOURCES, broken(), method=UpdateMethod.RELOAD_AND_COMPARE, run_id="r2")
    assert rows(target, "SELECT id FROM sources ORDER BY id") == [("src1",), ("src2",)]
    assert rows(target, "SELECT count(*) FROM sources__ct")[0][0] == 2
    assert snapshot(target, [source(1), source(2)], "r3").version == before.version


@local_only
def test_duplicate_keys_from_the_api_fail_without_writing(target: Target) -> None:
    snapshot(target, [source(1)], "r1")
    with pytest.raises(StorageError, match="more than once"):
        snapshot(target, [source(2), source(2)], "r2")
    assert rows(target, "SELECT id FROM sources") == [("src1",)]


def test_full_load_replaces_without_change_table(target: Target) -> None:
    snapshot(target, [source(1), source(2)], "r1", method=UpdateMethod.FULL_LOAD)
    snapshot(target, [source(3)], "r2", method=UpdateMethod.FULL_LOAD)
    assert rows(target, "SELECT id FROM sources") == [("src3",)]
    assert not target.table_exists("sources__ct")


def event(i: int, day: int, hour: int = 12) -> dict:
    return {
        "id": f"ev{i}",
        "timestamp": f"2026-11-{day:02d}T{hour:02d}:00:00.000Z",
        "type": "Source Modified",
        "actor": "a",
        "resourceId": "r",
        "resourceType": "Source",
        "resourceName": "n",
    }


def day(d: int) -> datetime:
    return datetime(2026, 11, d, tzinfo=UTC)


def test_replace_window_is_idempotent_and_touches_only_its_window(target: Target) -> None:
    def load(evs: list[dict], a: int, b: int):
        return target.replace_window(
            AUDIT,
            iter([AUDIT.shaper().batch(evs, {}, {})]),
            time_column="timestamp",
            start=day(a),
            end=day(b),
            run_id="r",
        )

    load([event(1, 1), event(2, 1)], 1, 2)
    load([event(3, 2), event(4, 2, hour=23)], 2, 3)
    load([event(1, 1), event(2, 1)], 1, 2)  # re-run of the same partition
    assert rows(target, "SELECT id FROM audit_events ORDER BY id") == [("ev1",), ("ev2",), ("ev3",), ("ev4",)]
    result = load([event(2, 1), event(9, 3)], 1, 2)  # ev1 vanished upstream; ev9 is outside the window
    assert (result.inserted, result.deleted, result.rows) == (1, 2, 3)
    assert rows(target, "SELECT id FROM audit_events ORDER BY id") == [("ev2",), ("ev3",), ("ev4",)]
    assert rows(target, "SELECT typeof(timestamp) FROM audit_events LIMIT 1") == [("TIMESTAMP WITH TIME ZONE",)]
    assert [c for c in target.read_arrow("audit_events").column_names] == AUDIT.column_names


@local_only
def test_time_fields_land_typed(target: Target) -> None:
    fn = {
        "id": "fn1",
        "resourceType": "SOURCE",
        "createdAt": "2023-03-20T10:00:00.000Z",
        "createdBy": "u",
        "displayName": "f",
        "description": "",
        "logoUrl": "",
        "catalogId": "c",
    }
    snapshot(target, [fn, {**fn, "id": "fn2", "createdAt": "2023-03-21T12:30:00+02:00"}], table=FUNCTIONS)
    assert rows(target, "SELECT id, created_at, typeof(created_at) FROM functions ORDER BY id") == [
        ("fn1", datetime(2023, 3, 20, 10, tzinfo=UTC), "TIMESTAMP WITH TIME ZONE"),
        ("fn2", datetime(2023, 3, 21, 10, 30, tzinfo=UTC), "TIMESTAMP WITH TIME ZONE"),
    ]
    assert rows(target, "SELECT typeof(created_at) FROM functions__ct LIMIT 1") == [("TIMESTAMP WITH TIME ZONE",)]


def test_unparseable_time_fails_the_page_or_counts_as_null() -> None:
    fn = {"id": "fn1", "createdAt": "last tuesday"}
    with pytest.raises(RecordShapeError, match=r"field 'createdAt' \(column created_at, TIMESTAMPTZ\).*last tuesday"):
        FUNCTIONS.shaper().batch([fn], {}, {})
    lenient = FUNCTIONS.shaper(strict=False)
    batch = lenient.batch(
        [fn, {"id": "fn2", "createdAt": "2023-01-01T00:00:00Z"}, {"id": "fn3", "createdAt": ""}], {}, {}
    )
    assert batch.column("created_at").to_pylist() == [None, datetime(2023, 1, 1, tzinfo=UTC), None]
    assert lenient.invalid_values == {"createdAt": 1}


@local_only
def test_new_api_field_is_kept_and_reported(target: Target) -> None:
    shaper = SOURCES.shaper()
    first = shaper.batch([source(1)], {}, {})
    target.write_snapshot(SOURCES, iter([first]), method=UpdateMethod.RELOAD_AND_COMPARE, run_id="r1")
    assert shaper.undocumented == set()
    later = SOURCES.shaper()
    rec = {**source(1), "brandNewField": {"x": 1}}
    result = target.write_snapshot(
        SOURCES, iter([later.batch([rec], {}, {})]), method=UpdateMethod.RELOAD_AND_COMPARE, run_id="r2"
    )
    assert later.undocumented == {"brandNewField"}
    assert result.updated == 1  # the row changed: it gained a field
    assert rows(target, "SELECT _extra->>'$.brandNewField.x' FROM sources") == [("1",)]


def test_fields_the_schema_documents_and_parent_keys_are_not_drift() -> None:
    # listPropertiesFromEvent documents eventName, which the table holds as its parent-key column
    # event_name (with space_id): a record repeating them carries no undocumented field.
    table = table_def("space_event_properties")
    shaper = table.shaper()
    record = {"name": "plan", "type": "STRING", "eventName": "Signed Up", "lastSeenAt": "2026-11-01T00:00:00Z"}
    shaper.batch([{**record, "spaceId": "spa_1"}], {"spaceId": "spa_1", "eventName": "Signed Up"}, {})
    assert shaper.undocumented == set()
    shaper.batch([{**record, "colorHex": "#fff"}], {"spaceId": "spa_1", "eventName": "Signed Up"}, {})
    assert shaper.undocumented == {"colorHex"}, "a field the operation's schema lacks still counts"


def test_field_names_follow_refs_and_every_shape_of_a_union() -> None:
    from segment_assets.api import spec

    schema = {
        "allOf": [
            {"$ref": "#/components/schemas/EventPropertyAlpha"},
            {"oneOf": [{"properties": {"a": {}}}, {"anyOf": [{"properties": {"b": {}}}]}]},
        ]
    }
    assert {"eventName", "lastSeenAt", "a", "b"} <= spec.field_names(schema)
    assert spec.field_names({"type": "array", "items": {"properties": {"c": {}}}}) == {"c"}


def _with_column(table: TableDef, column: Column) -> TableDef:
    return dataclasses.replace(table, columns=(*table.columns[:-1], column, table.columns[-1]))


@local_only
def test_declared_column_added_mid_life_evolves_the_table(target: Target) -> None:
    snapshot(target, [source(1)], "r1")
    grown = _with_column(SOURCES, Column("region", "VARCHAR", "record", "region"))
    result = target.write_snapshot(
        grown,
        iter([grown.shaper().batch([{**source(1), "region": "eu"}, source(2)], {}, {})]),
        method=UpdateMethod.RELOAD_AND_COMPARE,
        run_id="r2",
    )
    assert (result.inserted, result.updated) == (1, 1)
    assert rows(target, "SELECT id, region FROM sources ORDER BY id") == [("src1", "eu"), ("src2", None)]
    assert rows(target, "SELECT id, region FROM sources__ct WHERE header__run_id = 'r2' ORDER BY id") == [
        ("src1", "eu"),
        ("src2", None),
    ]


@local_only
def test_type_conflict_fails_clearly_and_leaves_the_table(target: Target) -> None:
    snapshot(target, [source(1)], "r1")
    changed = dataclasses.replace(
        SOURCES,
        columns=tuple(dataclasses.replace(c, type="BIGINT") if c.name == "enabled" else c for c in SOURCES.columns),
    )
    with pytest.raises(StorageError, match=r"column enabled of segment.sources .*BIGINT"):
        target.write_snapshot(
            changed,
            iter([changed.shaper().batch([{**source(1), "enabled": 1}], {}, {})]),
            method=UpdateMethod.RELOAD_AND_COMPARE,
            run_id="r2",
        )
    assert rows(target, "SELECT id, enabled FROM sources") == [("src1", True)]
    assert rows(target, "SELECT count(*) FROM sources__ct")[0][0] == 1


def test_type_change_is_a_clear_error() -> None:
    bad = source(1)
    bad["enabled"] = "yes"
    with pytest.raises(RecordShapeError, match=r"sources: field 'enabled'.*str"):
        SOURCES.shaper().batch([bad], {}, {})


def test_missing_primary_key_is_a_clear_error() -> None:
    bad = source(1)
    del bad["id"]
    with pytest.raises(RecordShapeError, match="primary-key field 'id'"):
        SOURCES.shaper().batch([bad], {}, {})


@local_only
def test_zero_row_stream_still_gets_its_columns(target: Target) -> None:
    snapshot(target, [])
    cols = [
        r[0]
        for r in rows(
            target,
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'sources' ORDER BY ordinal_position",
        )
    ]
    assert cols == SOURCES.column_names


def test_the_query_tells_complete_lists_from_cut_ones_as_inline_records_does(tmp_path: Path) -> None:
    """The target decides in SQL what `InlineRecords.complete` decides on a parsed list: fewer
    than `limit` records is complete; as many, absent or not a list may be cut."""
    import json

    import pyarrow.parquet as pq

    from segment_assets.api.streams import InlineRecords
    from segment_assets.storage.changes import copy_complete_lists, select_parent_keys

    inline = InlineRecords("samples", 3)
    lists = {"none": None, "empty": "[]", "two": '["a","b"]', "three": '["a","b","c"]', "four": "[1,2,3,4]"}
    lists |= {"object": '{"a": 1}', "text": '"abc"', "null": "null"}
    con = duckdb.connect()
    con.execute("CREATE TABLE parents (id VARCHAR, samples VARCHAR)")
    con.executemany("INSERT INTO parents VALUES (?, ?)", list(lists.items()))

    complete = {k for k, v in lists.items() if inline.complete(None if v is None else json.loads(v))}
    assert complete == {"empty", "two"}
    assert {r[0] for r in select_parent_keys(con, "parents", ["id"], None, cut=inline)} == set(lists) - complete
    copy_complete_lists(con, "parents", ["id"], None, inline, str(tmp_path / "lists.parquet"))
    copied = pq.read_table(tmp_path / "lists.parquet").to_pylist()
    assert {r["id"]: r["samples"] for r in copied} == {k: lists[k] for k in complete}


def test_complete_lists_come_in_pieces_from_one_staging_file_then_removed(target: Target) -> None:
    from segment_assets.api.streams import InlineRecords

    traits = table_def("space_traits")
    rows = [
        {"space_id": f"spa{i % 3}", "trait": f"t{i:02d}", "samples": json.dumps(["v"] * (i % 5))} for i in range(23)
    ]
    target.write_snapshot(
        traits,
        [pa.Table.from_pylist(rows, schema=traits.arrow_schema()).to_batches()[0]],
        method=UpdateMethod.RELOAD_AND_COMPARE,
        run_id="r1",
    )
    inline = InlineRecords("samples", 4)  # a list of 4 may have been cut: 4 of every 5 traits are complete
    pieces = list(target.complete_lists("space_traits", ["space_id", "trait"], None, inline, per_read=5))
    assert [len(p) for p in pieces] == [5, 5, 5, 4]  # 23 traits, 4 of them cut
    got = sorted(r for p in pieces for r in p)
    assert got == sorted((r["space_id"], r["trait"], r["samples"]) for r in rows if len(json.loads(r["samples"])) < 4)
    assert not list(target.stage_dir.glob("space_traits__lists.*")), "the staging file is gone once read"


@local_only
def test_parent_keys_filter_and_missing_parent(target: Target) -> None:
    with pytest.raises(StorageError, match="materialize the parent asset"):
        target.parent_keys("sources", ["id"])
    snapshot(target, [source(1), source(2), source(12)])
    from segment_assets.api.streams import RowFilter

    assert target.parent_keys("sources", ["id"], RowFilter("id", startswith="src1")) == [("src1",), ("src12",)]
    assert target.check_primary_key(SOURCES).passed


# -- primitives for resumable fan-outs, state ----------------------------------------------


def test_append_rows_creates_then_appends(target: Target) -> None:
    first = target.append_rows("_cycle_keys", pa.table({"id": ["src1", "src2"]}))
    second = target.append_rows("_cycle_keys", pa.table({"id": ["src3"]}))
    assert (first.rows, second.rows, second.inserted) == (2, 3, 1)
    assert sorted(target.read_arrow("_cycle_keys", ["id"]).column("id").to_pylist()) == ["src1", "src2", "src3"]
    assert "_cycle_keys" in target.table_names()
    assert target.drop_table("_cycle_keys") is True
    assert not target.table_exists("_cycle_keys") and target.drop_table("_cycle_keys") is False


def test_delete_missing_writes_d_rows_in_one_step(target: Target) -> None:
    snapshot(target, [source(1), source(2), source(3)], "r1")
    target.append_rows("_seen", pa.table({"id": ["src1", "src3", "src9"]}))
    result = target.delete_missing(SOURCES, "_seen", run_id="r2")
    assert (result.deleted, result.rows, result.change_rows) == (1, 2, 1)
    assert rows(target, "SELECT id FROM sources ORDER BY id") == [("src1",), ("src3",)]
    assert rows(target, "SELECT header__change_oper, id, name FROM sources__ct WHERE header__run_id = 'r2'") == [
        ("D", "src2", "Source 2")
    ]
    again = target.delete_missing(SOURCES, "_seen", run_id="r3")
    assert (again.deleted, again.change_rows) == (0, 0)
    with pytest.raises(StorageError, match="key table .*_nope does not exist"):
        target.delete_missing(SOURCES, "_nope", run_id="r4")


def test_state_round_trips(target: Target) -> None:
    assert target.read_state("drift:sources") is None
    target.write_state("drift:sources", '["a"]')
    target.write_state("drift:sources", '["a", "b"]')
    target.write_state("other", "x")
    assert (target.read_state("drift:sources"), target.read_state("other")) == ('["a", "b"]', "x")
    assert "_segment_assets_state" not in target.table_names()


# -- DuckDB only ----------------------------------------------------------------------------


def test_duckdb_varchar_time_columns_of_older_files_become_timestamptz(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    t = DuckDBTarget(path)
    cols = ", ".join(f'"{c}" {"VARCHAR" if k == "TIMESTAMPTZ" else k}' for c, k in FUNCTIONS.column_schema())
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA segment")
        con.execute(f"CREATE TABLE segment.functions ({cols})")
        con.execute("INSERT INTO segment.functions (id, created_at) VALUES ('fn1', '2023-03-20T10:00:00.000Z')")
    fn = {"id": "fn1", "createdAt": "2023-03-20T10:00:00.000Z"}
    result = snapshot(t, [fn, {"id": "fn2", "createdAt": "2024-01-01T00:00:00Z"}], table=FUNCTIONS)
    assert (result.inserted, result.updated) == (1, 0)  # the converted text equals the typed value: no update
    assert t.query("SELECT any_value(typeof(created_at)), min(created_at) FROM functions") == [
        ("TIMESTAMP WITH TIME ZONE", datetime(2023, 3, 20, 10, tzinfo=UTC))
    ]


def test_duckdb_varchar_time_column_with_text_fails_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    cols = ", ".join(f'"{c}" {"VARCHAR" if k == "TIMESTAMPTZ" else k}' for c, k in FUNCTIONS.column_schema())
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA segment")
        con.execute(f"CREATE TABLE segment.functions ({cols})")
        con.execute("INSERT INTO segment.functions (id, created_at) VALUES ('fn1', 'someday')")
    t = DuckDBTarget(path)
    with pytest.raises(StorageError, match="(?s)cannot become TIMESTAMPTZ.*TRY_CAST"):
        snapshot(t, [{"id": "fn1", "createdAt": "2023-03-20T10:00:00.000Z"}], table=FUNCTIONS)
    assert t.query("SELECT created_at FROM functions") == [("someday",)]


def test_staging_files_of_dead_processes_are_swept(tmp_path: Path) -> None:
    t = DuckDBTarget(tmp_path / "segment_assets.duckdb")
    dead = subprocess.Popen(["true"])
    dead.wait()
    stage = tmp_path / ".staging"
    stage.mkdir()
    orphan = stage / f"sources.{dead.pid}.abc.parquet"
    orphan.write_bytes(b"left by a killed run")
    mine = stage / f"sources.{os.getpid()}.xyz.parquet"
    mine.write_bytes(b"in use")
    snapshot(t, [source(1)])
    assert not orphan.exists() and mine.exists()


@contextmanager
def held_by_another_process(path: Path) -> Iterator[int]:
    """A process holding the DuckDB file (a user's open session); its PID."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder.pid
    finally:
        assert holder.stdin is not None
        holder.stdin.close()  # it exits, releasing the file
        holder.wait(30)


HOLD = "import duckdb, sys\ncon = duckdb.connect(sys.argv[1])\nprint('held', flush=True)\nsys.stdin.read()"


def test_a_held_file_is_reported_with_its_holder_then_refused(tmp_path: Path) -> None:
    path = tmp_path / "segment_assets.duckdb"
    heard: list[str] = []
    target = DuckDBTarget(path, lock_timeout=1.0, on_wait=heard.append)
    with held_by_another_process(path) as pid:
        with pytest.raises(StorageError, match=rf"stayed locked by PID {pid} \(.*python.*\) for 1s"):
            target.table_names()
        with pytest.raises(StorageError, match=rf"exists but is locked by PID {pid} \(.*\), which is writing it"):
            target.sql_session()
    assert heard and heard[0].startswith(f"waiting for {path}: it is locked by PID {pid} (")
    assert "of lock_timeout 1s" in heard[0]
    assert target.table_names() == [], "the file is the target's again once released"
    with target.sql_session() as con:
        assert con.execute("SELECT 1").fetchall() == [(1,)]


def test_a_parent_key_read_does_not_wait_for_another_streams_write_in_progress(tmp_path: Path) -> None:
    # Failed before this change: every read took the file's one lock, so a child stream read its
    # parent's ids only once the writes queued ahead of it (of unrelated streams) were done.
    from segment_assets.storage.duckdb_target import _file

    target = DuckDBTarget(tmp_path / "x.duckdb")
    snapshot(target, [source(1), source(2)])
    writing = _file(target.path).lock
    got: list[object] = []
    with writing:  # another stream's write in progress holds the file's lock
        reader = threading.Thread(
            target=lambda: got.extend(
                [target.parent_keys("sources", ["id"]), target.table_exists("sources"), target.read_state("none")]
            ),
            daemon=True,
        )
        reader.start()
        reader.join(timeout=30)
        assert not reader.is_alive(), "the read waited for the write"
    assert got == [[("src1",), ("src2",)], True, None], got
    target.close()
