"""The lake target under failure and concurrency, with real processes: kill -9 in the middle of a
write and between the current-table and change-table commits, readers during writes, and
several processes writing one S3 lake (moto_server) at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable

from segment_assets.api.streams import UpdateMethod
from segment_assets.api.tables import table_def
from segment_assets.storage.lake_target import LakeTarget
from segment_assets_tests.s3_server import moto_s3, s3_lake_url  # noqa: F401 - fixtures
from segment_assets_tests.services import S3, popen

# Worker processes killed mid-write, and moto_server for the s3 variants.
pytestmark = pytest.mark.e2e

SOURCES = table_def("sources")
ROOT = Path(__file__).resolve().parent.parent

# Runs in a child process: writes `sources` snapshots described by argv, printing a marker line
# before each write; optionally freezes right before the change-table commit.
WORKER = textwrap.dedent("""
    import json, sys, time
    from segment_assets.storage.lake_target import LakeTarget
    from segment_assets.api.streams import UpdateMethod
    from segment_assets.api.tables import table_def

    url, stage, plan = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    SOURCES = table_def("sources")
    if plan.get("freeze_before_changes"):
        def frozen(self, *args, **kwargs):
            print("frozen", flush=True)
            time.sleep(600)
        LakeTarget._append_change_rows = frozen
    target = LakeTarget(url, stage_dir=stage)
    for step in plan["writes"]:
        n, label, run = step
        records = [{"id": f"src{i}", "name": f"{label} {i}", "slug": "s", "workspaceId": "ws", "enabled": True,
                    "writeKeys": [], "settings": {"i": i, "pad": "x" * 200}, "labels": [], "metadata": {}}
                   for i in range(n)]
        shaper = SOURCES.shaper(strict=False)
        batches = (shaper.batch(records[i:i + 5000], {}, {}) for i in range(0, n, 5000))
        print("writing", run, flush=True)
        target.write_snapshot(SOURCES, batches, method=UpdateMethod.RELOAD_AND_COMPARE, run_id=run)
        print("committed", run, flush=True)
