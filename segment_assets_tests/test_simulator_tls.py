"""The simulator over HTTPS with a throw-away CA: trusted, untrusted, through a real CONNECT
proxy (tinyproxy), and from the command line."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from segment_assets.simulator import Simulator
from segment_assets.simulator.tls import TlsFiles, make_certificates
from segment_assets_tests.services import free_port, popen, stop, tinyproxy

AUTH = {"Authorization": "Bearer sim-token"}


def _backends() -> list[str]:
    out = []
    try:
        import cryptography  # noqa: F401

        out.append("cryptography")
    except ImportError:
        pass
    if shutil.which("openssl"):
        out.append("openssl")
    return out


@pytest.fixture(scope="module", params=_backends())
def certs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_certificates(tmp_path_factory.mktemp(request.param), backend=request.param)


@pytest.fixture(scope="module")
def https_sim(certs: TlsFiles) -> Iterator[Simulator]:
    with Simulator(seed=7, tls_cert=certs.cert, tls_key=certs.key) as sim:
        yield sim


def _trust(files: TlsFiles) -> ssl.SSLContext:
    """A client context that trusts the throw-away CA (and nothing else)."""
    return ssl.create_default_context(cafile=str(files.ca_cert))


def _is_verify_failure(error: BaseException) -> bool:
    while error is not None:
        if isinstance(error, ssl.SSLCertVerificationError):
            return True
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return False


def test_files_and_key_mode(certs: TlsFiles) -> None:
    for path in (certs.ca_cert, certs.cert, certs.key):
        assert path.read_text().startswith("-----BEGIN ")
    assert certs.key.stat().st_mode & 0o077 == 0
    assert sorted(p.name for p in certs.ca_cert.parent.iterdir()) == ["ca.pem", "server.key", "server.pem"]


def test_a_client_trusting_the_ca_is_answered(https_sim: Simulator, certs: TlsFiles) -> None:
    assert https_sim.url is not None and https_sim.url.startswith("https://127.0.0.1:")
    with httpx.Client(verify=_trust(certs), headers=AUTH, timeout=10) as http:
        response = http.get(f"{https_sim.url}/sources", params={"pagination[count]": 3})
        assert response.status_code == 200 and len(response.json()["data"]["sources"]) == 3
        assert http.get(f"{https_sim.url}/sources").status_code == 200  # keep-alive over TLS
        by_name = https_sim.url.replace("127.0.0.1", "localhost")  # the certificate names both
        assert http.get(f"{by_name}/labels").status_code == 200
        assert http.post(f"{https_sim.url}/__simulator/mutate").status_code == 200
    assert ssl.create_default_context(cafile=str(certs.ca_cert)).cert_store_stats()["x509_ca"] == 1


def test_a_client_not_trusting_the_ca_is_refused(https_sim: Simulator, certs: TlsFiles, tmp_path: Path) -> None:
    with pytest.raises(httpx.ConnectError) as default_trust:
        httpx.get(f"{https_sim.url}/sources", headers=AUTH, timeout=10)
    assert _is_verify_failure(default_trust.value)
    other = make_certificates(tmp_path / "other")  # another CA entirely
    with pytest.raises(httpx.ConnectError) as other_ca:
        httpx.get(f"{https_sim.url}/sources", headers=AUTH, verify=_trust(other), timeout=10)
    assert _is_verify_failure(other_ca.value)
    # The refused handshakes did not hurt the server.
    assert httpx.get(f"{https_sim.url}/sources", headers=AUTH, verify=_trust(certs)).status_code == 200


def test_plain_http_to_the_https_port_fails_cleanly(https_sim: Simulator, certs: TlsFiles) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.get(https_sim.url.replace("https://", "http://") + "/sources", headers=AUTH, timeout=5)  # type: ignore[union-attr]
    assert httpx.get(f"{https_sim.url}/sources", headers=AUTH, verify=_trust(certs)).status_code == 200


def _wait_for_port(port: int, proc: subprocess.Popen[str], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port} after {seconds} s")


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("tinyproxy") is None, reason="tinyproxy is not installed (apt-get install tinyproxy)")
def test_through_a_connect_proxy(https_sim: Simulator, certs: TlsFiles, tmp_path: Path) -> None:
    with tinyproxy(tmp_path) as (proxy_url, log):
        with httpx.Client(proxy=proxy_url, verify=_trust(certs), headers=AUTH, timeout=10) as http:
            assert http.get(f"{https_sim.url}/warehouses").status_code == 200
        with pytest.raises(httpx.ConnectError) as refused:  # the proxy tunnels; trust stays end to end
            httpx.get(f"{https_sim.url}/warehouses", headers=AUTH, proxy=proxy_url, timeout=10)
        assert _is_verify_failure(refused.value)
        sim_port = https_sim.url.rsplit(":", 1)[1]  # type: ignore[union-attr]
        assert log.read_text().count(f"CONNECT 127.0.0.1:{sim_port} HTTP/1.1") == 2  # both went through it


def test_bad_tls_arguments_are_explained(certs: TlsFiles, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="both a certificate and its key"):
        Simulator(tls_cert=certs.cert)
    with pytest.raises(ValueError, match="does not exist.*segment_assets.simulator.tls"):
        Simulator(tls_cert=tmp_path / "missing.pem", tls_key=certs.key)
    other = make_certificates(tmp_path / "other")
    with pytest.raises(ValueError, match="the key must be the certificate's"):
        Simulator(tls_cert=certs.cert, tls_key=other.key)


@pytest.mark.e2e
def test_command_line_serves_https(certs: TlsFiles) -> None:
    port = free_port()
    proc = popen(
        [
            sys.executable,
            "-m",
            "segment_assets.simulator",
            "--port",
            str(port),
            "--tls-cert",
            str(certs.cert),
            "--tls-key",
            str(certs.key),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert f"https://127.0.0.1:{port}" in proc.stdout.readline()  # type: ignore[union-attr]
        response = httpx.get(f"https://127.0.0.1:{port}/labels", headers=AUTH, verify=_trust(certs))
        assert response.status_code == 200
    finally:
        stop(proc)
    done = subprocess.run(
        [sys.executable, "-m", "segment_assets.simulator", "--tls-cert", str(certs.cert)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "both a certificate and its key" in done.stderr


def test_certificates_from_the_command_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "segment_assets.simulator.tls", str(tmp_path / "tls")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f"--tls-cert {tmp_path / 'tls' / 'server.pem'}" in done.stdout
    assert (tmp_path / "tls" / "ca.pem").is_file()
