"""What a sync left in its Dagster home: its runs (timestamps) and each stream's materialization
metadata (requests, rate-limit waits, change rows), read through Dagster's public instance API."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunInfo:
    run_id: str
    status: str
    created: float  # epoch seconds
    started: float | None
    ended: float | None
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)  # stream -> materialization metadata


@contextmanager
def _instance(home: Path) -> Iterator[Any]:
    from dagster import DagsterInstance

    before = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with DagsterInstance.get() as instance:
            yield instance
    finally:
        if before is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = before


def runs(home: Path, exclude: set[str] | frozenset[str] = frozenset()) -> list[RunInfo]:
    """Every run in `home` but those in `exclude`, oldest first, with their materializations."""
    from dagster import DagsterEventType

    out = []
    with _instance(home) as instance:
        for record in instance.get_run_records(ascending=True):
            run = record.dagster_run
            if run.run_id in exclude:
                continue
            info = RunInfo(
                run.run_id, run.status.value, record.create_timestamp.timestamp(), record.start_time, record.end_time
            )
            for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
                mat = entry.dagster_event.event_specific_data.materialization
                info.streams[mat.asset_key.path[-1]] = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
            out.append(info)
    return out


def run_ids(home: Path) -> set[str]:
    with _instance(home) as instance:
        return {r.dagster_run.run_id for r in instance.get_run_records()}


def streams(infos: list[RunInfo]) -> dict[str, dict[str, Any]]:
    """Stream -> metadata over several runs (a sync is one run per partitioning)."""
    return {name: md for info in infos for name, md in info.streams.items()}


def runless_streams(home: Path, streams: set[str], run_ids: set[str]) -> set[str]:
    """Streams with a runless materialization naming one of `run_ids` (`segment/run_id`): what a step
    Dagster closed while stopping recorded after it could no longer yield."""
    from dagster import AssetKey

    found = set()
    with _instance(home) as instance:
        for name in streams:
            for record in instance.fetch_materializations(AssetKey(["segment", name]), limit=20).records:
                mat = record.asset_materialization
                tag = mat.metadata.get("segment/run_id") if mat else None
                if tag is not None and tag.value in run_ids:
                    found.add(name)
    return found
