"""DuckDBTarget: atomic snapshots, reload-and-compare change rows, idempotent windows."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pytest

from segment_assets.storage import DuckDBTarget, StorageError
from segment_assets.streams import UpdateMethod
from segment_assets.tables import RecordShapeError, table_def

SOURCES = table_def("sources")
AUDIT = table_def("audit_events")


def source(i: int, name: str | None = None, enabled: bool = True) -> dict:
    return {"id": f"src{i}", "slug": f"s{i}", "name": name or f"Source {i}", "workspaceId": "ws", "enabled": enabled,
            "writeKeys": [], "settings": {"a": i}, "labels": [], "metadata": {"id": "m", "name": "JS"}}


def batches(records: list[dict]) -> Iterator[pa.RecordBatch]:
    yield SOURCES.to_batch(records, {}, {})


def snapshot(target: DuckDBTarget, records: list[dict], run_id: str = "run"):
    return target.write_snapshot(SOURCES, batches(records), method=UpdateMethod.RELOAD_AND_COMPARE, run_id=run_id)


def rows(target: DuckDBTarget, sql: str) -> list[tuple]:
    return target.query(sql)


def test_first_reload_writes_an_insert_per_row(target: DuckDBTarget) -> None:
    result = snapshot(target, [source(1), source(2)])
    assert (result.rows, result.inserted, result.change_rows) == (2, 2, 2)
    ct = rows(target, "SELECT id, header__change_oper, header__run_id FROM sources__ct ORDER BY id")
    assert ct == [("src1", "I", "run"), ("src2", "I", "run")]


def test_reload_and_compare_records_exact_changes(target: DuckDBTarget) -> None:
    snapshot(target, [source(1), source(2), source(3)], "r1")
    result = snapshot(target, [source(1), source(2, name="Renamed"), source(4)], "r2")
    assert (result.inserted, result.updated, result.deleted) == (1, 1, 1)
    current = rows(target, "SELECT id, name FROM sources ORDER BY id")
    assert current == [("src1", "Source 1"), ("src2", "Renamed"), ("src4", "Source 4")]
    changes = rows(target, "SELECT header__change_oper, id, name FROM sources__ct "
                           "WHERE header__run_id = 'r2' ORDER BY header__change_seq")
    assert sorted(changes) == [("D", "src3", "Source 3"), ("I", "src4", "Source 4"), ("U", "src2", "Renamed")]


def test_unchanged_reload_writes_no_change_rows(target: DuckDBTarget) -> None:
    snapshot(target, [source(1), source(2)], "r1")
    result = snapshot(target, [source(2), source(1)], "r2")
    assert result.change_rows == 0
    assert rows(target, "SELECT count(*) FROM sources__ct")[0][0] == 2


def test_change_seq_is_monotonic_across_tables_and_runs(target: DuckDBTarget) -> None:
    snapshot(target, [source(1)], "r1")
    rules = table_def("labels")
    target.write_snapshot(rules, iter([rules.to_batch([{"key": "env", "value": "prod"}], {}, {})]),
                          method=UpdateMethod.RELOAD_AND_COMPARE, run_id="r2")
    snapshot(target, [source(1, name="x")], "r3")
    seqs = [r[0] for r in rows(target, "SELECT header__change_seq FROM sources__ct UNION ALL "
                                       "SELECT header__change_seq FROM labels__ct")]
    runs = [r[0] for r in rows(target, "SELECT header__run_id FROM (SELECT header__change_seq, header__run_id FROM "
                                       "sources__ct UNION ALL SELECT header__change_seq, header__run_id FROM "
                                       "labels__ct) ORDER BY header__change_seq")]
    assert runs == ["r1", "r2", "r3"]
    assert all(len(s) == 35 for s in seqs) and len(set(seqs)) == 3


def test_failed_snapshot_leaves_previous_table_intact(target: DuckDBTarget) -> None:
    snapshot(target, [source(1), source(2)], "r1")

    def broken() -> Iterator[pa.RecordBatch]:
        yield SOURCES.to_batch([source(5)], {}, {})
        raise ConnectionError("API went away mid-stream")

    with pytest.raises(ConnectionError):
        target.write_snapshot(SOURCES, broken(), method=UpdateMethod.RELOAD_AND_COMPARE, run_id="r2")
    assert rows(target, "SELECT id FROM sources ORDER BY id") == [("src1",), ("src2",)]
    assert rows(target, "SELECT count(*) FROM sources__ct")[0][0] == 2


def test_duplicate_keys_from_the_api_fail_without_writing(target: DuckDBTarget) -> None:
    snapshot(target, [source(1)], "r1")
    with pytest.raises(StorageError, match="more than once"):
        snapshot(target, [source(2), source(2)], "r2")
    assert rows(target, "SELECT id FROM sources") == [("src1",)]


def test_full_load_replaces_without_change_table(target: DuckDBTarget) -> None:
    target.write_snapshot(SOURCES, batches([source(1), source(2)]), method=UpdateMethod.FULL_LOAD, run_id="r1")
    target.write_snapshot(SOURCES, batches([source(3)]), method=UpdateMethod.FULL_LOAD, run_id="r2")
    assert rows(target, "SELECT id FROM sources") == [("src3",)]
    assert not target.table_exists("sources__ct")


def event(i: int, day: int, hour: int = 12) -> dict:
    return {"id": f"ev{i}", "timestamp": f"2026-11-{day:02d}T{hour:02d}:00:00.000Z", "type": "Source Modified",
            "actor": "a", "resourceId": "r", "resourceType": "Source", "resourceName": "n"}


def test_replace_window_is_idempotent_and_touches_only_its_window(target: DuckDBTarget) -> None:
    day = lambda d: datetime(2026, 11, d, tzinfo=timezone.utc)  # noqa: E731
    load = lambda evs, a, b: target.replace_window(  # noqa: E731
        AUDIT, iter([AUDIT.to_batch(evs, {}, {})]), time_column="timestamp", start=day(a), end=day(b), run_id="r")
    load([event(1, 1), event(2, 1)], 1, 2)
    load([event(3, 2)], 2, 3)
    load([event(1, 1), event(2, 1)], 1, 2)  # re-run of the same partition
    assert rows(target, "SELECT id FROM audit_events ORDER BY id") == [("ev1",), ("ev2",), ("ev3",)]
    load([event(2, 1)], 1, 2)  # ev1 vanished upstream: the window is replaced, not merged
    assert rows(target, "SELECT id FROM audit_events ORDER BY id") == [("ev2",), ("ev3",)]
    assert rows(target, "SELECT typeof(timestamp) FROM audit_events LIMIT 1") == [("TIMESTAMP WITH TIME ZONE",)]


def test_type_change_is_a_clear_error() -> None:
    bad = source(1)
    bad["enabled"] = "yes"
    with pytest.raises(RecordShapeError, match=r"sources: field 'enabled'.*str"):
        SOURCES.to_batch([bad], {}, {})


def test_missing_primary_key_is_a_clear_error() -> None:
    bad = source(1)
    del bad["id"]
    with pytest.raises(RecordShapeError, match="primary-key field 'id'"):
        SOURCES.to_batch([bad], {}, {})


def test_unknown_fields_are_kept_in_extra(target: DuckDBTarget) -> None:
    rec = source(1)
    rec["brandNewField"] = {"x": 1}
    snapshot(target, [rec])
    assert rows(target, "SELECT _extra->>'$.brandNewField.x' FROM sources") == [("1",)]


def test_zero_row_stream_still_gets_its_columns(target: DuckDBTarget) -> None:
    snapshot(target, [])
    cols = [r[0] for r in rows(target, "SELECT column_name FROM information_schema.columns "
                                       "WHERE table_name = 'sources' ORDER BY ordinal_position")]
    assert cols == SOURCES.column_names


def test_staging_files_of_dead_processes_are_swept(target: DuckDBTarget, tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stage = tmp_path / ".staging"
    stage.mkdir()
    orphan = stage / f"sources.{dead.pid}.abc.parquet"
    orphan.write_bytes(b"left by a killed run")
    mine = stage / f"sources.{os.getpid()}.xyz.parquet"
    mine.write_bytes(b"in use")
    snapshot(target, [source(1)])
    assert not orphan.exists() and mine.exists()
