"""A blocking Handle protocol client: UDP first, TCP when the answer is truncated.

It speaks to any Handle server (idnode, Handle.Net, ...). Used by ``idnode resolve``
and by the tests and benchmarks; the codec does the protocol, this file only the I/O.

:meth:`HandleClient.open_session` sets up a protocol session (Diffie-Hellman, as
deployed clients do): the authenticated requests that follow are sent in it, MACed
with its key, and once one challenge has been answered in it the server no longer
challenges them. Every reply in the session must carry a valid MAC.
"""

from __future__ import annotations

import hmac
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from idnode.errors import (
    AuthenticationError,
    IdnodeError,
    Referral,
    RemoteProtocolError,
    SessionFailed,
    error_for,
)
from idnode.handle.codec import (
    MAX_MESSAGE_LENGTH,
    MessageFramer,
    decode_message,
    digest_request,
    encode_message,
    session_counter_of,
)
from idnode.handle.codes import OpCode, OpFlag, ResponseCode
from idnode.handle.messages import (
    Body,
    ChallengeAnswer,
    ChallengeResponse,
    ErrorResponse,
    KeyExchange,
    ListHandlesResponse,
    Message,
    ReferralResponse,
    ResolutionRequest,
    SessionSetupRequest,
    SessionSetupResponse,
    SessionTerminateRequest,
    SiteInfoRequest,
    SiteInfoResponse,
    VerifyChallengeRequest,
    VerifyChallengeResponse,
)
from idnode.handle.values import ValueReference

if TYPE_CHECKING:
    from idnode.keys import PrivateKey

__all__ = [
    "ClientSession",
    "Credentials",
    "HandleClient",
    "ServerTimedOut",
    "ServerUnreachable",
    "Transport",
    "answer_error",
    "listed",
]

Transport = Literal["auto", "udp", "tcp"]


class ServerUnreachable(IdnodeError):
    """The server refused, could not be found, or did not answer in time.

    Over HTTP a node that asked another server for its client answers 502 (Bad
    Gateway), or 504 (Gateway Timeout) when no server it asked answered in time: the
    fault is upstream, not in the node.
    """

    http_status = 502


class ServerTimedOut(ServerUnreachable):
    """The server did not answer in time."""

    http_status = 504


@dataclass(frozen=True)
class Credentials:
    """An identity (``index:handle`` of its key value) and the key that proves it."""

    identity: ValueReference
    secret: bytes | None = None
    private_key: PrivateKey | None = None

    def answer(self, challenge: ChallengeResponse, version: tuple[int, int]) -> ChallengeAnswer:
        # Signing (cryptography, GmSSL) is imported when an identity answers a challenge.
        from idnode.auth.signatures import answer_with_private_key, answer_with_secret

        nonce, digest = challenge.nonce, challenge.request_digest.digest
        if self.private_key is not None:
            signed = answer_with_private_key(
                self.private_key, nonce, digest, version, self.identity.handle
            )
            auth_type = "HS_PUBKEY"
        elif self.secret is not None:
            signed = answer_with_secret(self.secret, nonce, digest, version)
            auth_type = "HS_SECKEY"
        else:
            raise ValueError("credentials need a secret or a private key")
        return ChallengeAnswer(auth_type, self.identity.handle, self.identity.index, signed)


@dataclass
class ClientSession:
    """A protocol session with one server: its number, its key, and the counter the
    next message carries (each message's differs, so the server can spot a replay)."""

    number: int
    key: bytes
    counter: int = 1

    def next_counter(self) -> int:
        counter, self.counter = self.counter, self.counter + 1
        return counter


