"""Certificates for a local TLS setup, made with openssl: a CA, the broker's (or ingest's) certificate for
127.0.0.1, and a client certificate for mutual TLS. For tests and local trials only; keys are unencrypted."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA certificate: what clients and the broker trust
    server: Path  # the server's private key and certificate chain in one PEM (Kafka's PEM keystore)
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _signed(directory: Path, name: str, ca_cert: Path, ca_key: Path, extension: str) -> tuple[Path, Path]:
    key, request, cert = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.pem"
    config = directory / f"{name}.ext"
    config.write_text(extension)
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(key))
    _openssl("req", "-new", "-key", str(key), "-subj", f"/CN={name}", "-out", str(request))
    _openssl(
        *("x509", "-req", "-in", str(request), "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial"),
        *("-days", "2", "-sha256", "-extfile", str(config), "-out", str(cert)),
    )
    return cert, key


def make_certificates(directory: Path) -> Certificates:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.pem"
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(ca_key))
    _openssl("req", "-x509", "-new", "-key", str(ca_key), "-subj", "/CN=local-ca", "-days", "2", "-out", str(ca_cert))
    server_cert, server_key = _signed(
        directory, "server", ca_cert, ca_key, "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    )
    client_cert, client_key = _signed(directory, "client", ca_cert, ca_key, "extendedKeyUsage=clientAuth\n")
    server = directory / "server-keystore.pem"
    server.write_text(server_key.read_text() + server_cert.read_text() + ca_cert.read_text())
    return Certificates(ca_cert, server, server_cert, server_key, client_cert, client_key)
