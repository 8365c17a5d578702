"""Writes over the Handle protocol on real TCP sockets: challenge, answer, authorisation."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from idnode.client import Credentials, HandleClient, listed
from idnode.config import Config
from idnode.demo import demo_records
from idnode.domain import AuditQuery, HandleRecord
from idnode.handle.codec import MessageFramer, decode_message, encode_message
from idnode.handle.codes import DigestAlgorithm, OpCode, OpFlag, ResponseCode
from idnode.handle.messages import (
    AddValueRequest,
    ChallengeResponse,
    CreateHandleRequest,
    CreateHandleResponse,
    DeleteHandleRequest,
    ListHandlesRequest,
    Message,
    ModifyValueRequest,
    RemoveValueRequest,
    RequestDigest,
    ResolutionRequest,
    ResolutionResponse,
)
from idnode.handle.values import HandleValue, Permission, ValueReference
from idnode.handle.valuetypes import AdminPermission, AdminValue
from idnode.keys import load_private_key
from idnode.node import ADMIN_KEY_FILE, open_node
from tests.conftest import RunningNode, make_node, running

SECRET = b"s3cret-for-ops"
OPS = ValueReference("88.100.1/OPS", 300)


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("writable-node")
    node = make_node(path)
    node.service.bulk.register_many(demo_records(1200), replace=True)
    # An operator identity with a secret key, allowed to add and list handles under the
    # prefix through an HS_ADMIN value on the prefix handle.
    prefix_handle = node.storage.get("0.NA/88.100.1")
    assert prefix_handle is not None
    node.service.prefixes.put_record(
        HandleRecord(
            prefix_handle.handle,
            (
                *prefix_handle.values,
                HandleValue(
                    101,
                    "HS_ADMIN",
                    AdminValue(
                        AdminPermission.ADD_HANDLE | AdminPermission.LIST_HANDLES, OPS
                    ).to_bytes(),
                ),
            ),
        )
    )
    node.service.prefixes.put_record(
        HandleRecord(
            OPS.handle,
            (HandleValue(300, "HS_SECKEY", SECRET, permissions=Permission.ADMIN_READ),),
        )
    )
    node.close()
    return path


@pytest.fixture(scope="module")
def server(node_dir: Path) -> Iterator[RunningNode]:
    config = Config(data_dir=node_dir, handle_port=0, http_port=0)
    with running(config) as node:
        yield node


@pytest.fixture(scope="module")
def admin(node_dir: Path) -> Credentials:
    key = load_private_key(node_dir / ADMIN_KEY_FILE)
    return Credentials(ValueReference("0.NA/88.100.1", 300), private_key=key)


def client(server: RunningNode) -> HandleClient:
    return HandleClient("127.0.0.1", server.ports.handle, timeout=10)


def one(replies: list[Message]) -> Message:
    assert len(replies) == 1
    return replies[0]


def url(index: int, text: str) -> HandleValue:
    return HandleValue(index, "URL", text.encode())


def test_create_add_modify_remove_delete_with_a_public_key(
    server: RunningNode, admin: Credentials
) -> None:
    c = client(server)
    h = "88.100.1/WRITE-1"
    reply = one(
        c.authenticated(OpCode.CREATE_HANDLE, CreateHandleRequest(h, (url(1, "a"),)), admin)
    )
    assert reply.response_code == ResponseCode.SUCCESS
    assert isinstance(reply.body, CreateHandleResponse)
    for opcode, body in (
        (OpCode.ADD_VALUE, AddValueRequest(h, (url(2, "b"),))),
        (OpCode.MODIFY_VALUE, ModifyValueRequest(h, (url(1, "A"),))),
        (OpCode.REMOVE_VALUE, RemoveValueRequest(h, (2,))),
    ):
        assert one(c.authenticated(opcode, body, admin)).response_code == ResponseCode.SUCCESS
    resolved = c.resolve(h)
    assert isinstance(resolved.body, ResolutionResponse)
    assert [(v.index, v.data) for v in resolved.body.values] == [(1, b"A")]
    again = one(
        c.authenticated(OpCode.CREATE_HANDLE, CreateHandleRequest(h, (url(1, "x"),)), admin)
    )
    assert again.response_code == ResponseCode.HANDLE_ALREADY_EXISTS
    clash = one(c.authenticated(OpCode.ADD_VALUE, AddValueRequest(h, (url(1, "x"),)), admin))
    assert clash.response_code == ResponseCode.VALUE_ALREADY_EXISTS
    gone = one(c.authenticated(OpCode.REMOVE_VALUE, RemoveValueRequest(h, (7,)), admin))
    assert gone.response_code == ResponseCode.VALUES_NOT_FOUND
    deleted = one(c.authenticated(OpCode.DELETE_HANDLE, DeleteHandleRequest(h), admin))
    assert deleted.response_code == ResponseCode.SUCCESS
    assert c.resolve(h).response_code == ResponseCode.HANDLE_NOT_FOUND
    missing = one(c.authenticated(OpCode.DELETE_HANDLE, DeleteHandleRequest(h), admin))
    assert missing.response_code == ResponseCode.HANDLE_NOT_FOUND


def test_mint_new_suffix(server: RunningNode, admin: Credentials) -> None:
    reply = one(
        client(server).authenticated(
            OpCode.CREATE_HANDLE,
            CreateHandleRequest("88.100.1/M-", (url(1, "m"),)),
            admin,
            OpFlag.MINT_NEW_SUFFIX,
        )
    )
    assert isinstance(reply.body, CreateHandleResponse)
    assert reply.body.handle is not None
    assert reply.body.handle.startswith("88.100.1/M-")
    assert client(server).resolve(reply.body.handle).response_code == ResponseCode.SUCCESS


@pytest.mark.parametrize("version", [(2, 5), (2, 11)])
def test_secret_key_identity(server: RunningNode, version: tuple[int, int]) -> None:
    ops = Credentials(OPS, secret=SECRET)
    h = f"88.100.1/OPS-{version[1]}"
    body = CreateHandleRequest(h, (url(1, "ops"),))
    reply = one(_authenticated_in_version(server, body, ops, version))
    assert reply.response_code == ResponseCode.SUCCESS
    # OPS may add handles, not delete them: refused, and the record stays.
    refused = one(client(server).authenticated(OpCode.DELETE_HANDLE, DeleteHandleRequest(h), ops))
    assert refused.response_code == ResponseCode.INSUFFICIENT_PERMISSIONS
    assert client(server).resolve(h).response_code == ResponseCode.SUCCESS


def _authenticated_in_version(
    server: RunningNode, body: CreateHandleRequest, creds: Credentials, version: tuple[int, int]
) -> list[Message]:
    request = Message(OpCode.CREATE_HANDLE, body, request_id=5, version=version)
    with socket.create_connection(("127.0.0.1", server.ports.handle), timeout=10) as sock:
        challenge = _exchange(sock, encode_message(request))
        assert challenge.response_code == ResponseCode.AUTHENTICATION_NEEDED
        assert challenge.version == version
        assert isinstance(challenge.body, ChallengeResponse)
        answer = Message(
            OpCode.CHALLENGE_RESPONSE,
            creds.answer(challenge.body, version),
            request_id=6,
            session_id=challenge.session_id,
            version=version,
        )
        return [_exchange(sock, encode_message(answer))]


def _exchange(sock: socket.socket, data: bytes) -> Message:
    sock.sendall(data)
    framer = MessageFramer()
    while (frame := framer.next_message()) is None:
        chunk = sock.recv(65536)
        assert chunk, "server closed the connection"
        framer.receive_data(chunk)
    return decode_message(frame)


def test_wrong_secret_fails_and_writes_nothing(server: RunningNode) -> None:
    liar = Credentials(OPS, secret=b"guess")
    body = CreateHandleRequest("88.100.1/LIAR", (url(1, "x"),))
    reply = one(client(server).authenticated(OpCode.CREATE_HANDLE, body, liar))
    assert reply.response_code == ResponseCode.AUTHENTICATION_FAILED
    assert client(server).resolve("88.100.1/LIAR").response_code == ResponseCode.HANDLE_NOT_FOUND


def test_unknown_identity_and_anonymous_listing(server: RunningNode) -> None:
    nobody = Credentials(ValueReference("88.100.1/NOBODY", 300), secret=b"x")
    body = CreateHandleRequest("88.100.1/NOPE", (url(1, "x"),))
    reply = one(client(server).authenticated(OpCode.CREATE_HANDLE, body, nobody))
    assert reply.response_code == ResponseCode.INVALID_CREDENTIAL


def test_a_challenge_answer_cannot_be_replayed(server: RunningNode) -> None:
    ops = Credentials(OPS, secret=SECRET)
    request = Message(
        OpCode.CREATE_HANDLE, CreateHandleRequest("88.100.1/REPLAY", (url(1, "r"),)), request_id=9
    )
    with socket.create_connection(("127.0.0.1", server.ports.handle), timeout=10) as sock:
        challenge = _exchange(sock, encode_message(request))
        assert isinstance(challenge.body, ChallengeResponse)
        answer = encode_message(
            Message(
                OpCode.CHALLENGE_RESPONSE,
                ops.answer(challenge.body, challenge.version),
                request_id=10,
                session_id=challenge.session_id,
            )
        )
        assert _exchange(sock, answer).response_code == ResponseCode.SUCCESS
    with socket.create_connection(("127.0.0.1", server.ports.handle), timeout=10) as sock:
        assert _exchange(sock, answer).response_code == ResponseCode.AUTHENTICATION_TIMEOUT


def test_a_forged_session_id_is_refused(server: RunningNode) -> None:
    ops = Credentials(OPS, secret=SECRET)
    fake = ChallengeResponse(secrets.token_bytes(16), _digest())
    answer = Message(
        OpCode.CHALLENGE_RESPONSE, ops.answer(fake, (2, 11)), request_id=1, session_id=12345
    )
    with socket.create_connection(("127.0.0.1", server.ports.handle), timeout=10) as sock:
        assert _exchange(sock, encode_message(answer)).response_code == (
            ResponseCode.AUTHENTICATION_TIMEOUT
        )


def _digest() -> RequestDigest:
    return RequestDigest(DigestAlgorithm.SHA256, bytes(32))


def test_list_handles_comes_in_parts(server: RunningNode, admin: Credentials) -> None:
    replies = client(server).authenticated(
        OpCode.LIST_HANDLES, ListHandlesRequest("0.NA/88.100.1"), admin
    )
    assert len(replies) > 1
    assert all(r.op_flags & OpFlag.CONTINUOUS for r in replies[:-1])
    handles = listed(replies)
    assert len(handles) == len(set(handles))
    assert "88.100.1/PUMP-0001" in handles
    assert "88.100.1/OPS" in handles
    eve = Credentials(ValueReference("88.100.1/OPS", 300), secret=b"no")
    refused = client(server).authenticated(
        OpCode.LIST_HANDLES, ListHandlesRequest("0.NA/88.100.1"), eve
    )
    assert refused[0].response_code == ResponseCode.AUTHENTICATION_FAILED


def test_list_homed_prefixes_needs_no_identity(server: RunningNode) -> None:
    reply = client(server).request(
        OpCode.LIST_HOMED_NAS, ListHandlesRequest("0.NA/88.100.1"), "tcp"
    )
    assert listed([reply]) == ["0.NA/88.100.1"]


def test_writes_are_audited_with_the_peer_address(
    server: RunningNode, admin: Credentials, node_dir: Path
) -> None:
    c = client(server)
    c.authenticated(
        OpCode.CREATE_HANDLE, CreateHandleRequest("88.100.1/AUD", (url(1, "x"),)), admin
    )
    node = open_node(Config(data_dir=node_dir))
    try:
        entries = node.service.writes.audit_log(AuditQuery(handle="88.100.1/AUD"))
    finally:
        node.close()
    assert [(e.operation, e.actor) for e in entries] == [("create", "300:0.NA/88.100.1")]
    assert entries[0].origin.startswith("tcp 127.0.0.1:")


@pytest.fixture(scope="module")
def challenging_server(node_dir: Path) -> Iterator[RunningNode]:
    """The node as Handle.Net answers anonymous reads of non-public values."""
    config = Config(data_dir=node_dir, handle_port=0, http_port=0, anonymous_reads="challenge")
    with running(config) as node:
        yield node


def test_a_read_asking_for_non_public_values_is_challenged_then_answered(
    challenging_server: RunningNode, admin: Credentials
) -> None:
    server = challenging_server
    handle = "88.100.1/PUMP-0007"
    public = client(server).resolve(handle)  # PUBLIC_ONLY, as deployed clients send
    assert isinstance(public.body, ResolutionResponse)
    public_types = {v.type for v in public.body.values}
    assert "CUSTOMER" not in public_types

    challenge = _anonymous_read_without_public_only(server, handle)
    assert challenge.response_code == ResponseCode.AUTHENTICATION_NEEDED
    assert isinstance(challenge.body, ChallengeResponse)

    reply = one(
        client(server).authenticated(
            OpCode.RESOLUTION, ResolutionRequest(handle), admin, OpFlag.NONE
        )
    )
    assert reply.response_code == ResponseCode.SUCCESS
    assert isinstance(reply.body, ResolutionResponse)
    assert {v.type for v in reply.body.values} == public_types | {"BATCH", "CUSTOMER"}
    # An identity without READ_VALUE on the record gets the public values only.
    ops = Credentials(OPS, secret=SECRET)
    reply = one(client(server).authenticated(OpCode.RESOLUTION, ResolutionRequest(handle), ops))
    assert isinstance(reply.body, ResolutionResponse)
    assert {v.type for v in reply.body.values} == public_types


def _anonymous_read_without_public_only(server: RunningNode, handle: str) -> Message:
    asking = Message(
        opcode=OpCode.RESOLUTION, body=ResolutionRequest(handle), request_id=5, op_flags=OpFlag.NONE
    )
    with socket.create_connection(("127.0.0.1", server.ports.handle), timeout=5) as sock:
        sock.sendall(encode_message(asking))
        framer = MessageFramer()
        while (frame := framer.next_message()) is None:
            framer.receive_data(sock.recv(65536))
    return decode_message(frame)


def test_by_default_an_anonymous_read_gets_public_values_and_a_session_gets_the_rest(
    server: RunningNode, admin: Credentials
) -> None:
    """IDIS SDKs never set PUBLIC_ONLY and cannot answer a challenge: by default they
    get the public values. A client in a MACed session can, so it is challenged."""
    handle = "88.100.1/PUMP-0007"
    reply = _anonymous_read_without_public_only(server, handle)
    assert reply.response_code == ResponseCode.SUCCESS
    assert isinstance(reply.body, ResolutionResponse)
    public_types = {v.type for v in reply.body.values}
    assert "CUSTOMER" not in public_types

    in_session = client(server)
    in_session.open_session()
    try:
        replies = in_session.authenticated(
            OpCode.RESOLUTION, ResolutionRequest(handle), admin, OpFlag.NONE
        )
    finally:
        in_session.close_session()
    assert isinstance(replies[0].body, ResolutionResponse)
    assert {v.type for v in replies[0].body.values} == public_types | {"BATCH", "CUSTOMER"}
