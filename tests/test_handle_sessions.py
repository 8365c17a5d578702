"""Handle protocol sessions (opcodes 400-402): set up once, authenticate once, MAC each
message; over real sockets, and across two services on one database (two workers)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from idnode.auth import replay
from idnode.auth.session_keys import (
    KEY_SIZE,
    DHKey,
    client_key,
    client_session_key,
    server_agreement,
)
from idnode.client import ClientSession, Credentials, HandleClient
from idnode.config import Config
from idnode.errors import AuthenticationNeeded, SessionFailed
from idnode.handle.codec import decode_message, encode_message, session_counter_of
from idnode.handle.codes import OpCode, ResponseCode
from idnode.handle.messages import (
    PROTOCOL_VERSION,
    AddValueRequest,
    Body,
    ChallengeResponse,
    CreateHandleRequest,
    KeyExchange,
    Message,
    ResolutionRequest,
    ResolutionResponse,
    SessionSetupRequest,
    SessionSetupResponse,
    SessionTerminateRequest,
)
from idnode.handle.values import HandleValue, ValueReference
from idnode.node import open_node
from idnode.server.dispatch import Dispatcher
from idnode.service import Caller
from tests.conftest import RunningNode, add_secret_admin, make_node, running

OPS = ValueReference("88.100.1/OPS", 300)
SECRET = "session-secret"


@dataclass(frozen=True)
class CountingCredentials(Credentials):
    """Credentials that count the challenges they answer."""

    answered: list[int] = field(default_factory=list)

    def answer(self, challenge: ChallengeResponse, version: tuple[int, int]):  # type: ignore[no-untyped-def]
        self.answered.append(1)
        return super().answer(challenge, version)


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("session-node")
    node = make_node(path)
    add_secret_admin(node, OPS, SECRET)
    node.close()
    return path


@pytest.fixture(scope="module")
def server(node_dir: Path) -> Iterator[RunningNode]:
    with running(Config(data_dir=node_dir, handle_port=0, http_port=0)) as node:
        yield node


def url(index: int, text: str) -> HandleValue:
    return HandleValue(index, "URL", text.encode())


def ops() -> CountingCredentials:
    return CountingCredentials(OPS, secret=SECRET.encode())


def test_in_a_session_only_the_first_write_is_challenged(server: RunningNode) -> None:
    client = HandleClient("127.0.0.1", server.ports.handle, timeout=10)
    who = ops()
    client.open_session()
    for n in range(3):
        h = f"88.100.1/SESSION-{n}"
        [reply] = client.authenticated(
            OpCode.CREATE_HANDLE, CreateHandleRequest(h, (url(1, "a"),)), who
        )
        assert reply.response_code == ResponseCode.SUCCESS, reply.body
    assert len(who.answered) == 1
    # Without a session every write is challenged.
    plain, anyone = HandleClient("127.0.0.1", server.ports.handle, timeout=10), ops()
    for n in range(2):
        body = AddValueRequest(f"88.100.1/SESSION-{n}", (url(2, "b"),))
        [reply] = plain.authenticated(OpCode.ADD_VALUE, body, anyone)
        assert reply.response_code == ResponseCode.SUCCESS
    assert len(anyone.answered) == 2


def test_a_closed_session_is_forgotten_and_the_client_starts_over(server: RunningNode) -> None:
    client = HandleClient("127.0.0.1", server.ports.handle, timeout=10)
    who = ops()
    session = client.open_session()
    client.close_session()
    # A message in the closed session is refused: the session is unknown now.
    client.session = session
    h = "88.100.1/AFTER-CLOSE"
    [reply] = client.authenticated(
        OpCode.CREATE_HANDLE, CreateHandleRequest(h, (url(1, "a"),)), who
    )
    # The client saw "session timed out", dropped it and sent the write again outside.
    assert client.session is None
    assert reply.response_code == ResponseCode.SUCCESS
    assert len(who.answered) == 1


# -- the same, message by message, through two dispatchers on one database -----------


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[tuple[Dispatcher, Dispatcher]]:
    node = make_node(tmp_path)
    add_secret_admin(node, OPS, SECRET)
    other = open_node(Config(data_dir=tmp_path))
    try:
        yield Dispatcher(node.service), Dispatcher(other.service)
    finally:
        node.close()
        other.close()


def set_up(
    worker: Dispatcher, mode: int = KeyExchange.DIFFIE_HELLMAN, mine: DHKey | None = None
) -> Message:
    """The answer to a session setup in ``mode`` with the key ``mine`` (a fresh one)."""
    public = (mine or client_key()).public_bytes()
    setup = SessionSetupRequest(mode, 600, public_key=public)
    return ask(worker, encode_message(Message(OpCode.SESSION_SETUP, setup, request_id=7)))


def session_of(worker: Dispatcher) -> ClientSession:
    mine = client_key()
    reply = set_up(worker, mine=mine)
    assert reply.response_code == ResponseCode.SUCCESS
    assert isinstance(reply.body, SessionSetupResponse)
    return ClientSession(reply.session_id, client_session_key(mine, reply.body.data))


def ask_raw(worker: Dispatcher, data: bytes) -> bytes:
    answer = worker.handle(data, udp=False, peer=("127.0.0.1", 1))
    assert answer is not None
    return answer


def ask(worker: Dispatcher, data: bytes) -> Message:
    return decode_message(ask_raw(worker, data))


def mac_counter(reply: bytes, session: ClientSession) -> int | None:
    return session_counter_of(reply, decode_message(reply), session.key)


def in_session(
    session: ClientSession,
    opcode: OpCode,
    body: Body,
    *,
    session_id: int | None = None,
    key: bytes | None = None,
) -> bytes:
    message = Message(
        opcode,
        body,
        request_id=secrets.randbits(31),
        session_id=session.number if session_id is None else session_id,
    )
    return encode_message(
        message, session_key=key or session.key, session_counter=session.next_counter()
    )


def authenticate(
    worker: Dispatcher, session: ClientSession, request: bytes, *, mac_answer: bool = True
) -> Message:
    """Send ``request``, answer its challenge in the session (MACed, or not as
    Handle.Net's clients send it); the final reply."""
    challenge = ask(worker, request)
    assert challenge.response_code == ResponseCode.AUTHENTICATION_NEEDED
    assert challenge.session_id == session.number
    assert isinstance(challenge.body, ChallengeResponse)
    answer = ops().answer(challenge.body, challenge.version)
    if mac_answer:
        return ask(worker, in_session(session, OpCode.CHALLENGE_RESPONSE, answer))
    plain = Message(OpCode.CHALLENGE_RESPONSE, answer, request_id=11, session_id=session.number)
    return ask(worker, encode_message(plain))


def proven_session(worker: Dispatcher, handle: str) -> ClientSession:
    """A session set up with ``worker``, proven as OPS by creating ``handle`` in it."""
    session = session_of(worker)
    create = in_session(session, OpCode.CREATE_HANDLE, CreateHandleRequest(handle, (url(9, "z"),)))
    assert authenticate(worker, session, create).response_code == ResponseCode.SUCCESS
    return session


def test_a_session_set_up_on_one_worker_serves_on_the_other(
    workers: tuple[Dispatcher, Dispatcher],
) -> None:
    first, second = workers
    session = session_of(first)
    create = in_session(
        session, OpCode.CREATE_HANDLE, CreateHandleRequest("88.100.1/W-1", (url(9, "z"),))
    )
    assert authenticate(second, session, create).response_code == ResponseCode.SUCCESS
    # The other worker knows the session has proven OPS: no challenge.
    add = in_session(session, OpCode.ADD_VALUE, AddValueRequest("88.100.1/W-1", (url(1, "a"),)))
    counter = session.counter - 1
    reply = ask_raw(first, add)
    assert decode_message(reply).response_code == ResponseCode.SUCCESS
    # Replies in the session are MACed with its key, carrying the request's counter.
    assert mac_counter(reply, session) == counter
    assert mac_counter(reply, ClientSession(session.number, bytes(KEY_SIZE))) is None


def test_a_challenge_issued_by_one_worker_is_answered_on_the_other(
    workers: tuple[Dispatcher, Dispatcher],
) -> None:
    """Issue 20: the answer may come on a new connection, which another worker takes."""
    first, second = workers
    body = CreateHandleRequest("88.100.1/ACROSS-1", (url(9, "z"),))
    challenge = ask(first, encode_message(Message(OpCode.CREATE_HANDLE, body, request_id=3)))
    assert challenge.response_code == ResponseCode.AUTHENTICATION_NEEDED
    assert isinstance(challenge.body, ChallengeResponse)
    answer = ops().answer(challenge.body, challenge.version)
    plain = Message(
        OpCode.CHALLENGE_RESPONSE, answer, request_id=4, session_id=challenge.session_id
    )
    done = ask(second, encode_message(plain))
    assert done.response_code == ResponseCode.SUCCESS, done.body
    # The challenged request is served, its reply addressed to the answer.
    assert (done.opcode, done.request_id) == (OpCode.CREATE_HANDLE, 4)
    resolve = Message(OpCode.RESOLUTION, ResolutionRequest("88.100.1/ACROSS-1"), request_id=5)
    assert ask(first, encode_message(resolve)).response_code == ResponseCode.SUCCESS
    # Used up in every worker: the same answer again, to either, is refused.
    for worker in (first, second):
        again = ask(worker, encode_message(plain))
        assert again.response_code == ResponseCode.AUTHENTICATION_TIMEOUT


def test_a_challenge_in_a_session_answered_on_another_worker_proves_the_session(
    workers: tuple[Dispatcher, Dispatcher],
) -> None:
    first, second = workers
    session = session_of(first)
    create = in_session(
        session, OpCode.CREATE_HANDLE, CreateHandleRequest("88.100.1/ACROSS-2", (url(9, "z"),))
    )
    challenge = ask(first, create)
    assert challenge.response_code == ResponseCode.AUTHENTICATION_NEEDED
    assert challenge.session_id == session.number
    assert isinstance(challenge.body, ChallengeResponse)
    answer = ops().answer(challenge.body, challenge.version)
    reply = ask(second, in_session(session, OpCode.CHALLENGE_RESPONSE, answer))
    assert reply.response_code == ResponseCode.SUCCESS
    add = in_session(
        session, OpCode.ADD_VALUE, AddValueRequest("88.100.1/ACROSS-2", (url(1, "a"),))
    )
    assert ask(first, add).response_code == ResponseCode.SUCCESS


def test_an_answer_without_a_mac_proves_the_session_it_was_challenged_in(
    workers: tuple[Dispatcher, Dispatcher],
) -> None:
    first, _ = workers
    session = session_of(first)
    create = in_session(
        session, OpCode.CREATE_HANDLE, CreateHandleRequest("88.100.1/HN-1", (url(9, "z"),))
    )
    done = authenticate(first, session, create, mac_answer=False)
    assert done.response_code == ResponseCode.SUCCESS
    add = in_session(session, OpCode.ADD_VALUE, AddValueRequest("88.100.1/HN-1", (url(1, "a"),)))
    assert ask(first, add).response_code == ResponseCode.SUCCESS


def test_a_challenge_to_a_message_without_a_mac_does_not_prove_the_session(
    workers: tuple[Dispatcher, Dispatcher],
) -> None:
    first, _ = workers
    session = session_of(first)
    body = CreateHandleRequest("88.100.1/BARE-1", (url(9, "z"),))
    bare = Message(OpCode.CREATE_HANDLE, body, request_id=5, session_id=session.number)
    done = authenticate(first, session, encode_message(bare), mac_answer=False)
    assert done.response_code == ResponseCode.SUCCESS  # served: the answer proved OPS
    add = in_session(session, OpCode.ADD_VALUE, AddValueRequest("88.100.1/BARE-1", (url(1, "a"),)))
    assert ask(first, add).response_code == ResponseCode.AUTHENTICATION_NEEDED


def test_a_replayed_session_message_is_refused_and_changes_nothing(
    workers: tuple[Dispatcher, Dispatcher],
) -> None:
    first, second = workers
    session = proven_session(first, "88.100.1/R-1")
    add = in_session(session, OpCode.ADD_VALUE, AddValueRequest("88.100.1/R-1", (url(1, "a"),)))
    assert ask(first, add).response_code == ResponseCode.SUCCESS
    for worker in (first, second):
        assert ask(worker, add).response_code == ResponseCode.SESSION_MESSAGE_REJECTED
    # An older message that arrives late (out of order) is still accepted once.
    late = in_session(session, OpCode.ADD_VALUE, AddValueRequest("88.100.1/R-1", (url(2, "b"),)))
    newer = in_session(session, OpCode.ADD_VALUE, AddValueRequest("88.100.1/R-1", (url(3, "c"),)))
    assert ask(second, newer).response_code == ResponseCode.SUCCESS
    assert ask(first, late).response_code == ResponseCode.SUCCESS
    assert ask(second, late).response_code == ResponseCode.SESSION_MESSAGE_REJECTED


def test_session_messages_that_do_not_check_are_refused(
    workers: tuple[Dispatcher, Dispatcher],
) -> None:
    first, _ = workers
    session = proven_session(first, "88.100.1/M-1")
    body = AddValueRequest("88.100.1/M-1", (url(1, "a"),))
    wrong_key = in_session(session, OpCode.ADD_VALUE, body, key=bytes(KEY_SIZE))
    assert ask(first, wrong_key).response_code == ResponseCode.INVALID_SESSION_KEY
    unknown = in_session(session, OpCode.ADD_VALUE, body, session_id=session.number ^ 1)
    assert ask(first, unknown).response_code == ResponseCode.SESSION_TIMEOUT
    # Naming the proven session without a MAC proves nothing: challenged again.
    bare = Message(OpCode.ADD_VALUE, body, request_id=5, session_id=session.number)
    assert ask(first, encode_message(bare)).response_code == ResponseCode.AUTHENTICATION_NEEDED
    # Ending the session needs its MAC too; afterwards the session is unknown.
    end = Message(OpCode.SESSION_TERMINATE, SessionTerminateRequest(), session_id=session.number)
    assert ask(first, encode_message(end)).response_code == ResponseCode.INVALID_SESSION_KEY
    ended = ask(first, in_session(session, OpCode.SESSION_TERMINATE, SessionTerminateRequest()))
    assert ended.response_code == ResponseCode.SUCCESS
    again = in_session(session, OpCode.ADD_VALUE, body)
    assert ask(first, again).response_code == ResponseCode.SESSION_TIMEOUT
    # Nothing was added by the refused messages.
    lookup = Message(OpCode.RESOLUTION, ResolutionRequest("88.100.1/M-1", (), ()), request_id=3)
    resolved = ask(first, encode_message(lookup)).body
    assert isinstance(resolved, ResolutionResponse)
    assert [v.index for v in resolved.values] == [9]


def test_only_diffie_hellman_sessions_are_set_up(
    workers: tuple[Dispatcher, Dispatcher],
) -> None:
    first, _ = workers
    # Over UDP: "ask again over TCP" (truncated), nothing stored.
    setup = SessionSetupRequest(
        KeyExchange.DIFFIE_HELLMAN, 60, public_key=client_key().public_bytes()
    )
    datagram = encode_message(Message(OpCode.SESSION_SETUP, setup, request_id=8))
    answer = first.handle(datagram, udp=True, peer=("127.0.0.1", 1))
    assert answer is not None
    assert decode_message(answer).truncated
    assert decode_message(answer).session_id == 0
    refused = set_up(first, KeyExchange.CIPHER_SERVER)
    assert refused.response_code == ResponseCode.SESSION_FAILED
    small = DHKey(p=(1 << 521) - 1, g=3, x=12345)  # a Mersenne prime: too small a group
    setup = SessionSetupRequest(KeyExchange.DIFFIE_HELLMAN, 60, public_key=small.public_bytes())
    reply = ask(first, encode_message(Message(OpCode.SESSION_SETUP, setup, request_id=9)))
    assert reply.response_code == ResponseCode.SESSION_FAILED
    garbage = SessionSetupRequest(KeyExchange.DIFFIE_HELLMAN, 60, public_key=b"\x00\x00\x00\x02DH")
    reply = ask(first, encode_message(Message(OpCode.SESSION_SETUP, garbage, request_id=9)))
    assert reply.response_code == ResponseCode.SESSION_FAILED
    old = Message(
        OpCode.SESSION_SETUP,
        SessionSetupRequest(KeyExchange.DIFFIE_HELLMAN, 60, public_key=client_key().public_bytes()),
        request_id=9,
        version=(2, 6),
    )
    assert ask(first, encode_message(old)).response_code == ResponseCode.SESSION_FAILED


def test_a_client_refuses_to_use_a_server_that_sets_up_no_session(
    workers: tuple[Dispatcher, Dispatcher], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = workers
    client = HandleClient()

    def answer(opcode: OpCode, body: Body, transport: str = "auto") -> Message:
        assert isinstance(body, SessionSetupRequest)
        wrong = SessionSetupRequest(KeyExchange.CIPHER_SERVER, 60)
        return ask(first, encode_message(Message(opcode, wrong, request_id=3)))

    monkeypatch.setattr(client, "request", answer)
    with pytest.raises(SessionFailed, match="set up no session"):
        client.open_session()


# -- the key agreement itself ----------------------------------------------------------


def test_client_and_server_agree_on_a_key() -> None:
    mine = client_key()
    answer, server_key = server_agreement(mine.public_bytes())
    assert len(server_key) == KEY_SIZE
    assert client_session_key(mine, answer) == server_key
    assert answer[:4] == b"\x00\x00\x00\x03"  # AES, as deployed clients expect from 2.4


def test_the_key_is_the_secret_without_leading_zeros_cut_to_32_bytes() -> None:
    # A 300-bit group, so the secret (38 bytes) is longer than the key: with the peer's
    # y = 1 the secret is 1, written as 37 zero bytes and a 1; the zeros are dropped
    # only while more than 32 bytes remain, as Handle.Net's provider does.
    group = DHKey(p=(1 << 300) - 153, g=2, x=99)
    assert group.session_key(1) == bytes(31) + b"\x01"


def test_public_keys_carry_java_big_integers() -> None:
    key = DHKey(p=0x80 << 2040, g=2, x=3)
    encoded = key.public_bytes()
    assert encoded.startswith(b"\x00\x00\x00\x0aDH_PUB_KEY\x00\x00")
    # p has its top bit set in its first byte, so Java writes a zero byte before it.
    p_bytes = (0x80 << 2040).to_bytes(256, "big")
    assert b"\x00\x00\x01\x01\x00" + p_bytes in encoded
    assert encoded.endswith(b"\x00\x00\x00\x01\x02")


def test_a_handle_session_cannot_be_named_over_http(tmp_path: Path) -> None:
    """Its messages are proven by their MACs; an HTTP request carries none."""
    node = make_node(tmp_path)
    try:
        setup = SessionSetupRequest(
            KeyExchange.DIFFIE_HELLMAN, 60, public_key=client_key().public_bytes()
        )
        number, _ = node.service.sessions.open_handle_session(setup, PROTOCOL_VERSION)
        node.service.sessions.bind_handle_session(number, Caller(OPS, "test"))
        assert node.service.sessions.handle_session(number).identity == OPS
        with pytest.raises(AuthenticationNeeded):
            node.service.sessions.session_caller(f"handle:{number}", "http")
    finally:
        node.close()


def test_the_setup_request_as_handle_net_encodes_it_is_read() -> None:
    # Handle.Net counts four bytes for the two-byte mode: its bodies end in two zeros.
    key = client_key().public_bytes()
    body = (
        b"\x00\x04"  # Diffie-Hellman
        + b"\x00\x01\x51\x80"  # 86400 s
        + b"\x00\x00\x00\x0c88.100.1/OPS"
        + b"\x00\x00\x01\x2c"  # index 300
        + len(key).to_bytes(4, "big")
        + key
        + b"\x00\x00"
    )
    header = (
        (400).to_bytes(4, "big")
        + bytes(4)  # a request
        + (0x40800000).to_bytes(4, "big")  # CERTIFY, RETURN_REQUEST_DIGEST
        + b"\xff\xff\x00\x00"
        + bytes(4)
        + len(body).to_bytes(4, "big")
    )
    message = header + body + bytes(4)
    envelope = b"\x02\x0b\x02\x0b" + bytes(4) + (5).to_bytes(4, "big") + bytes(4)
    decoded = decode_message(envelope + len(message).to_bytes(4, "big") + message)
    assert decoded.body == SessionSetupRequest(
        KeyExchange.DIFFIE_HELLMAN, 86_400, "88.100.1/OPS", 300, key
    )


@pytest.mark.parametrize(
    ("state", "counter", "after"),
    [
        ((0, 0), 0, (1, 0)),  # the first message, whatever its counter
        ((0, 0), 5, (6, 0)),
        ((1, 0), 0, None),  # seen
        ((1, 0), 3, (4, 0b100)),  # 0 is now three below the highest
        ((4, 0b100), 1, (4, 0b110)),  # late, not seen: accepted
        ((4, 0b110), 1, None),  # late, seen
        ((4, 0b110), 3, None),  # the highest itself
        ((100, 0), 100 - 2 - replay.WINDOW, None),  # older than the window
        ((100, 0), 100 - 1 - replay.WINDOW, (100, 1 << (replay.WINDOW - 1))),
        ((10, 0), 10 + replay.WINDOW + 5, (16 + replay.WINDOW, 0)),  # old bits slide out
    ],
)
def test_counters_are_accepted_once_within_a_window(
    state: tuple[int, int], counter: int, after: tuple[int, int] | None
) -> None:
    assert replay.accept(state, counter) == after


def test_session_set_ups_are_limited_per_address(tmp_path: Path) -> None:
    """Issue 20: each set-up is a key agreement's worth of CPU; an address gets
    session_setups_per_minute of them, then SERVER_TOO_BUSY, others are not affected."""
    node = make_node(tmp_path)
    now = [1000.0]
    try:
        worker = Dispatcher(node.service, clock=lambda: now[0], session_setups_per_minute=3)
        setup = SessionSetupRequest(KeyExchange.DIFFIE_HELLMAN, 60, public_key=b"")

        def from_(host: str) -> ResponseCode:
            request = encode_message(Message(OpCode.SESSION_SETUP, setup, request_id=3))
            answer = worker.handle(request, udp=False, peer=(host, 5000))
            assert answer is not None
            return decode_message(answer).response_code

        assert set_up(worker).response_code == ResponseCode.SUCCESS  # from 127.0.0.1
        assert [from_("127.0.0.1") for _ in range(3)][-1] == ResponseCode.SERVER_TOO_BUSY
        assert from_("192.0.2.9") != ResponseCode.SERVER_TOO_BUSY
        now[0] += 20.0  # the allowance refills, one a 20 s here
        assert set_up(worker).response_code == ResponseCode.SUCCESS
    finally:
        node.close()