@dataclass
class HandleClient:
    host: str = "127.0.0.1"
    port: int = 2641
    timeout: float = 3.0
    #: UDP sends before giving up (each waits timeout / attempts).
    udp_attempts: int = 3
    #: The session authenticated requests are sent in (see :meth:`open_session`).
    session: ClientSession | None = None

    def open_session(self, seconds: int = 3600) -> ClientSession:
        """Set up a session with the server, lasting ``seconds`` at most; later
        :meth:`authenticated` requests are sent in it. SessionFailed if the server
        does not offer one."""
        from idnode.auth.session_keys import client_key, client_session_key

        mine = client_key()
        setup = SessionSetupRequest(
            KeyExchange.DIFFIE_HELLMAN, seconds, public_key=mine.public_bytes()
        )
        reply = self.request(OpCode.SESSION_SETUP, setup, "tcp")
        body = reply.body
        if reply.response_code != ResponseCode.SUCCESS or not isinstance(
            body, SessionSetupResponse
        ):
            said = _said(reply)
            raise SessionFailed(f"{self.host}:{self.port} set up no session: {said}")
        if body.mode != KeyExchange.DIFFIE_HELLMAN or not reply.session_id:
            raise RemoteProtocolError("the server answered the session setup in another mode")
        self.session = ClientSession(reply.session_id, client_session_key(mine, body.data))
        return self.session

    def close_session(self) -> None:
        """End the session on the server too (it would expire anyway)."""
        session, self.session = self.session, None
        if session is None:
            return
        request = Message(
            opcode=OpCode.SESSION_TERMINATE,
            body=SessionTerminateRequest(),
            request_id=secrets.randbits(31),
            session_id=session.number,
        )
        with self._tcp_connection() as sock:
            sock.sendall(_in_session(request, session))
            reply = next(self._replies(sock, MessageFramer(), request.request_id, session))
        if reply.response_code != ResponseCode.SUCCESS:
            raise SessionFailed(f"the server did not end session {session.number}")

    def resolve(
        self,
        handle: str,
        indexes: tuple[int, ...] = (),
        types: tuple[str, ...] = (),
        transport: Transport = "auto",
        certified_by: bytes | None = None,
    ) -> Message:
        request = ResolutionRequest(handle, indexes, types)
        return self.request(OpCode.RESOLUTION, request, transport, certified_by=certified_by)

    def verify_challenge(
        self, identity: ValueReference, nonce: bytes, digest: bytes, answer: bytes
    ) -> bool:
        """Opcode 201: ask this server, the home of ``identity``'s secret key, whether
        ``answer`` proves that key for ``nonce`` and the request digest. Raises
        HandleNotFound or InvalidCredential when the server has no such identity,
        AuthenticationError for any other answer."""
        request = VerifyChallengeRequest(identity.handle, identity.index, nonce, digest, answer)
        reply = self.request(OpCode.VERIFY_RESPONSE, request, "tcp")
        return verified(reply, f"{self.host}:{self.port}", identity)

    def server_key(self) -> bytes:
        """This server's public key, from its own site information (``GET_SITE_INFO``):
        the server at this port, else the site's only one."""
        reply = self.site_info()
        if not isinstance(reply.body, SiteInfoResponse):
            raise RemoteProtocolError("the server did not send its site information")
        servers = reply.body.site.servers
        for server in servers:
            if any(i.port == self.port for i in server.interfaces) and server.public_key:
                return server.public_key
        if len(servers) == 1 and servers[0].public_key:
            return servers[0].public_key
        raise RemoteProtocolError("the server's site information names no key for it")

    def site_info(self, transport: Transport = "auto") -> Message:
        return self.request(OpCode.GET_SITE_INFO, SiteInfoRequest(), transport)

    def request(
        self,
        opcode: OpCode,
        body: Body,
        transport: Transport = "auto",
        flags: OpFlag = OpFlag.NONE,
        certified_by: bytes | None = None,
    ) -> Message:
        """Send an anonymous request; ``flags`` are added to the ones always set.

        ``certified_by``: the server's public key (Handle key encoding, as in its
        HS_SITE): the request sets CERTIFY and an answer not signed by that key is
        refused with RemoteProtocolError.
        """
        if certified_by is not None:
            flags |= OpFlag.CERTIFY
        msg = anonymous_request(opcode, body, flags)
        data = encode_message(msg)
        if transport in ("auto", "udp"):
            try:
                reply = self._udp(data, msg.request_id, certified_by)
            except ServerUnreachable:
                if transport == "udp":
                    raise
            else:
                if not reply.truncated or transport == "udp":
                    return reply
        return self._tcp(data, msg.request_id, certified_by)

    def authenticated(
        self, opcode: OpCode, body: Body, credentials: Credentials, flags: OpFlag = OpFlag.NONE
    ) -> list[Message]:
        """Send a request that needs an identity over TCP and answer its challenge.

        Returns the reply messages: one, or several for a listing sent in parts. The
        challenge is answered only if its digest is the digest of our own request, so
        a server cannot get us to sign something else. In a session the server
        challenges only the first such request; if it has forgotten the session, the
        request is sent again outside it.
        """
        session = self.session
        request = Message(
            opcode=opcode,
            body=body,
            request_id=secrets.randbits(31),
            op_flags=flags,
            session_id=session.number if session is not None else 0,
        )
        data = _in_session(request, session)
        with self._tcp_connection() as sock:
            sock.sendall(data)
            framer = MessageFramer()
            replies = self._replies(sock, framer, request.request_id, session)
            reply = next(replies)
            if reply.response_code == ResponseCode.SESSION_TIMEOUT and session is not None:
                self.session = None
                return self.authenticated(opcode, body, credentials, flags)
            if reply.response_code != ResponseCode.AUTHENTICATION_NEEDED:
                return _whole(reply, replies)
            challenge = reply.body
            if not isinstance(challenge, ChallengeResponse):
                raise RemoteProtocolError("server sent a challenge without a nonce")
            ours = digest_request(data, reply.version)
            if ours.algorithm != challenge.request_digest.algorithm or not hmac.compare_digest(
                ours.digest, challenge.request_digest.digest
            ):
                raise RemoteProtocolError("the challenge is not for our request; not signing")
            answer = Message(
                opcode=OpCode.CHALLENGE_RESPONSE,
                body=credentials.answer(challenge, reply.version),
                request_id=secrets.randbits(31),
                session_id=reply.session_id,
                op_flags=flags,
            )
            sock.sendall(_in_session(answer, session))
            answered = self._replies(sock, framer, answer.request_id, session)
            return _whole(next(answered), answered)

    @contextmanager
    def _tcp_connection(self) -> Iterator[socket.socket]:
        """A TCP connection to the server; timeouts and socket errors, also while it is
        in use, become ServerUnreachable."""
        _family, addr = self._address(socket.SOCK_STREAM)
        try:
            with socket.create_connection(addr, timeout=self.timeout) as sock:
                yield sock
        except TimeoutError as exc:
            raise ServerTimedOut(
                f"no TCP answer from {self.host}:{self.port} in {self.timeout}s"
            ) from exc
        except OSError as exc:
            raise ServerUnreachable(f"{self.host}:{self.port}/tcp: {exc.strerror or exc}") from exc

    @staticmethod
    def _replies(
        sock: socket.socket,
        framer: MessageFramer,
        request_id: int,
        session: ClientSession | None = None,
    ) -> Iterator[Message]:
        while True:
            while (frame := framer.next_message()) is not None:
                reply = matching(frame, request_id, session=session)
                if reply is not None:
                    yield reply
            chunk = sock.recv(65536)
            if not chunk:
                raise RemoteProtocolError("server closed the connection without answering")
            framer.receive_data(chunk)

    def _address(self, kind: socket.SocketKind) -> tuple[socket.AddressFamily, tuple[str, int]]:
        try:
            info = socket.getaddrinfo(self.host, self.port, type=kind)[0]
        except socket.gaierror as exc:
            raise ServerUnreachable(f"cannot resolve host {self.host}: {exc.strerror}") from exc
        host, port = info[4][0], info[4][1]
        return info[0], (str(host), int(port))

    def _udp(self, data: bytes, request_id: int, key: bytes | None = None) -> Message:
        family, addr = self._address(socket.SOCK_DGRAM)
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect(addr)
            per_try = self.timeout / self.udp_attempts
            for _ in range(self.udp_attempts):
                try:
                    sock.send(data)
                except OSError as exc:  # the refusal of the last datagram, reported now
                    raise ServerUnreachable(f"{self.host}:{self.port}/udp: {exc.strerror}") from exc
                deadline = time.monotonic() + per_try
                while (left := deadline - time.monotonic()) > 0:
                    sock.settimeout(left)
                    try:
                        packet = sock.recv(65535)
                    except TimeoutError:
                        break
                    except OSError as exc:
                        raise ServerUnreachable(
                            f"{self.host}:{self.port}/udp: {exc.strerror}"
                        ) from exc
                    reply = matching(packet, request_id, key)
                    if reply is not None:
                        return reply
        raise ServerTimedOut(f"no UDP answer from {self.host}:{self.port} in {self.timeout}s")

    def _tcp(self, data: bytes, request_id: int, key: bytes | None = None) -> Message:
        with self._tcp_connection() as sock:
            sock.sendall(data)
            framer = MessageFramer()
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    raise RemoteProtocolError("server closed the connection without answering")
                framer.receive_data(chunk)
                if framer.buffered > MAX_MESSAGE_LENGTH + 20:
                    raise RemoteProtocolError("server sent an oversized answer")
                while (frame := framer.next_message()) is not None:
                    reply = matching(frame, request_id, key)
                    if reply is not None:
                        return reply


