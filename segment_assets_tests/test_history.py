"""History (`<table>__history`), `snapshot` and `diff` on hand-written change sequences, on DuckDB and
a local-folder lake: insert, update, update, delete, then the same key created again; composite
keys; changes that share a timestamp; a lake after optimize and vacuum."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from segment_assets.api.streams import UpdateMethod
from segment_assets.api.tables import TableDef, table_def
from segment_assets.storage import DuckDBTarget, Target
from segment_assets.storage.history import (
    HISTORY_COLUMNS,
    Change,
    diff,
    history_sql,
    stream_tables,
    write_snapshot,
)
from segment_assets.storage.lake_target import LakeTarget

SOURCES = table_def("sources")
LABELS = table_def("labels")  # primary key (key, value)


@pytest.fixture(params=["duckdb", "lake"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "duckdb":
        t: Target = DuckDBTarget(tmp_path / "segment_assets.duckdb")
    else:
        t = LakeTarget((tmp_path / "lake").as_uri(), stage_dir=tmp_path / "stage")
    yield t
    t.close()


def source(i: int, name: str) -> dict:
    return {
        "id": f"src{i}",
        "slug": f"s{i}",
        "name": name,
        "workspaceId": "ws",
        "enabled": True,
        "writeKeys": [],
        "settings": {"a": i},
        "labels": [],
        "metadata": {"id": "m", "name": "JS"},
    }


def label(key: str, value: str, description: str) -> dict:
    return {"key": key, "value": value, "description": description}


def sync(target: Target, table: TableDef, records: list[dict], run_id: str) -> datetime:
    """One reload-and-compare write; returns a moment after it and before anything that follows."""
    batch = table.shaper().batch(records, {}, {})
    target.write_snapshot(table, iter([batch]), method=UpdateMethod.RELOAD_AND_COMPARE, run_id=run_id)
    after = datetime.now(UTC)
    time.sleep(0.002)  # the next write's header__timestamp is strictly later
    return after


@pytest.fixture
def sequence(target: Target) -> list[datetime]:
    """src1: inserted (A), updated (B), updated (C), deleted, created again (D); src2 never changes.
    Labels (composite key): env=prod inserted, its description updated, deleted, created again."""
    moments = [
        sync(target, SOURCES, [source(1, "A"), source(2, "Two")], "r1"),
        sync(target, SOURCES, [source(1, "B"), source(2, "Two")], "r2"),
        sync(target, SOURCES, [source(1, "C"), source(2, "Two")], "r3"),
        sync(target, SOURCES, [source(2, "Two")], "r4"),
        sync(target, SOURCES, [source(2, "Two"), source(1, "D")], "r5"),
    ]
    for i, labels in enumerate(
        [
            [label("env", "prod", "first"), label("env", "dev", "x")],
            [label("env", "prod", "second"), label("env", "dev", "x")],
            [label("env", "dev", "x")],
            [label("env", "dev", "x"), label("env", "prod", "again")],
        ]
    ):
        moments.append(sync(target, LABELS, labels, f"l{i + 1}"))
    return moments


def session(target: Target) -> duckdb.DuckDBPyConnection:
    return target.sql_session()


def test_history_has_a_version_per_change_and_no_row_for_the_deleted_interval(
    target: Target, sequence: list[datetime]
) -> None:
    with session(target) as con:
        rows = con.execute(
            "SELECT name, change_oper, run_id, valid_from, valid_to, is_current FROM sources__history "
            "WHERE id = 'src1' ORDER BY change_seq"
        ).fetchall()
        changes = con.execute(
            "SELECT header__change_oper, header__timestamp FROM sources__ct WHERE id = 'src1' "
            "ORDER BY header__change_seq"
        ).fetchall()
        other = con.execute("SELECT name, change_oper, valid_to, is_current FROM sources__history WHERE id = 'src2'")
        assert other.fetchall() == [("Two", "I", None, True)]
    assert [op for op, _ in changes] == ["I", "U", "U", "D", "I"]
    t = [ts for _, ts in changes]
    assert [r[:3] for r in rows] == [("A", "I", "r1"), ("B", "U", "r2"), ("C", "U", "r3"), ("D", "I", "r5")]
    # Each version ends when the next change of the key was synced; the delete (t[3]) ends C and opens nothing.
    assert [(r[3], r[4]) for r in rows] == [(t[0], t[1]), (t[1], t[2]), (t[2], t[3]), (t[4], None)]
    assert [r[5] for r in rows] == [False, False, False, True]


def test_history_columns_are_the_tables_then_the_documented_ones(target: Target, sequence: list[datetime]) -> None:
    with session(target) as con:
        columns = [r[0] for r in con.execute("SELECT * FROM sources__history LIMIT 0").description]
        types = dict(
            con.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'sources__history'"
            ).fetchall()
        )
    assert columns == [*SOURCES.column_names, *(c for c, _ in HISTORY_COLUMNS)]
    assert types["valid_from"] == types["valid_to"] == "TIMESTAMP WITH TIME ZONE"
    assert types["is_current"] == "BOOLEAN" and types["settings"] == "JSON"


def test_no_declared_table_has_a_column_named_like_a_history_column() -> None:
    names = {c for c, _ in HISTORY_COLUMNS}
    assert all(not names & set(t.column_names) for t in stream_tables().values())


def test_composite_key_history(target: Target, sequence: list[datetime]) -> None:
    with session(target) as con:
        rows = con.execute(
            "SELECT key, value, description, change_oper, is_current FROM labels__history ORDER BY value, change_seq"
        ).fetchall()
    assert rows == [
        ("env", "dev", "x", "I", True),
        ("env", "prod", "first", "I", False),
        ("env", "prod", "second", "U", False),
        ("env", "prod", "again", "I", True),
    ]


def snapshot_names(target: Target, tmp_path: Path, moment: datetime, name: str) -> dict[str, list[tuple]]:
    path = tmp_path / f"{name}.duckdb"
    with session(target) as con:
        result = write_snapshot(con, moment, path, "segment")
    with duckdb.connect(str(path), read_only=True) as out:
        tables = {
            "sources": out.execute("SELECT id, name FROM segment.sources ORDER BY id").fetchall(),
            "labels": out.execute("SELECT key, value, description FROM segment.labels ORDER BY ALL").fetchall(),
        }
    assert result.rows == {"sources": len(tables["sources"]), "labels": len(tables["labels"])}
    return tables


def test_snapshot_as_of_each_moment(target: Target, sequence: list[datetime], tmp_path: Path) -> None:
    expected_sources = [
        [("src1", "A"), ("src2", "Two")],
        [("src1", "B"), ("src2", "Two")],
        [("src1", "C"), ("src2", "Two")],
        [("src2", "Two")],
        [("src1", "D"), ("src2", "Two")],
    ]
    for i, names in enumerate(expected_sources):
        assert snapshot_names(target, tmp_path, sequence[i], f"s{i}")["sources"] == names
    labels = [
        [("env", "dev", "x"), ("env", "prod", "first")],
        [("env", "dev", "x"), ("env", "prod", "second")],
        [("env", "dev", "x")],
        [("env", "dev", "x"), ("env", "prod", "again")],
    ]
    for i, rows in enumerate(labels):
        assert snapshot_names(target, tmp_path, sequence[5 + i], f"l{i}")["labels"] == rows
    before = snapshot_names(target, tmp_path, sequence[0] - timedelta(hours=1), "before")
    assert before == {"sources": [], "labels": []}


def test_snapshot_has_the_live_tables_schema_and_columns(
    target: Target, sequence: list[datetime], tmp_path: Path
) -> None:
    path = tmp_path / "now.duckdb"
    with session(target) as con:
        write_snapshot(con, datetime.now(UTC), path, "segment")
        live = con.execute("SELECT * FROM sources ORDER BY id").fetchall()
        live_types = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'sources' "
            "AND table_schema = 'segment' ORDER BY ordinal_position"
        ).fetchall()
    with duckdb.connect(str(path), read_only=True) as out:
        tables = out.execute("SELECT table_schema, table_name FROM information_schema.tables ORDER BY 2").fetchall()
        assert tables == [("segment", "labels"), ("segment", "sources")]
        assert out.execute("SELECT * FROM segment.sources ORDER BY id").fetchall() == live
        types = out.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'sources' "
            "ORDER BY ordinal_position"
        ).fetchall()
    assert types == live_types


def test_diff_between_moments(target: Target, sequence: list[datetime]) -> None:
    def changes(i: int, j: int) -> list[Change]:
        with session(target) as con:
            return diff(con, sequence[i], sequence[j], ["sources"])[0]

    src1 = {"id": "src1"}
    assert changes(0, 2) == [Change("sources", "U", src1, "name", "A", "C")]
    assert changes(2, 3) == [Change("sources", "D", src1)]
    assert changes(3, 4) == [Change("sources", "I", src1)]
    # Deleted and created again in between: the two states differ by the name only.
    assert changes(0, 4) == [Change("sources", "U", src1, "name", "A", "D")]
    assert changes(1, 1) == []
    with session(target) as con:
        labels, _ = diff(con, sequence[5], sequence[6], ["labels"])
    assert labels == [Change("labels", "U", {"key": "env", "value": "prod"}, "description", "first", "second")]


def test_diff_names_tables_without_history(target: Target, sequence: list[datetime]) -> None:
    with session(target) as con, pytest.raises(ValueError, match="no history for table.*nope.*tables with history"):
        diff(con, sequence[0], sequence[1], ["nope"])


def test_lake_history_survives_optimize_and_vacuum(tmp_path: Path) -> None:
    lake = LakeTarget((tmp_path / "lake").as_uri(), stage_dir=tmp_path / "stage")
    moments = [sync(lake, SOURCES, [source(1, n), source(2, "Two")], f"r{i}") for i, n in enumerate("ABC")]
    query = "SELECT id, name, valid_from, valid_to FROM sources__history ORDER BY ALL"
    with lake.sql_session() as con:
        before = con.execute(query).fetchall()
    for name in ("sources", "sources__ct"):
        lake.optimize(name)
        # The files of the older versions are gone: Delta time travel to them no longer works ...
        assert lake.vacuum(name, retention_hours=0)["files_deleted"] > 0
    with lake.sql_session() as con:
        assert con.execute(query).fetchall() == before  # ... the history does
        assert diff(con, moments[0], moments[2], ["sources"])[0] == [
            Change("sources", "U", {"id": "src1"}, "name", "A", "C")
        ]


def test_changes_sharing_a_timestamp_are_ordered_by_change_seq() -> None:
    """Several changes of one key with one timestamp (two writes in the same microsecond): versions in
    change_seq order, the earlier ones empty intervals that no moment selects."""
    t0, t1 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    table = table_def("labels")
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(
            "CREATE TABLE labels__ct AS SELECT * FROM (VALUES "
            "('env', 'prod', 'a', '0002', 'U', ?::TIMESTAMPTZ, 'r'), "  # listed out of order on purpose
            "('env', 'prod', 'x', '0001', 'I', ?::TIMESTAMPTZ, 'r'), "
            "('env', 'prod', 'b', '0003', 'U', ?::TIMESTAMPTZ, 'r'), "
            "('env', 'prod', 'b', '0004', 'D', ?::TIMESTAMPTZ, 'r'), "
            "('env', 'prod', 'c', '0005', 'I', ?::TIMESTAMPTZ, 'r')) "
            "t(key, value, description, header__change_seq, header__change_oper, header__timestamp, header__run_id)",
            [t0, t0, t0, t1, t1],
        )
        history = history_sql(table, "labels__ct")
        rows = con.execute(f"SELECT description, valid_from, valid_to FROM ({history}) ORDER BY change_seq").fetchall()
        assert rows == [("x", t0, t0), ("a", t0, t0), ("b", t0, t1), ("c", t1, None)]
        at = con.execute(
            f"SELECT description FROM ({history}) WHERE valid_from <= ? AND (valid_to IS NULL OR valid_to > ?)",
            [t0, t0],
        ).fetchall()
        assert at == [("b",)]