""")


def start_worker(url: str, stage: Path, plan: dict, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return popen(
        [sys.executable, "-c", WORKER, url, str(stage), json.dumps(plan)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env=env or os.environ.copy(),
    )


def wait_for(proc: subprocess.Popen[str], line: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        got = proc.stdout.readline()
        if not got:
            raise AssertionError(f"worker exited (rc={proc.wait()}) before printing {line!r}")
        if got.strip() == line:
            return
    raise AssertionError(f"worker did not print {line!r} in {timeout}s")


def kill9(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)


@pytest.fixture(params=["lake", "s3"])
def lake_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "lake":
        return (tmp_path / "lake").as_uri()
    return request.getfixturevalue("s3_lake_url")


def names(target: LakeTarget) -> set[str]:
    return {n.split(" ")[0] for n in target.read_arrow("sources", ["name"]).column("name").to_pylist()}


def test_kill_9_mid_write_leaves_the_last_commit_readable(lake_url: str, tmp_path: Path) -> None:
    proc = start_worker(lake_url, tmp_path / "stage", {"writes": [[2000, "A", "r1"], [60000, "B", "r2"]]})
    wait_for(proc, "committed r1")
    wait_for(proc, "writing r2")
    time.sleep(1.0)  # inside the second write: staging, diffing or writing Delta files
    kill9(proc)
    target = LakeTarget(lake_url, stage_dir=tmp_path / "stage2")
    table = target.read_arrow("sources")
    seen = names(target)
    assert seen in ({"A"}, {"B"}), seen  # one committed version, never a mix
    expected_rows = 2000 if seen == {"A"} else 60000
    assert table.num_rows == expected_rows
    # The next run works on top of whatever was committed, and the change table agrees with it.
    target.write_snapshot(
        SOURCES,
        iter([SOURCES.shaper(strict=False).batch([{"id": "src0", "name": "C 0"}], {}, {})]),
        method=UpdateMethod.RELOAD_AND_COMPARE,
        run_id="r3",
    )
    assert target.read_arrow("sources").num_rows == 1
    net = target.query(
        "SELECT sum(CASE header__change_oper WHEN 'I' THEN 1 WHEN 'D' THEN -1 ELSE 0 END) FROM sources__ct"
    )[0][0]
    assert net == 1


def test_kill_between_table_and_change_commits_is_repaired_exactly(lake_url: str, tmp_path: Path) -> None:
    target = LakeTarget(lake_url, stage_dir=tmp_path / "stage")
    shaper = SOURCES.shaper(strict=False)
    first = [{"id": f"src{i}", "name": f"A {i}"} for i in range(5)]
    target.write_snapshot(
        SOURCES, iter([shaper.batch(first, {}, {})]), method=UpdateMethod.RELOAD_AND_COMPARE, run_id="r1"
    )
    proc = start_worker(lake_url, tmp_path / "stage", {"writes": [[3, "B", "r2"]], "freeze_before_changes": True})
    wait_for(proc, "frozen")
    kill9(proc)
    # The current table moved on (3 updated, 2 deleted); the change table did not.
    assert names(target) == {"B"}
    assert target.query("SELECT count(*) FROM sources__ct WHERE header__run_id = 'r2'") == [(0,)]
    history = DeltaTable(target.table_uri("sources"), storage_options=target.storage_options).history(1)
    commit = json.loads(history[0]["segment_assets"])
    # The next write repairs first: the killed run's change rows, then its own follow.
    target.write_snapshot(
        SOURCES,
        iter([shaper.batch([{"id": "src0", "name": "B 0"}], {}, {})]),
        method=UpdateMethod.RELOAD_AND_COMPARE,
        run_id="r3",
    )
    changes = target.query(
        "SELECT header__change_oper, id, name, header__change_seq FROM sources__ct "
        "WHERE header__run_id = 'r2' ORDER BY header__change_seq"
    )
    assert [c[:3] for c in changes] == [
        ("U", "src0", "B 0"),
        ("U", "src1", "B 1"),
        ("U", "src2", "B 2"),
        ("D", "src3", "A 3"),
        ("D", "src4", "A 4"),
    ]
    assert {c[3][:16] for c in changes} == {commit["prefix"]}  # the prefix claimed by the killed run
    own = target.query("SELECT min(header__change_seq) FROM sources__ct WHERE header__run_id = 'r3'")[0][0]
    assert max(c[3] for c in changes) < own
    # Repaired once: the app transaction records what the change table mirrors.
    target.write_snapshot(
        SOURCES,
        iter([shaper.batch([{"id": "src0", "name": "B 0"}], {}, {})]),
        method=UpdateMethod.RELOAD_AND_COMPARE,
        run_id="r4",
    )
    assert target.query("SELECT header__run_id, count(*) FROM sources__ct GROUP BY ALL ORDER BY 1") == [
        ("r1", 5),
        ("r2", 5),
        ("r3", 3),
    ]  # U src0 (its other fields), D src1, D src2


def test_a_reader_during_writes_sees_old_or_new_never_a_mix(tmp_path: Path) -> None:
    url = (tmp_path / "lake").as_uri()
    plan = {"writes": [[3000, label, f"r{i}"] for i, label in enumerate("ABABAB")]}
    proc = start_worker(url, tmp_path / "stage", plan)
    wait_for(proc, "committed r0")
    reader = LakeTarget(url, stage_dir=tmp_path / "stage-r")
    seen: list[set[str]] = []
    done = threading.Event()

    def drain() -> None:
        assert proc.stdout is not None
        for _ in proc.stdout:
            pass
        done.set()

    threading.Thread(target=drain, daemon=True).start()
    while not done.is_set():
        table = reader.read_arrow("sources", ["name"])
        assert table.num_rows == 3000
        seen.append({n.split(" ")[0] for n in table.column("name").to_pylist()})
    assert proc.wait(60) == 0
    assert all(s in ({"A"}, {"B"}) for s in seen), [s for s in seen if len(s) > 1][:3]
    assert {"A"} in seen and len(seen) > 3


def test_concurrent_prefix_claims_and_appends_never_collide(
    moto_s3: S3,  # noqa: F811 - the fixture imported above
    s3_lake_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    worker = textwrap.dedent("""
        import sys, pyarrow as pa
        from segment_assets.storage.lake_target import LakeTarget
        t = LakeTarget(sys.argv[1], stage_dir=sys.argv[3])
        out = []
        for i in range(3):
            out.append(t._claim_seq_prefix())
            t.append_rows("_shared", pa.table({"writer": [sys.argv[2]], "i": [i]}))
        print(",".join(out))
    """)
    env = {**os.environ, **moto_s3.env}
    procs = [
        popen(
            [sys.executable, "-c", worker, s3_lake_url, str(w), str(tmp_path / f"s{w}")],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for w in range(3)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    claims = [line.strip().split(",") for line in outs]
    flat = [c for per in claims for c in per]
    assert len(flat) == 9 and len(set(flat)) == 9  # unique across processes
    assert all(per == sorted(per) for per in claims)  # increasing within each process
    shared = LakeTarget(s3_lake_url).read_arrow("_shared")
    assert shared.num_rows == 9  # no append lost to a racing commit
