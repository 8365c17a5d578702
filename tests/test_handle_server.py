"""The Handle protocol servers over real UDP and TCP sockets."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest

from idnode.client import HandleClient
from idnode.config import Config
from idnode.handle.codec import MessageFramer, decode_message, encode_message
from idnode.handle.codes import DigestAlgorithm, EnvelopeFlag, OpCode, OpFlag, ResponseCode
from idnode.handle.messages import (
    ErrorResponse,
    Message,
    RawBody,
    ResolutionRequest,
    ResolutionResponse,
    SiteInfoResponse,
)
from tests.conftest import RunningNode, running


def client(node: RunningNode) -> HandleClient:
    return HandleClient("127.0.0.1", node.ports.handle, timeout=5)


def udp_exchange(node: RunningNode, data: bytes, timeout: float = 2.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(data, ("127.0.0.1", node.ports.handle))
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


def request(handle: str, request_id: int = 77, flags: OpFlag = OpFlag.PUBLIC_ONLY) -> bytes:
    return encode_message(
        Message(
            opcode=OpCode.RESOLUTION,
            body=ResolutionRequest(handle),
            request_id=request_id,
            op_flags=flags,
        )
    )


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_resolution(running_node: RunningNode, transport: str) -> None:
    reply = client(running_node).resolve("88.100.1/pump-0001", transport=transport)  # type: ignore[arg-type]
    assert reply.response_code == ResponseCode.SUCCESS
    assert isinstance(reply.body, ResolutionResponse)
    assert reply.body.handle == "88.100.1/PUMP-0001"
    by_type = {v.type: v.data for v in reply.body.values}
    assert by_type["URL"] == b"https://pumps.example.com/id/88.100.1/PUMP-0001"
    assert "CUSTOMER" not in by_type  # admin-only value withheld from anonymous clients
    assert reply.op_flags & OpFlag.AUTHORITATIVE


def test_filters_over_the_wire(running_node: RunningNode) -> None:
    reply = client(running_node).resolve("88.100.1/PUMP-0002", indexes=(2,), types=("URL",))
    assert isinstance(reply.body, ResolutionResponse)
    assert sorted(v.index for v in reply.body.values) == [2, 4]  # SERIAL by index, URL by type


@pytest.mark.parametrize(
    ("handle", "code"),
    [
        ("88.100.1/NOPE", ResponseCode.HANDLE_NOT_FOUND),
        ("77.1/X", ResponseCode.SERVER_NOT_RESPONSIBLE),
        ("88.100.1/", ResponseCode.INVALID_HANDLE),
        ("bad prefix", ResponseCode.INVALID_HANDLE),
        # A bare prefix names its prefix handle (IDIS SDKs ask so); this one is not here.
        ("no-slash", ResponseCode.SERVER_NOT_RESPONSIBLE),
    ],
)
def test_error_codes(running_node: RunningNode, handle: str, code: ResponseCode) -> None:
    reply = client(running_node).resolve(handle, transport="udp")
    assert reply.response_code == code
    assert isinstance(reply.body, ErrorResponse)


def test_a_bare_prefix_is_answered_with_its_prefix_record(running_node: RunningNode) -> None:
    bare = client(running_node).resolve("88.100.1", transport="tcp")
    full = client(running_node).resolve("0.NA/88.100.1", transport="tcp")
    assert isinstance(bare.body, ResolutionResponse)
    assert isinstance(full.body, ResolutionResponse)
    assert bare.body.values == full.body.values
    assert any(v.type == "HS_SITE" for v in bare.body.values)


def test_reply_carries_sha256_digest_of_request(running_node: RunningNode) -> None:
    data = request("88.100.1/PUMP-0003", flags=OpFlag.RETURN_REQUEST_DIGEST | OpFlag.PUBLIC_ONLY)
    raw = udp_exchange(running_node, data)
    assert raw is not None
    reply = decode_message(raw)
    assert isinstance(reply.body, ResolutionResponse)
    assert reply.body.request_digest is not None
    assert reply.body.request_digest.algorithm == DigestAlgorithm.SHA256
    assert reply.body.request_digest.digest == hashlib.sha256(data[20:-4]).digest()


def test_large_answer_over_udp_is_truncated_and_small(running_node: RunningNode) -> None:
    data = request("88.100.1/BIG")
    raw = udp_exchange(running_node, data)
    assert raw is not None
    assert len(raw) <= 512
    assert len(raw) <= 2 * len(data)  # no amplification beyond a small factor
    assert raw[2] & EnvelopeFlag.TRUNCATED
    assert decode_message(raw).truncated


def test_client_falls_back_to_tcp_when_truncated(running_node: RunningNode) -> None:
    reply = client(running_node).resolve("88.100.1/BIG")
    assert not reply.truncated
    assert isinstance(reply.body, ResolutionResponse)
    assert len(reply.body.values) == 20


def test_site_info_describes_this_server(running_node: RunningNode) -> None:
    reply = client(running_node).site_info("tcp")
    assert isinstance(reply.body, SiteInfoResponse)
    ports = {i.port for s in reply.body.site.servers for i in s.interfaces}
    assert ports == {running_node.ports.handle}


def test_garbled_body_gets_protocol_error_and_server_keeps_serving(
    running_node: RunningNode,
) -> None:
    data = bytearray(request("88.100.1/PUMP-0001", request_id=4242))
    data[44:48] = (0x7FFFFFFF).to_bytes(4, "big")  # handle length far past the end
    raw = udp_exchange(running_node, bytes(data))
    assert raw is not None
    reply = decode_message(raw)
    assert reply.request_id == 4242
    assert reply.response_code == ResponseCode.PROTOCOL_ERROR
    assert client(running_node).resolve("88.100.1/PUMP-0001").response_code == ResponseCode.SUCCESS


@pytest.mark.parametrize("junk", [b"", b"\x02", b"\xff" * 30])
def test_unaddressable_junk_is_dropped(running_node: RunningNode, junk: bytes) -> None:
    assert udp_exchange(running_node, junk, timeout=0.3) is None
    assert client(running_node).resolve("88.100.1/PUMP-0001").response_code == ResponseCode.SUCCESS


def test_responses_are_never_answered(running_node: RunningNode) -> None:
    response = encode_message(
        Message(
            opcode=OpCode.RESOLUTION,
            body=ErrorResponse("spoofed"),
            response_code=ResponseCode.HANDLE_NOT_FOUND,
        )
    )
    assert udp_exchange(running_node, response, timeout=0.3) is None


def test_unsupported_opcode(running_node: RunningNode) -> None:
    reply = client(running_node).request(OpCode.GET_NEXT_TXN_ID, RawBody(b""), "tcp")
    assert reply.response_code == ResponseCode.OPERATION_NOT_SUPPORTED


def test_pipelined_requests_on_one_tcp_connection(running_node: RunningNode) -> None:
    wanted = [f"88.100.1/PUMP-{n:04d}" for n in range(1, 11)]
    stream = b"".join(request(h, request_id=i) for i, h in enumerate(wanted))
    with socket.create_connection(("127.0.0.1", running_node.ports.handle), timeout=5) as sock:
        sock.sendall(stream)
        framer = MessageFramer()
        replies: list[Message] = []
        while len(replies) < len(wanted):
            chunk = sock.recv(65536)
            assert chunk, "server closed early"
            framer.receive_data(chunk)
            while (frame := framer.next_message()) is not None:
                replies.append(decode_message(frame))
    assert [r.request_id for r in replies] == list(range(len(wanted)))
    assert [r.body.handle for r in replies] == wanted  # type: ignore[union-attr]


def test_oversized_tcp_frame_gets_error_then_close(running_node: RunningNode) -> None:
    data = bytearray(request("88.100.1/PUMP-0001", request_id=99))
    data[16:20] = (50_000_000).to_bytes(4, "big")
    with socket.create_connection(("127.0.0.1", running_node.ports.handle), timeout=5) as sock:
        sock.sendall(bytes(data))
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    reply = decode_message(received)
    assert reply.request_id == 99
    assert reply.response_code == ResponseCode.PROTOCOL_ERROR


def test_stopping_the_server_closes_open_tcp_connections(demo_dir: Path) -> None:
    config = Config(data_dir=demo_dir, handle_port=0, http_port=0)
    with (
        running(config) as node,
        socket.create_connection(("127.0.0.1", node.ports.handle), timeout=5) as idle,
    ):
        node.stop()
        assert idle.recv(1) == b""  # closed by the server, not left to time out
