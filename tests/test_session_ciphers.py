"""Encrypted sessions as the IDIS SDKs set them up (key exchange mode 3): the ciphers,
the wrapped session key, and a node serving one over a real TCP connection. The real
SDK drives them in tests/test_idis.py; these need no Java."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from idnode import sm2
from idnode.auth.session_ciphers import SessionCipher, is_encrypted, seal, unseal, wrap_key
from idnode.auth.signatures import answer_with_private_key
from idnode.client import Credentials
from idnode.config import Config
from idnode.demo import demo_records
from idnode.domain import HandleRecord
from idnode.errors import RemoteProtocolError
from idnode.handle.codec import MessageFramer, decode_message, encode_message
from idnode.handle.codes import OpCode, OpFlag, ResponseCode
from idnode.handle.messages import (
    ChallengeAnswer,
    ChallengeResponse,
    CreateHandleRequest,
    ErrorResponse,
    KeyExchange,
    LoginRequest,
    Message,
    ResolutionRequest,
    ResolutionResponse,
    SessionSetupRequest,
    SessionSetupResponse,
)
from idnode.handle.values import HandleValue, ValueReference
from idnode.handle.valuetypes import RSAPublicKey
from idnode.node import ADMIN_KEY_FILE
from idnode.server.connection import Connection as TCPState
from idnode.service import Caller
from tests.conftest import RunningNode, make_node, rsa_key, running


@pytest.mark.parametrize("code", [4, 3])
def test_a_session_cipher_round_trips_and_refuses_other_keys(code: int) -> None:
    # Fixed keys, so that what a wrong key makes of the padding is the same every run.
    cipher = SessionCipher(code, bytes(range(16)))
    for size in (0, 1, 15, 16, 17, 1000):
        data = bytes(range(256)) * 4
        assert cipher.decrypt(cipher.encrypt(data[:size])) == data[:size]
    sealed = cipher.encrypt(b"the same message")
    if code == 4:
        # The SDKs' SM4: the key is the IV, nothing is sent before the ciphertext.
        assert len(sealed) == 32
        assert cipher.encrypt(b"the same message") == sealed
    else:
        assert len(sealed) == 16 + 32  # a random IV in front
        assert cipher.encrypt(b"the same message") != sealed
    other = SessionCipher(code, bytes(range(1, 17)))
    with pytest.raises(RemoteProtocolError, match="does not decrypt"):
        other.decrypt(cipher.encrypt(b"the same message"))
    with pytest.raises(RemoteProtocolError, match="blocks"):
        cipher.decrypt(sealed[:-1])


def test_the_session_key_block_opens_with_the_clients_private_key() -> None:
    cipher = SessionCipher.generate("sm4")
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = private.public_key().public_numbers()
    wrapped = wrap_key(RSAPublicKey(numbers.e, numbers.n), cipher)
    block = private.decrypt(wrapped, padding.PKCS1v15())
    assert block == struct.pack(">I", 4) + cipher.key
    sm2_key = sm2.generate()
    wrapped = wrap_key(sm2_key.public_key(), cipher)
    # C1 (65) || C3 (32) || C2 (as long as the block): BouncyCastle's raw layout.
    assert len(wrapped) == 65 + 32 + 20
    assert wrapped[0] == 4
    assert sm2.decrypt_raw(sm2_key, wrapped) == cipher.key_block()


def test_seal_and_unseal_touch_only_what_follows_the_envelope() -> None:
    cipher = SessionCipher.generate("aes")
    message = encode_message(Message(OpCode.RESOLUTION, ResolutionRequest("88.100.1/X")))
    sealed = seal(message, cipher)
    assert is_encrypted(sealed)
    assert not is_encrypted(message)
    assert sealed[:2] == message[:2]
    assert sealed[3:16] == message[3:16]
    assert struct.unpack(">I", sealed[16:20])[0] == len(sealed) - 20
    assert unseal(sealed, cipher) == message
    # Several messages back to back (a long listing's parts): each sealed on its own.
    second = encode_message(Message(OpCode.RESOLUTION, ResolutionRequest("88.100.1/LONGER-ONE")))
    both = seal(message + second, cipher)
    first_length = 20 + struct.unpack(">I", both[16:20])[0]
    assert unseal(both[:first_length], cipher) == message
    assert unseal(both[first_length:], cipher) == second


# -- a node serving encrypted sessions ---------------------------------------------------


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("encrypting-node")
    node = make_node(path)
    node.service.bulk.register_many(demo_records(5), replace=True)
    # A key too small to encrypt a session key block with: a setup naming it fails.
    tiny = RSAPublicKey(65537, 2**64 + 13).to_bytes()
    node.service.prefixes.put_record(
        HandleRecord("88.100.1/TINY-KEY", (HandleValue(300, "HS_PUBKEY", tiny),))
    )
    node.close()
    return path


@pytest.fixture(scope="module", params=["sm4", "aes"])
def server(request: pytest.FixtureRequest, node_dir: Path) -> Iterator[RunningNode]:
    config = Config(data_dir=node_dir, handle_port=0, http_port=0, session_cipher=request.param)
    with running(config) as node:
        yield node


class Connection:
    def __init__(self, server: RunningNode) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.ports.handle), timeout=10)
        self.framer = MessageFramer()

    def send(self, data: bytes) -> bytes:
        self.sock.sendall(data)
        while (frame := self.framer.next_message()) is None:
            self.framer.receive_data(self.sock.recv(65536))
        return frame

    def close(self) -> None:
        self.sock.close()


def set_up(conn: Connection, key: rsa.RSAPrivateKey, session: int = 10001) -> SessionCipher:
    setup = SessionSetupRequest(
        KeyExchange.CIPHER_HDL, 3600, "", -1 & 0xFFFFFFFF, b"", "0.NA/88.100.1", 300
    )
    reply = decode_message(
        conn.send(encode_message(Message(OpCode.SESSION_SETUP, setup, session_id=session)))
    )
    assert reply.response_code == ResponseCode.SUCCESS, reply.body
    assert isinstance(reply.body, SessionSetupResponse)
    assert reply.body.mode == KeyExchange.CIPHER_HDL
    block = key.decrypt(reply.body.data, padding.PKCS1v15())
    code, session_key = struct.unpack(">I", block[:4])[0], block[4:]
    assert len(session_key) == 16
    return SessionCipher(code, session_key)


def resolution(session: int) -> bytes:
    request = Message(
        OpCode.RESOLUTION, ResolutionRequest("88.100.1/PUMP-0001"), session_id=session
    )
    return encode_message(request)


def test_a_node_answers_in_the_session_it_set_up(server: RunningNode, node_dir: Path) -> None:
    key = rsa_key(node_dir / ADMIN_KEY_FILE)
    conn = Connection(server)
    try:
        cipher = set_up(conn, key)
        assert cipher.code == (4 if server.config.session_cipher == "sm4" else 3)
        reply = conn.send(seal(resolution(10001), cipher))
        assert is_encrypted(reply)
        answer = decode_message(unseal(reply, cipher))
        assert answer.response_code == ResponseCode.SUCCESS
        assert isinstance(answer.body, ResolutionResponse)
        assert answer.body.handle == "88.100.1/PUMP-0001"
        # A message in the clear on the same connection is answered in the clear.
        assert not is_encrypted(conn.send(resolution(0)))
    finally:
        conn.close()


def test_a_session_speaks_only_sealed_and_ends_at_the_first_broken_message(
    server: RunningNode, node_dir: Path
) -> None:
    key = rsa_key(node_dir / ADMIN_KEY_FILE)
    conn, other = Connection(server), Connection(server)
    try:
        cipher = set_up(conn, key)
        # In the clear under an encrypted session's id: refused, not served.
        clear = decode_message(conn.send(resolution(10001)))
        assert clear.response_code == ResponseCode.SESSION_FAILED
        assert isinstance(clear.body, ErrorResponse)
        assert "session 10001 is encrypted" in clear.body.message
        # The key belongs to its connection: on another there is no such session.
        foreign = decode_message(other.send(seal(resolution(10001), cipher)))
        assert foreign.response_code == ResponseCode.SESSION_TIMEOUT
        assert isinstance(foreign.body, ErrorResponse)
        assert "no encrypted session 10001" in foreign.body.message

        # Broken padding, and good padding around what does not parse, get the same
        # answer, and either ends the session: no oracle to question.
        def bad_padding(fresh: SessionCipher) -> bytes:
            sealed = bytearray(seal(resolution(10001), fresh))
            sealed[-1] ^= 0xFF
            return bytes(sealed)

        def not_a_message(fresh: SessionCipher) -> bytes:
            payload = b"not a message"
            envelope = bytearray(resolution(10001)[:20])
            struct.pack_into(">I", envelope, 16, len(payload))
            return seal(bytes(envelope) + payload, fresh)

        answers = []
        for broken in (bad_padding, not_a_message):
            fresh = set_up(conn, key)
            reply = decode_message(conn.send(broken(fresh)))
            answers.append((reply.response_code, reply.body))
            after = decode_message(conn.send(seal(resolution(10001), fresh)))
            assert after.response_code == ResponseCode.SESSION_TIMEOUT
        assert answers[0] == answers[1]
        assert answers[0][0] == ResponseCode.SESSION_FAILED
        # A new session on the same connection works.
        again = set_up(conn, key, session=10002)
        reply = decode_message(unseal(conn.send(seal(resolution(10002), again)), again))
        assert reply.response_code == ResponseCode.SUCCESS
    finally:
        conn.close()
        other.close()


@pytest.mark.parametrize(
    ("handle", "index", "message"),
    [
        ("88.100.1/NO-SUCH-IDENTITY", 300, "not held"),
        ("88.100.1/PUMP-0001", 300, "no value at that index"),
        ("88.100.1/PUMP-0001", 4, "is a URL value, not a key"),
        ("88.100.1/TINY-KEY", 300, "cannot encrypt a session key"),
    ],
)
def test_a_setup_naming_no_usable_key_fails(
    server: RunningNode, handle: str, index: int, message: str
) -> None:
    conn = Connection(server)
    try:
        setup = SessionSetupRequest(KeyExchange.CIPHER_HDL, 60, "", 0, b"", handle, index)
        reply = decode_message(
            conn.send(encode_message(Message(OpCode.SESSION_SETUP, setup, session_id=5)))
        )
        assert reply.response_code == ResponseCode.SESSION_FAILED
        assert isinstance(reply.body, ErrorResponse)
        assert message in reply.body.message
    finally:
        conn.close()


def test_a_new_key_for_a_session_ends_the_login_made_under_the_old(
    server: RunningNode, node_dir: Path
) -> None:
    key = rsa_key(node_dir / ADMIN_KEY_FILE)
    conn = Connection(server)

    def sealed(cipher: SessionCipher, message: Message) -> Message:
        return decode_message(unseal(conn.send(seal(encode_message(message), cipher)), cipher))

    def create(cipher: SessionCipher, name: str) -> Message:
        body = CreateHandleRequest(name, (HandleValue(1, "URL", b"https://e.example/"),))
        return sealed(cipher, Message(OpCode.CREATE_HANDLE, body, session_id=10001))

    try:
        cipher = set_up(conn, key)
        login = Message(
            OpCode.LOGIN_ID_SYSTEM,
            LoginRequest("0.NA/88.100.1", 300),
            session_id=10001,
            op_flags=OpFlag.RETURN_REQUEST_DIGEST,
        )
        challenge = sealed(cipher, login)
        assert isinstance(challenge.body, ChallengeResponse)
        signed = answer_with_private_key(
            key, challenge.body.nonce, challenge.body.request_digest.digest, (2, 10)
        )
        answer = ChallengeAnswer("HS_PUBKEY", "0.NA/88.100.1", 300, signed)
        done = sealed(cipher, Message(OpCode.CHALLENGE_RESPONSE, answer, session_id=10001))
        assert done.response_code == ResponseCode.SUCCESS
        made = create(cipher, f"88.100.1/SEALED-{server.config.session_cipher}")
        assert made.response_code == ResponseCode.SUCCESS
        # Whoever sets up a new key for the session id (a man in the middle can send
        # a setup in the clear) gets a session with no login in it.
        replaced = set_up(conn, key)
        again = create(replaced, f"88.100.1/HIJACKED-{server.config.session_cipher}")
        assert again.response_code == ResponseCode.AUTHENTICATION_NEEDED
    finally:
        conn.close()


def test_a_session_pushed_out_of_a_connection_takes_its_login_with_it() -> None:
    """A connection keeps 16 encrypted sessions; the oldest one's login must not be
    left to clear messages when its key is forgotten."""
    state = TCPState()
    state.encrypt_session(1, SessionCipher.generate("sm4"))
    state.log_in(1, Caller(ValueReference("0.NA/88.100.1", 300)))
    for number in range(2, 2 + TCPState.MAX_LOGINS):
        state.encrypt_session(number, SessionCipher.generate("sm4"))
    assert state.cipher(1) is None
    assert state.caller(1) is None


def test_a_request_challenged_in_a_session_is_answered_and_served_sealed(
    server: RunningNode, node_dir: Path
) -> None:
    """Its challenge stays on its connection, under the session's id: the answer comes
    sealed in the session, and so does the reply holding what was asked."""
    key = rsa_key(node_dir / ADMIN_KEY_FILE)
    conn = Connection(server)
    try:
        cipher = set_up(conn, key)
        handle = f"88.100.1/CHALLENGED-{server.config.session_cipher}"
        body = CreateHandleRequest(handle, (HandleValue(1, "URL", b"https://e/s"),))
        create = encode_message(Message(OpCode.CREATE_HANDLE, body, session_id=10001))
        reply = conn.send(seal(create, cipher))
        assert is_encrypted(reply)
        challenge = decode_message(unseal(reply, cipher))
        assert challenge.response_code == ResponseCode.AUTHENTICATION_NEEDED
        assert challenge.session_id == 10001
        assert isinstance(challenge.body, ChallengeResponse)
        who = Credentials(ValueReference("0.NA/88.100.1", 300), private_key=key)
        answer = Message(
            OpCode.CHALLENGE_RESPONSE, who.answer(challenge.body, challenge.version),
            session_id=10001,
        )  # fmt: skip
        done = conn.send(seal(encode_message(answer), cipher))
        assert is_encrypted(done)  # nothing of it in the clear
        served = decode_message(unseal(done, cipher))
        assert served.response_code == ResponseCode.SUCCESS, served.body
        assert served.opcode == OpCode.CREATE_HANDLE
    finally:
        conn.close()
