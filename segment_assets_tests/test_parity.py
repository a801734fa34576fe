"""The same simulated workspace synced into DuckDB and into a Delta lake gives the same tables
(rows and column types), the same change rows and the same history (`<table>__history`, a
snapshot as of a moment between the syncs, the diff since), after a first sync, a few live
changes of the workspace, and a second sync."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from segment_assets.cli.commands import run_sync
from segment_assets.orchestration.resources import DuckDBStorage, LakeStorage
from segment_assets.simulator import Simulator
from segment_assets.storage.history import diff, write_snapshot
from segment_assets_tests.conftest import segment_for

# Whole syncs into both targets.
pytestmark = pytest.mark.e2e

# Every kind of stream: root lists, fan-out children (one with a row filter), a watermark
# stream, a daily-partitioned and a monthly-partitioned one.
STREAMS = [
    "sources",
    "destinations",
    "destination_filters",
    "functions",
    "labels",
    "warehouses",
    "warehouse_syncs",
    "audit_events",
    "usage_mtu_daily",
]
# Differ by when and by which run (change tables, then history views).
IGNORED = (
    "header__change_seq",
    "header__timestamp",
    "header__run_id",
    "valid_from",
    "valid_to",
    "change_seq",
    "run_id",
)


def snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[list[tuple], list[tuple]]]:
    tables = [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'segment' "
            "AND table_catalog = current_database() ORDER BY 1"
        ).fetchall()
    ]
    out = {}
    for name in tables:
        types = con.execute(
            f"SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = "
            f"'segment' AND table_name = '{name}' AND table_catalog = current_database() "
            f"ORDER BY ordinal_position"
        ).fetchall()
        keep = [c for c, _ in types if c not in IGNORED]
        cols = ", ".join(f'"{c}"' for c in keep)
        out[name] = (types, con.execute(f'SELECT {cols} FROM segment."{name}" ORDER BY ALL').fetchall())
    return out


@pytest.mark.timeout(600)
def test_duckdb_and_lake_hold_identical_tables_and_changes(sim: Simulator, tmp_path: Path) -> None:
    segment = segment_for(sim)
    duck = DuckDBStorage(path=str(tmp_path / "parity.duckdb"))
    lake = LakeStorage(url=(tmp_path / "lake").as_uri())
    logs = {id(duck): io.StringIO(), id(lake): io.StringIO()}
    for storage in (duck, lake):
        run_sync(STREAMS, segment=segment, storage=storage, out=logs[id(storage)])
    between = datetime.now(UTC)
    time.sleep(0.01)
    for change in ("rename_source", "toggle_destination", "create_label", "update_destination_filter"):
        sim.mutate(change)
    for storage in (duck, lake):
        run_sync(STREAMS, segment=segment, storage=storage, out=logs[id(storage)])

    with duck.get_target().sql_session() as a, lake.get_target().sql_session() as b:
        left, right = snapshot(a), snapshot(b)
        diffs = [diff(con, between, datetime.now(UTC)) for con in (a, b)]
        for name, con in (("duck", a), ("lake", b)):
            write_snapshot(con, between, tmp_path / f"{name}_then.duckdb", "segment")
    with (
        duckdb.connect(str(tmp_path / "duck_then.duckdb")) as a,
        duckdb.connect(str(tmp_path / "lake_then.duckdb")) as b,
    ):
        then = snapshot(a), snapshot(b)
    left.pop("_segment_assets_state", None)  # the DuckDB file's own state table (the lake hides its own)
    assert sorted(left) == sorted(right), (logs[id(duck)].getvalue(), logs[id(lake)].getvalue())
    assert "sources__ct" in left and "audit_events" in left
    for name in left:
        assert left[name][0] == right[name][0], f"{name}: column types differ"
        assert left[name][1] == right[name][1], f"{name}: rows differ"

    def opers(table: str) -> set[str]:
        cols = [c for c, _ in left[table][0] if c not in IGNORED]
        return {r[cols.index("header__change_oper")] for r in left[table][1]}

    # The live changes show up as change rows (identical on both, checked above).
    assert opers("sources__ct") == {"I", "U"} and opers("destinations__ct") == {"I", "U"}
    assert "I" in opers("labels__ct")

    # History: the views on both targets agree (above); so do a snapshot as of the first sync and the diff since.
    assert {"sources__history", "labels__history", "warehouse_syncs__history"} <= set(left)
    assert "audit_events__history" not in left  # time-partitioned: no change table, no history
    assert then[0] == then[1] and set(then[0]) == {n[: -len("__history")] for n in left if n.endswith("__history")}
    assert diffs[0] == diffs[1]
    changed = {(c.table, c.op) for c in diffs[0][0]}
    assert {("sources", "U"), ("destinations", "U"), ("labels", "I")} <= changed
