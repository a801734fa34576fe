"""Shared fixtures: a real simulator on loopback, a temporary DuckDB file and Dagster home."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from segment_assets.resources import DuckDBTargetResource, SegmentResource
from segment_assets.storage import DuckDBTarget


@pytest.fixture
def sim() -> Iterator["Simulator"]:  # noqa: F821
    from segment_assets.simulator import Simulator

    with Simulator(seed=7) as s:
        yield s


@pytest.fixture(autouse=True)
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture
def duckdb_path(tmp_path: Path) -> Path:
    return tmp_path / "segment.duckdb"


@pytest.fixture
def target(duckdb_path: Path) -> DuckDBTarget:
    return DuckDBTarget(duckdb_path)


@pytest.fixture
def storage(duckdb_path: Path) -> DuckDBTargetResource:
    return DuckDBTargetResource(path=str(duckdb_path))


def segment_for(sim: "Simulator", **overrides: object) -> SegmentResource:  # noqa: F821
    return SegmentResource(api_token=sim.token, api_url=sim.url, pace_requests=False, **overrides)


@pytest.fixture
def segment(sim: "Simulator") -> SegmentResource:  # noqa: F821
    return segment_for(sim)