def anonymous_request(opcode: OpCode, body: Body, flags: OpFlag = OpFlag.NONE) -> Message:
    """A request needing no identity, with a fresh request id; ``flags`` are added to
    the ones always set."""
    return Message(
        opcode=opcode,
        body=body,
        request_id=secrets.randbits(31),
        # PUBLIC_ONLY: an anonymous read wants the public values, not a challenge.
        op_flags=OpFlag.RETURN_REQUEST_DIGEST | OpFlag.PUBLIC_ONLY | flags,
    )


def verified(reply: Message, server: str, identity: ValueReference) -> bool:
    """What a server's answer to verify-challenge (opcode 201) says: whether the
    answer proves the identity's secret key. HandleNotFound or InvalidCredential when
    the server has no such identity, AuthenticationError for any other answer."""
    body = reply.body
    if reply.response_code == ResponseCode.SUCCESS and isinstance(body, VerifyChallengeResponse):
        return body.valid
    if reply.response_code in (ResponseCode.HANDLE_NOT_FOUND, ResponseCode.INVALID_CREDENTIAL):
        raise answer_error(reply)
    raise AuthenticationError(
        f"{server} could not verify {identity.index}:{identity.handle}: {_said(reply)}"
    )


def answer_error(reply: Message) -> IdnodeError:
    """The exception a server's unsuccessful answer stands for (the one our own
    server raised to give it): a Referral with the values it refers to, else the
    class of its response code (:func:`idnode.errors.error_for`)."""
    body = reply.body
    if isinstance(body, ReferralResponse):
        return Referral(f"ask the site of {body.handle}", body.handle, body.values)
    return error_for(reply.response_code, _said(reply))


