"""What a run says while it works (`engine/progress.py`): progress lines throttled per stream on an
injected clock, the client's 429 and retry messages, a line per finished stream in the run's event
log, and the terminal's estimate of time left."""

from __future__ import annotations

import io
import logging

import pytest
from dagster import DagsterInstance, materialize

from segment_assets.api.client import SegmentClient
from segment_assets.api.streams import STREAMS
from segment_assets.cli.terminal import TerminalProgress
from segment_assets.engine.progress import RunProgress, seconds_left
from segment_assets.orchestration.assets import asset_key, build_assets
from segment_assets.orchestration.resources import DuckDBStorage, SegmentResource
from segment_assets.simulator import Simulator
from segment_assets_tests.conftest import segment_for

SAMPLES = STREAMS["space_event_property_sample_values"]  # listSampleValuesFromEventProperty: 25/min
SOURCES = STREAMS["sources"]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def paced_client() -> SegmentClient:
    return SegmentClient("t", "http://127.0.0.1:9", rate_limits={SAMPLES.operation_id: 25})


def test_a_running_stream_gets_a_line_at_most_every_interval_naming_its_figures() -> None:
    clock, said = Clock(), []
    client = paced_client()
    run = RunProgress(client, lambda level, text: said.append((clock.now, level, text)), interval=30, clock=clock)
    run.started(SAMPLES)
    run.planned(SAMPLES, 100)
    clock.now = 10
    run.started(SOURCES)  # one page, nothing planned to go on yet

    def flush_at(t: float) -> list[str]:
        clock.now = t
        before = len(said)
        run.flush()
        return [text for _, _, text in said[before:]]

    assert flush_at(10) == [] and flush_at(29.9) == []
    client.stats_for(SAMPLES.name).add(requests=40, records=1234, wait_seconds=21.5)
    (line,) = flush_at(30)  # SOURCES started at 10: not yet
    # 60 requests left at 25/min: 144 s, however fast the first 40 went.
    assert line == (f"{SAMPLES.name}: 40 of ~100 requests, 1,234 rows, 22 s of rate-limit waits, about 2 min left"), (
        line
    )
    (line,) = flush_at(40)
    assert line.startswith(f"{SOURCES.name}: 0 requests (planning), 0 rows") and "time left not known" in line
    assert flush_at(45) == [] and flush_at(59.9) == []
    run.ended(SOURCES)  # an ended stream says no more
    assert [t.split(":")[0] for t in flush_at(60)] == [SAMPLES.name]
    assert len(flush_at(100)) == 1 and flush_at(100) == [], "a flush right after another says nothing"
    client.close()


def test_queued_messages_are_said_at_the_next_flush_in_order_before_the_progress_lines() -> None:
    clock, said = Clock(), []
    client = paced_client()
    run = RunProgress(client, lambda level, text: said.append((level, text)), interval=30, clock=clock)
    run.started(SAMPLES)
    run.message(logging.INFO, "a: 429 Too Many Requests, waiting 2.00s")
    run.message(logging.INFO, "b: HTTP 500, retry 1 in 0.30s")
    assert said == []  # nothing is said from the thread that queued it
    clock.now = 30
    run.flush()
    assert [t for _, t in said[:2]] == ["a: 429 Too Many Requests, waiting 2.00s", "b: HTTP 500, retry 1 in 0.30s"]
    assert len(said) == 3 and said[2][1].startswith(SAMPLES.name)
    run.flush()
    assert len(said) == 3, "each message once"
    client.close()


