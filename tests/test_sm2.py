"""SM2 keys and signatures: key files, HS_PUBKEY encodings, challenge answers as the
national SDKs sign them, and a node whose own keys are SM2."""

from __future__ import annotations

import base64
import json
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from idnode.auth.identity import check_answer
from idnode.auth.signatures import answer_with_private_key, check_signature, sign
from idnode.client import Credentials, HandleClient
from idnode.config import Config
from idnode.errors import AuthenticationFailed, ConfigError, RemoteProtocolError
from idnode.handle.codes import OpCode, ResponseCode
from idnode.handle.messages import CreateHandleRequest, ResolutionRequest, SiteInfoResponse
from idnode.handle.values import HandleValue, ValueReference
from idnode.handle.valuetypes import RSAPublicKey, SM2PublicKey, parse_public_key
from idnode.jsonformat import value_from_json, value_to_json
from idnode.keys import generate_key, handle_public_key, load_private_key, load_public_key
from idnode.node import ADMIN_KEY_FILE, SERVER_KEY_FILE, init_node
from idnode.sm2 import SM2PrivateKey, private_key_from_pem
from tests.conftest import RunningNode, idnode, running

# A throwaway key made by `openssl genpkey -algorithm SM2` (OpenSSL 3.0), and its
# public half from `openssl pkey -pubout`.
OPENSSL_KEY = b"""-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqBHM9VAYItBG0wawIBAQQgUQI3yMwa5nDsf39e
pXEtlKvmHq98u6ZCN7w9uzEhX8ShRANCAATaQ7xRfhzQ2EFidNwL86wbUIPkFyfN
rb1d8yIkHhdff0iNi9+aREAdULNBVKwGLn6uIRd2eQjTj957O5xBiQ2l
-----END PRIVATE KEY-----
"""
OPENSSL_PUBLIC = b"""-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoEcz1UBgi0DQgAE2kO8UX4c0NhBYnTcC/OsG1CD5Bcn
za29XfMiJB4XX39IjYvfmkRAHVCzQVSsBi5+riEXdnkI04/eezucQYkNpQ==
-----END PUBLIC KEY-----
"""
P256_PUBLIC = b"""-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEiidG6nL3k2NidZ4MmxlEbb6qPQ+U
U9oNiCYzsZGry08F2CS+UTX0V+pVptS01FBYLSIS8qIFs1kiQK6flmKd4Q==
-----END PUBLIC KEY-----
"""

# A login answer (opcode 200) the id-pointer SDK 2.3.1 sent to idnode for the identity
# 300:0.NA/88.100.1, captured on the wire: the 402's nonce and request digest, and
# the signature in the answer. (The SDK's SM2 code ran on BouncyCastle, standing in
# for hutool as in tests/idis_shim.)
SDK_PUBLIC = b"""-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoEcz1UBgi0DQgAEltvALs9oA5KSY6rJKmKC4eHY6Q/i
RivpVn8okAy6k518i0F79O4XSb9DFHo7qsZyLORWFAclYSnRkqL2xb3kSg==
-----END PUBLIC KEY-----
"""
SDK_NONCE = bytes.fromhex("1f8741b126e1a9aec8f14d6c8df4a2e6")
SDK_DIGEST = bytes.fromhex("93aa6eb7662425434960198f5a94b56a29167a53349df07f2dc2f10528b7e980")
SDK_SIGNATURE = bytes.fromhex(
    "3046022100bca1383122d5aebdd9249abb5a7a93d6e95e05a05ec6359a649d16a3f363826b"
    "022100c3d5cc5a8651455f97917112c038a5ba1521473cefe3ca5216b17a3ab9e7901b"
)


def off_curve_der() -> bytes:
    """A SubjectPublicKeyInfo on the SM2 curve whose point is not on it."""
    der = bytearray(parse_public_key(OPENSSL_PUBLIC).der())  # type: ignore[union-attr]
    der[-1] ^= 1  # the last byte of y
    return bytes(der)


def sdk_pem(der: bytes) -> bytes:
    """PEM text as the SDKs write it into HS_PUBKEY values: CRLF, 76-column lines."""
    body = base64.encodebytes(der).decode().replace("\n", "")
    lines = [body[i : i + 76] for i in range(0, len(body), 76)]
    return (
        "-----BEGIN PUBLIC KEY-----\r\n" + "\r\n".join(lines) + "\r\n-----END PUBLIC KEY-----\r\n"
    ).encode()


