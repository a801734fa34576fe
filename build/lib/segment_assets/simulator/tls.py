"""Throw-away TLS material for serving the simulator over HTTPS in tests and demos.

``make_certificates(directory)`` writes a private CA and a server certificate it signed for
127.0.0.1, ::1 and localhost. A client that trusts the CA file (httpx ``verify=``,
``SSL_CERT_FILE``, a custom CA bundle setting) talks to ``Simulator(tls_cert=..., tls_key=...)``
directly or through a CONNECT proxy; a client that does not fails the handshake, as it
would against a corporate TLS-inspecting proxy it was not told about.

The ``cryptography`` package does the work when it is installed (it is not a dependency of
segment_assets: test extras bring it); otherwise the ``openssl`` command line does.

    python -m segment_assets.simulator.tls DIR    # writes DIR/ca.pem, DIR/server.pem, DIR/server.key
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import ssl
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

DEFAULT_HOSTS = ("127.0.0.1", "::1", "localhost")
CA_NAME = "segment-assets simulator throw-away CA"


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path  # trust this one
    cert: Path  # the server certificate, signed by the CA
    key: Path  # the server's private key, unencrypted (mode 0600)


def make_certificates(
    directory: str | os.PathLike[str], hosts: tuple[str, ...] = DEFAULT_HOSTS, days: int = 30, backend: str = "auto"
) -> TlsFiles:
    """Write ca.pem, server.pem and server.key into ``directory`` (created if missing).

    ``backend``: "cryptography", "openssl" or "auto" (cryptography if importable)."""
    if not hosts:
        raise ValueError("at least one host name or IP address is required for the certificate")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(out / "ca.pem", out / "server.pem", out / "server.key")
    if backend == "auto":
        try:
            import cryptography  # noqa: F401

            backend = "cryptography"
        except ImportError:
            backend = "openssl"
    if backend == "cryptography":
        _with_cryptography(files, hosts, days)
    elif backend == "openssl":
        _with_openssl(files, hosts, days)
    else:
        raise ValueError(f"unknown backend {backend!r}; use 'cryptography', 'openssl' or 'auto'")
    os.chmod(files.key, 0o600)
    return files


def server_context(cert: str | os.PathLike[str], key: str | os.PathLike[str]) -> ssl.SSLContext:
    """An SSL context serving ``cert`` with ``key``, or a ValueError saying which file is wrong."""
    for label, path in (("certificate", cert), ("key", key)):
        if not Path(path).is_file():
            raise ValueError(
                f"TLS {label} file {str(path)!r} does not exist; make a throw-away pair with "
                f"`python -m segment_assets.simulator.tls DIR`"
            )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
    except ssl.SSLError as error:
        raise ValueError(
            f"cannot use TLS certificate {str(cert)!r} with key {str(key)!r}: {error.reason or error}; "
            f"both must be PEM files and the key must be the certificate's"
        ) from None
    return context


def _split_hosts(hosts: tuple[str, ...]) -> tuple[list[ipaddress.IPv4Address | ipaddress.IPv6Address], list[str]]:
    ips, names = [], []
    for host in hosts:
        try:
            ips.append(ipaddress.ip_address(host))
        except ValueError:
            names.append(host)
    return ips, names


def _with_cryptography(files: TlsFiles, hosts: tuple[str, ...], days: int) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC) - timedelta(minutes=5)  # tolerate a client clock slightly behind
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    ips, names = _split_hosts(hosts)
    san = [x509.IPAddress(ip) for ip in ips] + [x509.DNSName(n) for n in names]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (names or [str(ips[0])])[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def _with_openssl(files: TlsFiles, hosts: tuple[str, ...], days: int) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError(
            "neither the cryptography package nor the openssl command is available: "
            "install one (pip install cryptography, or apt-get install openssl)"
        )
    work = files.ca_cert.parent
    ca_key, csr, ext = work / "ca.key", work / "server.csr", work / "server.ext"
    ips, names = _split_hosts(hosts)
    san = ",".join([f"IP:{ip}" for ip in ips] + [f"DNS:{n}" for n in names])
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        f"extendedKeyUsage=serverAuth\nsubjectAltName={san}\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    steps = [
        [
            openssl,
            "req",
            "-x509",
            *curve,
            "-keyout",
            str(ca_key),
            "-out",
            str(files.ca_cert),
            "-days",
            str(days),
            "-subj",
            f"/CN={CA_NAME}",
            "-addext",
            "basicConstraints=critical,CA:TRUE,pathlen:0",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-addext",
            "subjectKeyIdentifier=hash",
        ],
        [
            openssl,
            "req",
            "-new",
            *curve,
            "-keyout",
            str(files.key),
            "-out",
            str(csr),
            "-subj",
            f"/CN={(names or [str(ips[0])])[0]}",
        ],
        [
            openssl,
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(files.ca_cert),
            "-CAkey",
            str(ca_key),
            "-set_serial",
            str(int.from_bytes(os.urandom(8), "big")),
            "-days",
            str(days),
            "-sha256",
            "-extfile",
            str(ext),
            "-out",
            str(files.cert),
        ],
    ]
    try:
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(step[:3])} failed: {done.stderr.strip()}")
    finally:
        for leftover in (ca_key, csr, ext):  # the CA key is throw-away: nothing else may sign with it
            leftover.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m segment_assets.simulator.tls DIR", file=sys.stderr)
        return 2
    files = make_certificates(args[0])
    print(
        f"CA to trust:  {files.ca_cert}\ncertificate:  {files.cert}\nkey:          {files.key}\n"
        f"serve with:   segment-assets simulate --tls-cert {files.cert} --tls-key {files.key}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