def test_time_left_is_what_remains_at_the_limit_or_at_the_pace_seen() -> None:
    assert seconds_left(made=40, planned=100, elapsed=5, per_minute=25) == 144  # the limit, not the burst
    assert seconds_left(made=10, planned=30, elapsed=5, per_minute=None) == 10  # 2 requests a second
    assert seconds_left(made=100, planned=100, elapsed=5, per_minute=25) == 0
    assert seconds_left(made=120, planned=100, elapsed=5, per_minute=25) is None  # pages past the plan
    assert seconds_left(made=0, planned=30, elapsed=5, per_minute=None) is None
    assert seconds_left(made=3, planned=None, elapsed=5, per_minute=25) is None
    # 2 of 3 requests at 2/min, the third's 60 s wait booked at the start: it is what is left
    assert seconds_left(made=2, planned=3, elapsed=30, per_minute=2, waited=60) == 30
    assert seconds_left(made=2, planned=3, elapsed=59.5, per_minute=2, waited=60) == 0.5
    assert seconds_left(made=2, planned=4, elapsed=59.5, per_minute=2, waited=60) == 30.5  # and one more after it
    assert seconds_left(made=2, planned=3, elapsed=70, per_minute=2, waited=60) == 35  # none running: the pace seen


def test_the_terminal_line_shows_the_runs_estimate_of_time_left() -> None:
    clock = Clock()
    client = paced_client()
    run = RunProgress(client, clock=clock)
    view = TerminalProgress(2, out=io.StringIO(), live=False)
    view.run_started(run, [SAMPLES])
    view.stream_started(SAMPLES)
    run.started(SAMPLES)
    run.planned(SAMPLES, 100)
    client.stats_for(SAMPLES.name).add(requests=40)
    assert "about 2 min left" in view.status_line()
    client.close()


def test_the_client_says_its_429s_and_retries_to_whoever_listens(sim: Simulator) -> None:
    sim.inject("429", "listSources", ms_before_next=10)
    sim.inject("500", "listSources", times=1)
    heard: list[str] = []
    with SegmentClient(sim.token, sim.url, backoff_base=0.01) as client:
        client.on_message = lambda level, text: heard.append(text)
        list(client.pages(SOURCES))
    assert any(t.startswith("sources: 429 Too Many Requests, waiting 0.01s") for t in heard), heard
    assert any(t.startswith("sources: HTTP 500") and ", retry " in t for t in heard), heard


def test_a_run_logs_a_line_per_finished_stream_and_the_clients_429s_to_its_event_log(
    sim: Simulator, storage: DuckDBStorage
) -> None:
    sim.inject("429", "listSources", ms_before_next=10)
    instance = DagsterInstance.ephemeral()
    selected = ["sources", "source_details", "workspace"]
    result = materialize(
        build_assets(),
        resources={"segment": segment_for(sim), "storage": storage},
        selection=[asset_key(s) for s in selected],
        instance=instance,
    )
    assert result.success
    messages = [e.user_message for e in instance.all_logs(result.run_id) if e.dagster_event is None]
    for name in selected:
        (line,) = [m for m in messages if m.startswith(f"{name}: done, ")]
        assert " rows" in line and (" requests, " in line or " 1 request, " in line)
    assert any(m.startswith("sources: 429 Too Many Requests") for m in messages), messages


def test_the_resources_progress_interval_sets_how_often_a_running_stream_is_said(
    sim: Simulator, storage: DuckDBStorage
) -> None:
    def running_lines(interval: float) -> list[str]:
        # A 429 asking for 1.5 s: the stream runs at least that long, while the run's thread
        # flushes its progress at least every 0.2 s.
        sim.inject("429", "listSources", ms_before_next=1500, times=1)
        instance = DagsterInstance.ephemeral()
        result = materialize(
            build_assets(),
            resources={"segment": segment_for(sim, progress_interval_seconds=interval), "storage": storage},
            selection=[asset_key("sources")],
            instance=instance,
        )
        assert result.success
        messages = [e.user_message for e in instance.all_logs(result.run_id) if e.dagster_event is None]
        assert any(m.startswith("sources: done, ") for m in messages), messages
        return [
            m for m in messages if m.startswith("sources: ") and not m.startswith(("sources: done", "sources: 429"))
        ]

    assert running_lines(3600) == []
    lines = running_lines(0.3)
    assert lines and all(" rows" in m for m in lines), lines


def test_a_progress_interval_of_zero_is_refused_naming_the_field() -> None:
    with pytest.raises(Exception, match="progress_interval_seconds"):
        SegmentResource(api_token="t", progress_interval_seconds=0)
