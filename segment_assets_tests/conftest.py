"""Shared fixtures: a real simulator on loopback, a temporary DuckDB file and Dagster home."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from segment_assets.orchestration.resources import DuckDBStorage, SegmentResource
from segment_assets.storage import DuckDBTarget

if TYPE_CHECKING:
    from dagster import AssetMaterialization, ExecuteInProcessResult

    from segment_assets.simulator import Simulator

_SIGNALS_AT_START: dict[int, Any] = {}


def pytest_configure(config: pytest.Config) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        _SIGNALS_AT_START[signum] = signal.getsignal(signum)


@pytest.fixture(autouse=True)
def signals_as_at_start() -> Iterator[None]:
    """Puts SIGTERM and SIGINT back as the test process started with them after each test.

    Dagster's `materialize` ends by copying SIGINT's disposition onto SIGTERM
    (dagster._utils.interrupts): under a shell that started the tests in the background, SIGINT
    is ignored, so SIGTERM became ignored for the rest of the session and for every process
    started after it. Processes started within a test get default dispositions from
    `services.popen`/`services.run`."""
    yield
    for signum, handler in _SIGNALS_AT_START.items():
        if handler is not None and signal.getsignal(signum) is not handler:
            signal.signal(signum, handler)


# The fast tier is `pytest -m "not e2e"`. Tests marked e2e start servers in other processes
# (simulator subprocesses, `dagster dev`, moto_server, tinyproxy, PostgreSQL, Redis, Celery
# workers), a browser, or whole syncs. The markers and fixtures below imply it, so a test that
# uses one of those servers is e2e without saying so twice.
E2E_MARKERS = ("ui", "postgres", "celery")
E2E_FIXTURES = ("moto_s3", "s3_lake_url", "redis_url")
E2E_PARAMS = ("s3", "redis")  # the moto_server and redis-server variants of parametrized targets and stores


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        params = getattr(item, "callspec", None)
        if (
            any(item.get_closest_marker(name) for name in E2E_MARKERS)
            or any(name in getattr(item, "fixturenames", ()) for name in E2E_FIXTURES)
            or (params is not None and any(v in E2E_PARAMS for v in params.params.values() if isinstance(v, str)))
        ):
            item.add_marker(pytest.mark.e2e)
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: its collection order is the schedule
        # `--dist loadfile --no-loadscope-reorder` hands whole files to the workers in collection
        # order. The files that start browsers and servers go first, so the long ones overlap and
        # none ends the run alone while the other worker waits.
        weight: dict[Path, tuple[int, int]] = {}
        for item in items:
            ui, e2e = weight.get(item.path, (0, 0))
            weight[item.path] = (ui - bool(item.get_closest_marker("ui")), e2e - bool(item.get_closest_marker("e2e")))
        items.sort(key=lambda item: weight[item.path])


@pytest.fixture
def sim() -> Iterator[Simulator]:
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
    return tmp_path / "segment_assets.duckdb"


@pytest.fixture
def target(duckdb_path: Path) -> DuckDBTarget:
    return DuckDBTarget(duckdb_path)


@pytest.fixture
def storage(duckdb_path: Path) -> DuckDBStorage:
    return DuckDBStorage(path=str(duckdb_path))


def segment_for(sim: Simulator, **overrides: object) -> SegmentResource:
    return SegmentResource(api_token=sim.token, api_url=sim.url, pace_requests=False, **overrides)


@pytest.fixture
def segment(sim: Simulator) -> SegmentResource:
    return segment_for(sim)


def materializations(result: ExecuteInProcessResult, stream: str) -> list[AssetMaterialization]:
    """The materializations a run recorded for one stream's asset (zero-config keys)."""
    from segment_assets.orchestration.assets import asset_key

    key = asset_key(stream)
    return [
        e.event_specific_data.materialization for e in result.get_asset_materialization_events() if e.asset_key == key
    ]