def _said(reply: Message) -> str:
    """What a failure reply says: its message, else its response code's name."""
    body = reply.body
    return body.message if isinstance(body, ErrorResponse) else reply.response_code.name


def _whole(first: Message, rest: Iterator[Message]) -> list[Message]:
    """``first`` and, while the last one says CONTINUOUS, the parts that follow it."""
    parts = [first]
    while parts[-1].op_flags & OpFlag.CONTINUOUS:
        parts.append(next(rest))
    return parts


def listed(replies: list[Message]) -> list[str]:
    """The handles of a (possibly multi-part) listing reply."""
    handles: list[str] = []
    for reply in replies:
        if isinstance(reply.body, ListHandlesResponse):
            handles.extend(reply.body.handles)
    return handles


_SESSION_ERRORS = frozenset(code for code in ResponseCode if 500 <= code <= 505)


def _in_session(request: Message, session: ClientSession | None) -> bytes:
    """``request`` encoded, MACed with the session's key when there is a session."""
    if session is None:
        return encode_message(request)
    return encode_message(request, session_key=session.key, session_counter=session.next_counter())


def matching(
    packet: bytes,
    request_id: int,
    key: bytes | None = None,
    *,
    session: ClientSession | None = None,
) -> Message | None:
    """The decoded reply if it answers our request; stray or garbled packets are
    ignored. With ``key``, an answer not signed by it is refused; in ``session``, one
    not MACed with its key (except a session error: the server may not know the key)."""
    try:
        reply = decode_message(packet)
    except RemoteProtocolError:
        return None
    if reply.request_id != request_id or not reply.is_response:
        return None
    if (
        session is not None
        and reply.response_code not in _SESSION_ERRORS
        and session_counter_of(packet, reply, session.key) is None
    ):
        raise RemoteProtocolError(
            f"the answer is not MACed with the key of session {session.number}"
        )
    if key is not None and not _signed_by(packet, reply, key):
        raise RemoteProtocolError(
            "the answer is not signed by the server's key (asked for with CERTIFY)"
        )
    return reply


def _signed_by(packet: bytes, reply: Message, key: bytes) -> bool:
    from idnode.auth.signatures import signed_by

    return signed_by(packet, reply, key)