def block(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def key_value(data: bytes) -> list[HandleValue]:
    return [HandleValue(300, "HS_PUBKEY", data)]


# -- key files and encodings -----------------------------------------------------------


def test_an_openssl_key_file_loads_and_matches_its_public_half(tmp_path: Path) -> None:
    path = tmp_path / "sm2.pem"
    path.write_bytes(OPENSSL_KEY)
    key = load_private_key(path)
    assert isinstance(key, SM2PrivateKey)
    assert handle_public_key(key) == parse_public_key(OPENSSL_PUBLIC)
    public = tmp_path / "sm2.pub.pem"
    public.write_bytes(OPENSSL_PUBLIC)
    assert load_public_key(public) == key.public_key()


def test_generated_keys_are_pkcs8_files_openssl_reads(tmp_path: Path) -> None:
    path = tmp_path / "new.pem"
    key = generate_key(path, "sm2")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert load_private_key(path) == key
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert isinstance(key, SM2PrivateKey)
    assert private_key_from_pem(key.to_pem()) == key
    openssl = subprocess.run(
        ["openssl", "pkey", "-in", str(path), "-text", "-noout"],
        capture_output=True,
        text=True,
        check=False,
    )
    if openssl.returncode == 127:  # pragma: no cover - openssl is in every base image
        pytest.skip("no openssl to cross-check with")
    assert openssl.returncode == 0, openssl.stderr
    assert "SM2" in openssl.stdout


def test_hs_pubkey_values_in_every_encoding_the_sdks_write() -> None:
    key = parse_public_key(OPENSSL_PUBLIC)
    assert isinstance(key, SM2PublicKey)
    der = key.der()
    forms = {
        "PEM text, as ValueHelper.newIdisPublicKeyValue writes": sdk_pem(der),
        "SM2_PUB_KEY with PEM, as Util.getBytesFromPublicKey writes": block(b"SM2_PUB_KEY")
        + b"\x00\x00"
        + block(sdk_pem(der)),
        "SM2_PUB_KEY with DER, as we write and the SDK reads": block(b"SM2_PUB_KEY")
        + b"\x00\x00"
        + block(der),
    }
    for how, data in forms.items():
        parsed = parse_public_key(data)
        assert parsed == key, how
        assert parsed.to_bytes() == data, how  # every value round-trips byte for byte
    written = SM2PublicKey(key.point).to_bytes()
    assert written == forms["SM2_PUB_KEY with DER, as we write and the SDK reads"]


def test_rsa_keys_in_pem_text_are_the_same_keys() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = rsa_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    parsed = parse_public_key(sdk_pem(der))
    assert isinstance(parsed, RSAPublicKey)
    assert parsed == handle_public_key(rsa_key)


def test_an_sm2_secret_out_of_range_is_refused(tmp_path: Path) -> None:
    key = private_key_from_pem(OPENSSL_KEY)
    too_big = SM2PrivateKey(b"\xff" * 32, key.point)
    path = tmp_path / "big.pem"
    path.write_bytes(too_big.to_pem())
    with pytest.raises(ConfigError, match="out of the curve's range"):
        load_private_key(path)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (P256_PUBLIC, "curve"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "SubjectPublicKeyInfo"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not a public key"),
        (block(b"SM2_PUB_KEY") + b"\x00\x00" + block(b"\x30\x03\x02\x01\x01"), "SubjectPublic"),
        (block(b"SM2_PUB_KEY") + b"\x00\x00", "SM2 key"),
        (
            block(b"SM2_PUB_KEY") + b"\x00\x00" + block(off_curve_der()),
            "not a point on the SM2 curve",
        ),
    ],
)
def test_malformed_keys_are_protocol_errors(data: bytes, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message):
        parse_public_key(data)


def test_sm2_keys_in_the_json_format() -> None:
    point = parse_public_key(OPENSSL_PUBLIC).point  # type: ignore[union-attr]
    value = HandleValue(300, "HS_PUBKEY", SM2PublicKey(point).to_bytes())
    shown = value_to_json(value)
    assert shown["data"]["format"] == "key"
    assert shown["data"]["value"]["kty"] == "EC"
    assert shown["data"]["value"]["crv"] == "SM2"
    assert value_from_json(json.loads(json.dumps(shown))) == value
    # A key held as PEM text is shown as that text, so that it round-trips too.
    pem = HandleValue(300, "HS_PUBKEY", sdk_pem(SM2PublicKey(point).der()))
    assert value_to_json(pem)["data"]["format"] == "string"
    assert value_from_json(value_to_json(pem)) == pem


# -- signatures ------------------------------------------------------------------------


def test_the_sdks_own_answer_proves_its_identity() -> None:
    values = key_value(parse_public_key(SDK_PUBLIC).to_bytes())
    answer = block(b"SM3") + block(SDK_SIGNATURE)
    identity = ValueReference("0.NA/88.100.1", 300)
    assert check_answer(values, identity, "HS_PUBKEY", answer, SDK_NONCE, SDK_DIGEST, (2, 10))
    # The handle is in what was signed (the SM2 user id): another handle fails.
    with pytest.raises(AuthenticationFailed):
        check_answer(
            values,
            ValueReference("0.NA/88.100.2", 300),
            "HS_PUBKEY",
            answer,
            SDK_NONCE,
            SDK_DIGEST,
            (2, 10),
        )
    with pytest.raises(AuthenticationFailed):
        check_answer(values, identity, "HS_PUBKEY", answer, bytes(16), SDK_DIGEST, (2, 10))


