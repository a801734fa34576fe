"""SegmentClient against the simulator over real HTTP on loopback."""

from __future__ import annotations

import logging
import time

import pytest

from segment_assets.api.client import SegmentClient
from segment_assets.api.errors import PaginationError, SegmentAuthError, StreamUnavailable, TransientError
from segment_assets.api.streams import STREAMS
from segment_assets.orchestration.resources import SegmentResource
from segment_assets.simulator import Simulator


def client_for(sim: Simulator, **kw: object) -> SegmentClient:
    kw.setdefault("backoff_base", 0.01)
    return SegmentClient(sim.token, sim.url, global_rate_limit=None, **kw)


def all_records(client: SegmentClient, stream: str, path: dict | None = None, query: dict | None = None) -> list:
    return [r for page in client.pages(STREAMS[stream], path, query) for r in page.records]


def test_paginates_across_many_pages_without_loss() -> None:
    with Simulator(seed=3, counts={"sources": 250}) as sim, client_for(sim, page_size=7) as client:
        got = all_records(client, "sources")
        assert got == sim.items("listSources")
        assert len(got) == 250
        assert client.stats.pages == -(-250 // 7) == client.stats.requests


def test_default_page_size_is_the_endpoint_maximum(sim: Simulator) -> None:
    with client_for(sim) as client:
        all_records(client, "sources")
        assert client.stats.requests == 1


@pytest.mark.parametrize(
    ("stream", "operation", "parent_op", "param_map"),
    [
        ("labels", "listLabels", None, {}),  # unpaginated
        ("source_regulations", "listRegulationsFromSource", "listSources", {"sourceId": "id"}),  # no pagination out
        ("audiences", "listAudiences", "listSpaces", {"spaceId": "id"}),  # count <= 200
        ("space_filters", "listFiltersForSpace", "listSpaces", {"integrationId": "id"}),  # offset cursor, count <= 10
    ],
)
def test_pagination_exceptions(
    sim: Simulator, stream: str, operation: str, parent_op: str | None, param_map: dict
) -> None:
    spec = STREAMS[stream]
    parents = sim.items(parent_op) if parent_op else [{}]
    with client_for(sim, page_size=3) as client:
        for parent in parents:
            params = {k: parent[v] for k, v in param_map.items()}
            path = {k: v for k, v in params.items() if k in spec.operation.path_params}
            query = {k: v for k, v in params.items() if k not in path}
            # The stream's own parameters too (audiences ask for include=schedules).
            assert all_records(client, stream, path, query) == sim.items(operation, path, {**spec.query, **query})


def test_top_level_count_and_cursor(sim: Simulator) -> None:
    spec = STREAMS["reverse_etl_sync_statuses"]
    subs = [
        s
        for d in sim.items("listDestinations")
        for s in sim.items("listSubscriptionsFromDestination", {"destinationId": d["id"]})
        if s.get("modelId")
    ]
    assert subs, "the demo workspace has reverse-ETL subscriptions"
    with client_for(sim, page_size=2) as client:
        for sub in subs:
            path = {"modelId": sub["modelId"], "subscriptionId": sub["id"]}
            assert all_records(client, spec.name, path) == sim.items(spec.operation_id, path)
    assert sim.stats["last_accept"].get(spec.operation_id) == "application/vnd.segment.v1alpha+json"


def test_two_independent_cursors(sim: Simulator) -> None:
    spec = STREAMS["credential_consumers"]
    with client_for(sim, page_size=1) as client:
        for cred in sim.items("listCredentials"):
            path = {"credentialId": cred["id"]}
            pages = list(client.pages(spec, path))
            for kind in ("sources", "warehouses"):
                got = [r["id"] for p in pages if p.record_kind == kind for r in p.records]
                assert len(set(got)) == len(got), f"{kind} repeated across pages"
            assert sorted(r["id"] for p in pages for r in p.records) == sorted(
                i["id"] for i in sim.items(spec.operation_id, path)
            )


def test_429_waits_ms_before_next(sim: Simulator) -> None:
    sim.inject("429", "listSources", ms_before_next=400)
    with client_for(sim) as client:
        started = time.monotonic()
        got = all_records(client, "sources")
        elapsed = time.monotonic() - started
    assert got == sim.items("listSources")
    assert elapsed >= 0.4
    assert client.stats.rate_limited == 1
    assert client.stats.wait_seconds >= 0.4


def test_5xx_and_timeouts_are_retried(sim: Simulator) -> None:
    sim.inject("500", "listSources", times=2)
    sim.inject("timeout", "listDestinations", seconds=2)
    with client_for(sim, read_timeout=0.5) as client:
        assert all_records(client, "sources") == sim.items("listSources")
        assert all_records(client, "destinations") == sim.items("listDestinations")
        assert client.stats.retries == 3


def test_retries_are_bounded(sim: Simulator) -> None:
    sim.inject("503", "listSources", times=10)
    with client_for(sim, max_retries=2) as client, pytest.raises(TransientError, match="sources.*3 times"):
        all_records(client, "sources")


def test_401_names_the_variable_and_hides_the_token(sim: Simulator) -> None:
    secret = "sk-totally-secret-value-123"
    with SegmentClient(secret, sim.url) as client, pytest.raises(SegmentAuthError) as err:
        all_records(client, "sources")
    assert "SEGMENT_API_TOKEN" in str(err.value) and "Public API token" in str(err.value)
    assert secret not in str(err.value) and secret not in repr(client)


def test_403_is_a_typed_unavailable_outcome() -> None:
    with Simulator(seed=7, disabled_features=("Protocols",)) as sim, client_for(sim) as client:
        with pytest.raises(StreamUnavailable) as err:
            all_records(client, "tracking_plans")
        assert err.value.status == 403 and err.value.feature == "Protocols"


def test_repeated_cursor_is_an_error_not_a_loop() -> None:
    with Simulator(seed=3, counts={"sources": 30}) as big:
        big.inject("repeat_cursor", "listSources", times=50)
        with client_for(big, page_size=5, max_retries=2) as client, pytest.raises(PaginationError, match="twice"):
            all_records(client, "sources")
        assert big.stats["by_operation"]["listSources"] == 3, "the page was asked for again, then given up on"


def test_a_single_repeated_cursor_is_read_again() -> None:
    with Simulator(seed=3, counts={"sources": 30}) as big:
        big.inject("repeat_cursor", "listSources", times=1)
        with client_for(big, page_size=5) as client:
            assert all_records(client, "sources") == big.items("listSources")
            assert client.stats.retries == 1


def test_a_page_the_caller_rejects_is_read_again(sim: Simulator) -> None:
    sim.inject("missing_field", "listSources", times=1, field="id")

    def shape(page):  # type: ignore[no-untyped-def]
        if any("id" not in r for r in page.records):
            raise ValueError("record without id")
        return page.records

    with client_for(sim) as client:
        assert [r for rs in client.pages(STREAMS["sources"], shape=shape) for r in rs] == sim.items("listSources")
        assert client.stats.retries == 1


def test_media_type_follows_stability(sim: Simulator) -> None:
    with client_for(sim) as client:
        all_records(client, "sources")
        all_records(client, "spaces")
    assert sim.stats["last_accept"]["listSources"] == "application/vnd.segment.v1+json"
    assert sim.stats["last_accept"]["listSpaces"] == "application/vnd.segment.v1alpha+json"


def test_token_never_reaches_logs(sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sim.inject("429", "listSources", ms_before_next=10)
    sim.inject("500", "listDestinations")
    resource = SegmentResource(api_token=sim.token, api_url=sim.url, pace_requests=False)
    client = resource.make_client()
    all_records(client, "sources")
    all_records(client, "destinations")
    assert caplog.records, "the client logged its retries"
    assert sim.token not in caplog.text
    assert sim.token not in repr(resource) and sim.token not in repr(client)


def test_region_and_url() -> None:
    assert SegmentResource(api_token="x", region="eu").base_url == "https://eu1.api.segmentapis.com"
    assert SegmentResource(api_token="x").base_url == "https://api.segmentapis.com"
    assert SegmentResource(api_token="x", api_url="http://127.0.0.1:1/").base_url == "http://127.0.0.1:1"
    with pytest.raises(ValueError, match="SEGMENT_REGION"):
        _ = SegmentResource(api_token="x", region="mars").base_url


EXITING_MAIN = """
import sys, threading
from segment_assets.api.client import SegmentClient
from segment_assets.api.errors import SyncStopped
from segment_assets.api.streams import STREAMS

client = SegmentClient(sys.argv[1], sys.argv[2], rate_limits={"listSources": 1}, global_rate_limit=None)

def read():
    try:
        for _ in range(3):  # the second request waits a minute for the 1/min budget
            client.request(STREAMS["sources"], {}, {})
    except SyncStopped:
        print("stopped", flush=True)

threading.Thread(target=read).start()  # not a daemon: the interpreter waits for it at exit
threading.Event().wait(1.0)
# The main thread ends here, as when an interrupt unwinds it through Dagster's code.
"""


def test_stream_threads_stop_when_the_main_thread_has_ended(sim: Simulator) -> None:
    import subprocess
    import sys

    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", EXITING_MAIN, sim.token, sim.url], capture_output=True, text=True, timeout=120
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-2000:]
    assert "stopped" in done.stdout
    assert took < 20, f"the process waited {took:.0f}s for a thread sleeping on the rate limit"
    assert sim.stats.by_operation["listSources"] == 1, "no request after the main thread ended"
