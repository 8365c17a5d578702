"""HTTPS and client-certificate identities, over a real TLS socket."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from idnode.config import Config
from idnode.errors import ConfigError
from idnode.node import ADMIN_KEY_FILE
from idnode.server.runner import serve
from tests.conftest import RunningNode, make_node, rsa_key, running


def certificate(path: Path, key: rsa.RSAPrivateKey, subject: x509.Name, *, server: bool) -> Path:
    """A self-signed certificate for ``key``, written as PEM (with the key beside it)."""
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    cert = builder.sign(key, hashes.SHA256())
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def uid(text: str, cn: str = "idnode test") -> x509.Name:
    # Distinct CNs: OpenSSL finds a self-signed certificate's issuer by its name.
    return x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.USER_ID, text)]
    )


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    path = tmp_path_factory.mktemp("tls-node")
    node = make_node(path)
    node.close()
    admin_key = rsa_key(path / ADMIN_KEY_FILE)
    made = {
        "dir": path,
        "server": certificate(
            path / "server.pem",
            new_key(),
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]),
            server=True,
        ),
        # The administrator's own key in a certificate that names its identity.
        "admin": certificate(path / "admin.pem", admin_key, uid("300:0.NA/88.100.1"), server=False),
        # A trusted certificate naming the administrator, but holding another key.
        "impostor": certificate(
            path / "impostor.pem", new_key(), uid("300:0.NA/88.100.1", "impostor"), server=False
        ),
        # A certificate the server was not told to trust.
        "stranger": certificate(
            path / "stranger.pem", admin_key, uid("300:0.NA/88.100.1", "stranger"), server=False
        ),
    }
    trusted = path / "clients.pem"
    trusted.write_bytes(made["admin"].read_bytes() + made["impostor"].read_bytes())
    made["clients"] = trusted
    return made


@pytest.fixture(scope="module")
def server(certs: dict[str, Path]) -> Iterator[RunningNode]:
    config = Config(
        data_dir=certs["dir"],
        handle_port=0,
        http_port=0,
        tls_cert=str(certs["server"]),
        tls_key=str(certs["server"].with_suffix(".key")),
        tls_client_ca=str(certs["clients"]),
    )
    with running(config) as node:
        yield node


def client(server: RunningNode, certs: dict[str, Path], who: str | None) -> httpx.Client:
    context = ssl.create_default_context(cafile=certs["server"])
    if who is not None:
        context.load_cert_chain(certs[who], certs[who].with_suffix(".key"))
    return httpx.Client(
        base_url=f"https://127.0.0.1:{server.ports.http}", verify=context, timeout=10
    )


BODY = {"values": [{"index": 1, "type": "URL", "data": "https://example.com/cert"}]}


def test_https_serves_reads_without_a_client_certificate(
    server: RunningNode, certs: dict[str, Path]
) -> None:
    with client(server, certs, None) as http:
        assert http.get("/healthz").status_code == 200
        r = http.put("/api/handles/88.100.1/CERT-0", json=BODY)
        assert r.status_code == 401


def test_a_client_certificate_with_the_identity_key_authenticates(
    server: RunningNode, certs: dict[str, Path]
) -> None:
    with client(server, certs, "admin") as http:
        r = http.put("/api/handles/88.100.1/CERT-1", json=BODY)
        assert r.status_code == 201, r.text
        r = http.post("/api/sessions", headers={"Authorization": 'Handle clientCert="true"'})
        assert r.status_code == 201
        assert r.json()["authenticated"] is True
        assert r.json()["id"] == "300:0.NA/88.100.1"


def test_a_trusted_certificate_with_another_key_proves_nothing(
    server: RunningNode, certs: dict[str, Path]
) -> None:
    with client(server, certs, "impostor") as http:
        r = http.put("/api/handles/88.100.1/CERT-2", json=BODY)
        assert r.status_code == 403
        assert "not a public key of" in r.json()["message"]


def test_an_untrusted_client_certificate_fails_the_handshake(
    server: RunningNode, certs: dict[str, Path]
) -> None:
    with client(server, certs, "stranger") as http, pytest.raises(httpx.HTTPError):
        http.get("/healthz")


def test_missing_tls_files_are_refused_before_serving(tmp_path: Path) -> None:
    config = Config(
        data_dir=tmp_path, handle_port=0, http_port=0, tls_cert="/nope.pem", tls_key="/nope.key"
    )
    with pytest.raises(ConfigError, match="tls_cert"):
        asyncio.run(serve(config))
    with pytest.raises(ConfigError, match="together"):
        Config(data_dir=tmp_path).replace(tls_cert="/x.pem")