def test_our_answers_are_signed_as_the_sdks_sign_and_checked() -> None:
    key = private_key_from_pem(OPENSSL_KEY)
    identity = ValueReference("88.100.1/OPS", 300)
    nonce, digest = b"n" * 16, b"d" * 32
    answer = answer_with_private_key(key, nonce, digest, (2, 10), identity.handle)
    assert answer.startswith(block(b"SM3"))
    values = key_value(key.public_key().to_bytes())
    assert check_answer(values, identity, "HS_PUBKEY", answer, nonce, digest, (2, 10)) == identity
    # Verified the way OpenSSL does: SM2 over SM3(nonce + digest) with the handle as id.
    signature = answer[len(block(b"SM3")) + 4 :]
    assert check_signature(
        key.public_key().to_bytes(), nonce + digest, b"SM3", signature, (b"88.100.1/OPS",)
    )


def test_signatures_over_the_data_with_the_default_id_also_check() -> None:
    key = private_key_from_pem(OPENSSL_KEY)
    public = key.public_key().to_bytes()
    name, signature = sign(key, b"what a server signs", (2, 10))
    assert name == b"SM3"
    assert check_signature(public, b"what a server signs", b"SM3", signature)
    assert check_signature(public, b"what a server signs", b"SM3withSM2", signature)
    assert not check_signature(public, b"something else", b"SM3", signature)
    assert not check_signature(public, b"what a server signs", b"SHA-256", signature)
    assert not check_signature(public, b"what a server signs", b"SM3", b"\x30\x00")


def test_a_key_file_that_is_not_sm2_is_named(tmp_path: Path) -> None:
    path = tmp_path / "p256.pem"
    path.write_bytes(P256_PUBLIC)
    with pytest.raises(ConfigError, match="private key"):
        load_private_key(path)


# -- a node with SM2 keys ----------------------------------------------------------------


@pytest.fixture(scope="module")
def sm2_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningNode, Path]]:
    path = tmp_path_factory.mktemp("sm2-node")
    config = Config(data_dir=path, handle_port=0, http_port=0)
    init_node(config, "88.100.1", {"handle_port": 0, "http_port": 0}, "sm2").close()
    with running(config) as node:
        yield node, path


def test_an_sm2_node_administers_and_signs_with_its_sm2_keys(
    sm2_node: tuple[RunningNode, Path],
) -> None:
    node, path = sm2_node
    admin = load_private_key(path / ADMIN_KEY_FILE)
    assert isinstance(admin, SM2PrivateKey)
    client = HandleClient("127.0.0.1", node.ports.handle, timeout=10)
    (made,) = client.authenticated(
        OpCode.CREATE_HANDLE,
        CreateHandleRequest("88.100.1/SM2-1", (HandleValue(1, "URL", b"https://e.example/"),)),
        Credentials(ValueReference("0.NA/88.100.1", 300), private_key=admin),
    )
    assert made.response_code == ResponseCode.SUCCESS
    # The server's own key (in its HS_SITE) is SM2; it signs answers with it.
    site = client.site_info().body
    assert isinstance(site, SiteInfoResponse)
    server_key = site.site.servers[0].public_key
    assert isinstance(parse_public_key(server_key), SM2PublicKey)
    for transport in ("udp", "tcp"):
        reply = client.request(
            OpCode.RESOLUTION,
            ResolutionRequest("88.100.1/SM2-1"),
            transport,
            certified_by=server_key,
        )
        assert reply.response_code == ResponseCode.SUCCESS


def test_the_cli_makes_sm2_keys_and_nodes(tmp_path: Path) -> None:
    made = idnode("keygen", str(tmp_path / "id.pem"), "--sm2")
    assert made.returncode == 0, made.stderr
    value = json.loads(made.stdout)
    assert value["type"] == "HS_PUBKEY"
    assert (value["data"]["value"]["kty"], value["data"]["value"]["crv"]) == ("EC", "SM2")
    assert isinstance(load_private_key(tmp_path / "id.pem"), SM2PrivateKey)
    both = idnode("keygen", str(tmp_path / "x.pem"), "--sm2", "--secret")
    assert both.returncode == 2
    assert "exclude each other" in both.stderr

    node = idnode("init", "-d", str(tmp_path / "n"), "--key-type", "sm2", "--prefix", "88.5")
    assert node.returncode == 0, node.stderr
    assert isinstance(load_private_key(tmp_path / "n" / SERVER_KEY_FILE), SM2PrivateKey)
    wrong = idnode("init", "-d", str(tmp_path / "m"), "--key-type", "dsa")
    assert wrong.returncode == 2
    assert "--key-type is one of rsa, sm2" in wrong.stderr
