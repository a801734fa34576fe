"""The network between a company and Segment: a forwarding proxy (HTTPS_PROXY/NO_PROXY) and a
custom CA bundle, with a real CONNECT proxy (tinyproxy) and the simulator over HTTPS."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from segment_assets.api.client import SegmentClient
from segment_assets.api.streams import STREAMS
from segment_assets.cli.commands import run_sync
from segment_assets.orchestration.resources import DuckDBStorage, SegmentResource
from segment_assets.simulator import Simulator
from segment_assets.simulator.tls import TlsFiles, make_certificates
from segment_assets.storage import DuckDBTarget
from segment_assets_tests.services import tinyproxy

SECRET = "sk-proxy-test-token-4242"
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("tinyproxy") is None, reason="needs Debian's tinyproxy (.ci/run)"),
]


@pytest.fixture
def certs(tmp_path: Path) -> TlsFiles:
    return make_certificates(tmp_path / "tls")


@pytest.fixture
def https_sim(certs: TlsFiles) -> Iterator[Simulator]:
    with Simulator(seed=7, tls_cert=certs.cert, tls_key=certs.key, tokens=(SECRET,)) as sim:
        yield sim


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    with tinyproxy(tmp_path) as running:
        yield running


@pytest.fixture
def through_proxy(proxy: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    """HTTPS_PROXY points at the proxy for every host; the proxy's log file."""
    monkeypatch.setenv("HTTPS_PROXY", proxy[0])
    monkeypatch.setenv("NO_PROXY", "")
    return proxy[1]


def sync(sim: Simulator, db: Path, **segment: object) -> None:
    resource = SegmentResource(api_token=SECRET, api_url=sim.url, pace_requests=False, **segment)
    run_sync(["sources", "labels"], segment=resource, storage=DuckDBStorage(path=str(db)), out=io.StringIO())


def test_a_sync_goes_through_the_proxy_with_a_custom_ca(
    https_sim: Simulator, certs: TlsFiles, through_proxy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = through_proxy
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    db = tmp_path / "segment_assets.duckdb"
    sync(https_sim, db, ca_bundle=str(certs.ca_cert))
    assert DuckDBTarget(db).query("SELECT count(*) FROM sources") == [(len(https_sim.items("listSources")),)]
    port = https_sim.url.rsplit(":", 1)[1]  # type: ignore[union-attr]
    assert f"CONNECT 127.0.0.1:{port}" in log.read_text(), "the requests went through the proxy"
    assert SECRET not in log.read_text(), "the token travels inside the TLS tunnel"


def test_ssl_cert_file_is_honoured_and_an_untrusted_gateway_refused(
    https_sim: Simulator, certs: TlsFiles, through_proxy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with pytest.raises(SystemExit, match="sync failed"):
        sync(https_sim, tmp_path / "refused.duckdb", max_retries=0)  # the default trust store refuses the CA
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca_cert))
    db = tmp_path / "trusted.duckdb"
    sync(https_sim, db)
    assert DuckDBTarget(db).query("SELECT count(*) FROM labels") == [(len(https_sim.items("listLabels")),)]


def test_no_proxy_bypasses_the_proxy(
    https_sim: Simulator, certs: TlsFiles, proxy: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, log = proxy
    monkeypatch.setenv("HTTPS_PROXY", url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with SegmentClient(SECRET, https_sim.url, ca_bundle=str(certs.ca_cert)) as client:
        assert client.request(STREAMS["workspace"], {}, {})["workspace"]["id"]
    port = https_sim.url.rsplit(":", 1)[1]  # type: ignore[union-attr]
    # (tinyproxy also logs the readiness probe's bare connection at level CONNECT: not a request)
    assert f"CONNECT 127.0.0.1:{port}" not in (log.read_text() if log.exists() else "")


def test_a_missing_ca_bundle_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a file"):
        SegmentClient(SECRET, "https://127.0.0.1:9", ca_bundle=str(tmp_path / "nope.pem"))
