"""`segment-assets snapshot` and `segment-assets diff`: their errors, and end to end: sync, change the
workspace, sync, change it again, sync; a snapshot as of the end of the first sync equals a fresh
sync of a new workspace of the same seed, and one as of the end of the second equals that workspace
with only the first change applied."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from segment_assets.api.streams import UpdateMethod
from segment_assets.api.tables import table_def
from segment_assets.cli.commands import main, run_sync
from segment_assets.orchestration.resources import DuckDBStorage
from segment_assets.simulator import Simulator
from segment_assets.storage import DuckDBTarget
from segment_assets_tests.conftest import segment_for

# Configuration streams of every kind that keeps history (reload and compare, one-, two- and
# three-column keys, fan-out children, a watermark stream), and a time-partitioned one that keeps none.
STREAMS = [
    "sources",
    "destinations",
    "destination_filters",
    "labels",
    "tracking_plans",
    "tracking_plan_rules",
    "warehouses",
    "warehouse_syncs",
    "usage_mtu_daily",
]
FIRST = ("rename_source", "create_label", "update_destination_filter")
SECOND = ("toggle_destination", "add_tracking_plan_rule", "delete_label")
# Stamped by the simulator clock when a change is made, so the same change made later in another
# simulator differs there only: the snapshot must hold the value of the workspace it was taken from.
CHANGE_TIME_COLUMNS = ("updated_at",)


def sync(sim: Simulator, path: Path) -> datetime:
    run_sync(STREAMS, segment=segment_for(sim), storage=DuckDBStorage(path=str(path)), out=io.StringIO())
    end = datetime.now(UTC)
    time.sleep(0.01)
    return end


def tables(path: Path, names: Sequence[str] | None = None) -> dict[str, list[tuple]]:
    with duckdb.connect(str(path), read_only=True) as con:
        names = names or [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'segment' ORDER BY 1"
            ).fetchall()
        ]
        out = {}
        for name in names:
            cols = [r[0] for r in con.execute(f'SELECT * FROM segment."{name}" LIMIT 0').description]
            keep = ", ".join(f'"{c}"' for c in cols if c not in CHANGE_TIME_COLUMNS)
            out[name] = con.execute(f'SELECT {keep} FROM segment."{name}" ORDER BY ALL').fetchall()
        return out


def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], path: Path, *args: str) -> str:
    monkeypatch.setenv("SEGMENT_DUCKDB_PATH", str(path))
    monkeypatch.delenv("SEGMENT_CONNECTIONS", raising=False)
    monkeypatch.delenv("SEGMENT_TARGET", raising=False)
    capsys.readouterr()
    assert main(list(args)) == 0
    return capsys.readouterr().out


@pytest.fixture
def synced(tmp_path: Path) -> Path:
    """A DuckDB file with one source written twice (renamed in between) and a time-partitioned table."""
    db = tmp_path / "segment_assets.duckdb"
    target, sources = DuckDBTarget(db), table_def("sources")
    for name in ("Before", "After"):
        record = {"id": "src1", "slug": "s", "name": name, "workspaceId": "ws", "enabled": True}
        batch = sources.shaper(strict=False).batch([record], {}, {})
        target.write_snapshot(sources, iter([batch]), method=UpdateMethod.RELOAD_AND_COMPARE, run_id="r")
    target.ensure_table(table_def("audit_events"))
    target.close()
    return db


def test_snapshot_refuses_an_existing_file_and_a_bad_time(
    synced: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    existing = tmp_path / "taken.duckdb"
    existing.write_bytes(b"mine")
    with pytest.raises(SystemExit, match="taken.duckdb exists: a snapshot writes a new file"):
        cli(monkeypatch, capsys, synced, "snapshot", "--as-of", "2026-01-01", "--into", str(existing))
    assert existing.read_bytes() == b"mine"
    with pytest.raises(SystemExit):
        cli(monkeypatch, capsys, synced, "snapshot", "--as-of", "last tuesday", "--into", str(tmp_path / "x.duckdb"))
    assert "'last tuesday' is not a time: use ISO 8601" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--to .* is before --from"):
        cli(monkeypatch, capsys, synced, "diff", "--from", "2026-02-01", "--to", "2026-01-01")


def test_snapshot_and_diff_on_a_file(
    synced: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC).isoformat()
    out = cli(monkeypatch, capsys, synced, "snapshot", "--as-of", now, "--into", str(tmp_path / "now.duckdb"))
    assert "sources" in out and "left out, as they keep no history" in out and "audit_events" in out
    with duckdb.connect(str(tmp_path / "now.duckdb"), read_only=True) as con:
        assert con.execute("SELECT id, name FROM segment.sources").fetchall() == [("src1", "After")]
    out = cli(monkeypatch, capsys, synced, "snapshot", "--as-of", "2020-01-01", "--into", str(tmp_path / "old.duckdb"))
    assert "history starts at" in out and tables(tmp_path / "old.duckdb", ["sources"]) == {"sources": []}
    out = cli(monkeypatch, capsys, synced, "diff", "--from", "2020-01-01")
    assert "sources: 1 inserted, 0 updated, 0 deleted" in out and "+ id=src1" in out
    with pytest.raises(SystemExit, match="no history for table.*audit_events: they keep none"):
        cli(monkeypatch, capsys, synced, "diff", "--from", "2020-01-01", "--table", "audit_events")


@pytest.mark.e2e  # five whole syncs of a simulated workspace
@pytest.mark.timeout(900)
def test_snapshots_rebuild_the_workspace_as_each_sync_saw_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    db = tmp_path / "segment_assets.duckdb"
    with Simulator(seed=7, now=now) as sim:
        first = sync(sim, db)
        applied = [sim.mutate(change) for change in FIRST]
        second = sync(sim, db)
        for change in SECOND:
            sim.mutate(change)
        sync(sim, db)

    out = cli(monkeypatch, capsys, db, "snapshot", "--as-of", first.isoformat(), "--into", str(tmp_path / "one.duckdb"))
    assert "left out, as they keep no history" in out and "usage_mtu_daily" in out
    cli(monkeypatch, capsys, db, "snapshot", "--as-of", second.isoformat(), "--into", str(tmp_path / "two.duckdb"))
    one, two = tables(tmp_path / "one.duckdb"), tables(tmp_path / "two.duckdb")
    assert set(one) == set(two) == set(STREAMS) - {"usage_mtu_daily"}

    fresh = tmp_path / "fresh.duckdb"
    with Simulator(seed=7, now=now) as sim:
        sync(sim, fresh)
        assert tables(fresh, list(one)) == one
        assert one != two  # the first change shows
        for change, before in zip(FIRST, applied, strict=True):
            assert sim.mutate(change)["id"] == before["id"]  # the same change of the same object
        sync(sim, fresh)
        assert tables(fresh, list(two)) == two

    # diff between the two moments: exactly the first changes.
    out = cli(
        monkeypatch, capsys, db, "diff", "--from", first.isoformat(), "--to", second.isoformat(), "--format", "json"
    )
    changes = json.loads(out)
    renamed = applied[0]
    with duckdb.connect(str(tmp_path / "one.duckdb"), read_only=True) as con:
        old_name = con.execute("SELECT name FROM segment.sources WHERE id = ?", [renamed["id"]]).fetchall()[0][0]
    rename = {"table": "sources", "op": "U", "key": {"id": renamed["id"]}, "column": "name"}
    assert {**rename, "old": old_name, "new": renamed["object"]["name"]} in changes
    assert {(c["table"], c["op"]) for c in changes} >= {("sources", "U"), ("labels", "I"), ("destination_filters", "U")}
    assert not {c["table"] for c in changes} & {"destinations", "tracking_plan_rules"}  # the second changes are later
    # The label created by the first change and deleted by the second: in neither state, so in no diff.
    text = cli(monkeypatch, capsys, db, "diff", "--from", first.isoformat(), "--table", "labels")
    assert text.splitlines()[0].endswith(": none")
    text = cli(monkeypatch, capsys, db, "diff", "--from", first.isoformat(), "--to", second.isoformat())
    assert f"~ id={renamed['id']}" in text and f"name: {old_name} -> {renamed['object']['name']}" in text
