"""Partitions of the time-based streams: fixed by configuration, never by the clock."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from segment_assets.api.streams import STREAMS
from segment_assets.engine.windows import clamp_to_retention, window_queries, window_scope

ROOT = Path(__file__).resolve().parent.parent

# Loads the code location and prints what a code server and a run worker must agree on.
SNAPSHOT = """
import json, time
from segment_assets.definitions import defs as code_location_defs
from segment_assets.orchestration.assets import asset_key
graph = code_location_defs().get_repository_def().asset_graph
out = {"now": time.time()}
for stream in ("audit_events", "usage_mtu_daily"):
    pdef = graph.get(asset_key(stream)).partitions_def
    out[stream] = {"definition": repr(pdef), "first": pdef.get_first_partition_key(),
                   "last": pdef.get_last_partition_key()}
print(json.dumps(out))
"""


def load_at(when: str) -> dict:
    """The definitions as a process whose clock reads `when` loads them (libfaketime, a real clock shift)."""
    env = {**os.environ, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    for name in ("SEGMENT_DAILY_START", "SEGMENT_MONTHLY_START", "SEGMENT_CONNECTIONS"):
        env.pop(name, None)
    out = subprocess.run(
        ["faketime", when, sys.executable, "-c", SNAPSHOT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("faketime") is None, reason="needs Debian's faketime (installed by .ci/run)")
def test_partition_set_is_the_same_on_either_side_of_midnight() -> None:
    before, after = load_at("2026-12-01 23:59:50"), load_at("2026-12-02 00:00:10")
    assert datetime.fromtimestamp(before["now"], UTC).day == 1, "the clock really was shifted"
    assert datetime.fromtimestamp(after["now"], UTC).day == 2
    for stream in ("audit_events", "usage_mtu_daily"):
        assert before[stream]["definition"] == after[stream]["definition"], stream
        assert before[stream]["first"] == after[stream]["first"], stream
    # The newest partition does move with time: the set grows, its definition does not.
    assert (before["audit_events"]["last"], after["audit_events"]["last"]) == ("2026-11-30", "2026-12-01")


def test_partitions_older_than_retention_make_no_request() -> None:
    audit = STREAMS["audit_events"].windowing
    now = datetime(2026, 11, 29, tzinfo=UTC)
    assert clamp_to_retention(audit, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC), now) is None
    start, end = datetime(2026, 8, 30, tzinfo=UTC), datetime(2026, 9, 2, tzinfo=UTC)
    clamped = clamp_to_retention(audit, start, end, now)
    assert clamped == (datetime(2026, 8, 31, tzinfo=UTC), end), "90 days back, not further"


def test_window_queries_respect_the_longest_range_the_api_accepts() -> None:
    delivery = STREAMS["delivery_successfully_received"].windowing
    start, end = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    queries = window_queries(delivery, start, end)
    assert [q["startTime"] for q in queries] == ["2026-10-01T00:00:00Z", "2026-10-15T00:00:00Z", "2026-10-29T00:00:00Z"]
    assert queries[-1]["endTime"] == "2026-11-01T00:00:00Z" and all(q["granularity"] == "HOUR" for q in queries)
    usage = STREAMS["usage_mtu_daily"].windowing
    assert window_queries(usage, datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)) == [
        {"period": "2026-10-01"},
        {"period": "2026-11-01"},
    ]


def test_a_window_over_several_partitions_counts_each_partition_s_rows() -> None:
    import pyarrow as pa

    daily = STREAMS["audit_events"].windowing
    assert daily is not None
    start, end = datetime(2026, 11, 26, tzinfo=UTC), datetime(2026, 11, 29, tzinfo=UTC)
    times = pa.array(
        [
            datetime(2026, 11, 26, 23, 59, tzinfo=UTC),
            datetime(2026, 11, 28, tzinfo=UTC),
            datetime(2026, 11, 29, tzinfo=UTC),
        ],
        pa.timestamp("us", tz="UTC"),
    )
    md = window_scope(daily, start, end, times)
    assert md["segment/rows_by_partition"] == {"2026-11-26": 1, "2026-11-27": 0, "2026-11-28": 1}
    assert md["segment/window_partitions"] == 3 and "whole window" in md["segment/metadata_scope"]
    monthly = STREAMS["usage_mtu_daily"].windowing
    assert monthly is not None
    months = window_scope(monthly, datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC), times[:0])
    assert months["segment/rows_by_partition"] == {"2026-10-01": 0, "2026-11-01": 0}
