"""Signed answers (CERTIFY): the credential's layout and what it covers, checked by
hand from the deployed protocol's layout, and a real server signing with its key."""

from __future__ import annotations

import socket
import struct

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from typer.testing import CliRunner

from idnode.cli import app
from idnode.client import HandleClient
from idnode.errors import RemoteProtocolError
from idnode.handle.codec import decode_message, encode_message
from idnode.handle.codes import OpCode, OpFlag, ResponseCode
from idnode.handle.credential import read_credential, signed_content, signed_credential
from idnode.handle.messages import Message, ResolutionRequest, SiteInfoResponse
from idnode.keys import handle_public_key
from idnode.node import SERVER_KEY_FILE
from tests.conftest import RunningNode

runner = CliRunner()
HEADER_AND_BODY = bytes(range(30))
SESSION = 0x01020304


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        # Before 2.6: the header and body alone.
        ((2, 5), HEADER_AND_BODY),
        # 2.6: versions, then session id, request id and counter all written at one
        # place: the first two bytes of the session id, the counter, ten zero bytes.
        ((2, 6), b"\x02\x06" + b"\x01\x02" + b"\x00\x00\x00\x03" + bytes(6) + HEADER_AND_BODY),
        # 2.7: versions, session id, request id, session counter.
        ((2, 7), b"\x02\x07" + struct.pack(">III", SESSION, 9, 3) + HEADER_AND_BODY),
        # From 2.8 the suggested version follows the version.
        ((2, 10), b"\x02\x0a\x02\x0b" + struct.pack(">III", SESSION, 9, 3) + HEADER_AND_BODY),
    ],
)
def test_what_a_message_of_each_version_signs(version: tuple[int, int], expected: bytes) -> None:
    assert signed_content(version, (2, 11), SESSION, 9, HEADER_AND_BODY, 3) == expected


def test_the_credential_layout() -> None:
    credential = signed_credential(b"SHA-256", b"\xaa\xbb", session_counter=5)
    assert credential == (
        b"\x00\x00\x00\x00"  # version, reserved, flags
        + b"\x00\x00\x00\x00"  # signer handle: empty
        + b"\x00\x00\x00\x05"  # session counter
        + b"\x00\x00\x00\x09HS_SIGNED"
        + b"\x00\x00\x00\x11"  # 4 + 7 + 4 + 2 bytes follow
        + b"\x00\x00\x00\x07SHA-256"
        + b"\x00\x00\x00\x02\xaa\xbb"
    )
    read = read_credential(credential)
    assert (read.type, read.hash_name, read.signature, read.session_counter) == (
        b"HS_SIGNED",
        b"SHA-256",
        b"\xaa\xbb",
        5,
    )
    with pytest.raises(RemoteProtocolError):
        read_credential(credential[:-1])
    with pytest.raises(RemoteProtocolError):
        read_credential(credential + b"\x00")


def _resolution(flags: OpFlag, request_id: int = 4242) -> bytes:
    return encode_message(
        Message(
            opcode=OpCode.RESOLUTION,
            body=ResolutionRequest("88.100.1/PUMP-0001"),
            request_id=request_id,
            op_flags=OpFlag.PUBLIC_ONLY | flags,
        )
    )


def test_a_server_signs_when_asked_with_its_own_key(running_node: RunningNode) -> None:
    key = serialization.load_pem_private_key(
        (running_node.config.data_dir / SERVER_KEY_FILE).read_bytes(), password=None
    )
    assert isinstance(key, rsa.RSAPrivateKey)
    # The signature, checked by hand: versions, suggested versions, session id,
    # request id, counter, then the header and body exactly as sent.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(_resolution(OpFlag.CERTIFY), ("127.0.0.1", running_node.ports.handle))
        raw = sock.recv(65535)
    reply = decode_message(raw)
    assert reply.response_code == ResponseCode.SUCCESS
    assert reply.op_flags & OpFlag.CERTIFY
    credential = read_credential(reply.credential)
    assert (credential.type, credential.hash_name) == (b"HS_SIGNED", b"SHA-256")
    (body_length,) = struct.unpack_from(">I", raw, 20 + 20)
    covered = (
        bytes([raw[0], raw[1], raw[2] & 0x03, raw[3]])
        + struct.pack(">III", reply.session_id, 4242, 0)
        + raw[20 : 20 + 24 + body_length]
    )
    key.public_key().verify(credential.signature, covered, padding.PKCS1v15(), hashes.SHA256())


def test_unsigned_unless_asked(running_node: RunningNode) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(_resolution(OpFlag.NONE), ("127.0.0.1", running_node.ports.handle))
        reply = decode_message(sock.recv(65535))
    assert reply.credential == b""


def test_a_client_checks_the_signature_against_the_servers_site_key(
    running_node: RunningNode,
) -> None:
    client = HandleClient("127.0.0.1", running_node.ports.handle, timeout=5)
    site = client.site_info().body
    assert isinstance(site, SiteInfoResponse)
    server_key = site.site.servers[0].public_key
    for transport in ("udp", "tcp"):
        reply = client.request(
            OpCode.RESOLUTION,
            ResolutionRequest("88.100.1/PUMP-0001"),
            transport,
            certified_by=server_key,
        )
        assert reply.response_code == ResponseCode.SUCCESS
    # Errors are signed too.
    missing = client.request(
        OpCode.RESOLUTION, ResolutionRequest("88.100.1/NO-SUCH"), certified_by=server_key
    )
    assert missing.response_code == ResponseCode.HANDLE_NOT_FOUND
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(RemoteProtocolError, match="not signed by the server's key"):
        client.request(
            OpCode.RESOLUTION,
            ResolutionRequest("88.100.1/PUMP-0001"),
            certified_by=handle_public_key(other).to_bytes(),
        )


def test_resolve_certify_from_the_cli(running_node: RunningNode) -> None:
    server = f"127.0.0.1:{running_node.ports.handle}"
    result = runner.invoke(app, ["resolve", "88.100.1/PUMP-0001", "--server", server, "--certify"])
    assert result.exit_code == 0, result.output
    assert "PUMP-0001" in result.output
    refused = runner.invoke(app, ["resolve", "88.100.1/PUMP-0001", "--certify"])
    assert refused.exit_code == 2
    assert "--certify needs --server" in refused.output
