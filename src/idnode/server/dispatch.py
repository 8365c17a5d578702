"""Handle protocol requests to responses, as bytes to bytes. No sockets here.

The UDP and TCP servers hand every datagram or frame to :meth:`Dispatcher.handle`
and send back what it returns. A message that cannot be parsed gets a
PROTOCOL_ERROR reply when its envelope and header can at least be read (so the client
can match it to its request), and is dropped otherwise; a failure inside the service
gets an ERROR reply and is logged. Nothing a client sends stops the server.

Requests that need an identity (the writes and the handle listing) are answered with
a challenge (402: nonce, request digest, a fresh session id) and remembered in
storage, so that an answer reaching another worker process finds it; the client's
answer (opcode 200, same session id) is checked against the identity's key and the
remembered request is then served as that identity. A resolution that does
not set PUBLIC_ONLY, for a handle with values that are not public, is challenged the
same way; with PUBLIC_ONLY (what deployed clients send by default) it is answered
with the public values at once.

Sessions (opcodes 400-402) spare a client that challenge on every request. A session
setup agrees on a key by Diffie-Hellman and stores the session (in the database, so
that every worker process knows it). Each later message in the session carries the
session's number in its envelope and a MAC under its key, with a counter that may
not repeat. The first request that needs an identity is challenged as above, the
challenge carrying the session's number; once answered, the session stands for that
identity and its MACed requests are served without a challenge (the answer itself
may come MACed or not: Handle.Net's clients do not MAC it). Replies to MACed
requests are MACed with the session key as well. A message that names a session but
carries no MAC is served anonymously (and challenged as usual).

Theory of operation. Serving a request is written once, as a generator
(:meth:`Dispatcher._serve`) that yields each service :class:`Call` it needs and is
sent the result (or has the error thrown in), and returns the reply's bytes. Each call
says how it may wait: a database read, a database write, or other servers. Two
drivers run it: :meth:`Dispatcher.handle` makes every call in turn and returns the
reply (tests, and anything that may block); :meth:`Dispatcher.receive`, for the
servers on an event loop, makes local reads at once and returns the reply when that
was all (a resolution here, the common case), and otherwise a coroutine that makes
the rest through :class:`~idnode.service.offloop.OffLoop`: writes on the writer,
other reads on a reader thread, questions to other servers with the resolver's asyncio
driver. Nothing that waits runs on the event loop.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import struct
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, cast

from idnode.auth.session_ciphers import (
    CIPHERS,
    CipherName,
    SessionCipher,
    is_encrypted,
    seal,
    session_id_of,
    unseal,
)
from idnode.auth.throttle import FailureLimiter
from idnode.errors import (
    AuthenticationFailed,
    AuthenticationNeeded,
    IdnodeError,
    InvalidSessionKey,
    LocalProtocolError,
    NotResponsible,
    OperationNotSupported,
    ProtocolError,
    Referral,
    ServerBusy,
    SessionFailed,
    SessionTimeout,
)
from idnode.handle.codec import (
    ENVELOPE_SIZE,
    HEADER_SIZE,
    Signer,
    decode_message,
    digest_request,
    encode_message,
    session_counter_of,
)
from idnode.handle.codes import OpCode, OpFlag, ResponseCode
from idnode.handle.messages import (
    OPTIONALLY_DIGESTED,
    PROTOCOL_VERSION,
    AddValueRequest,
    Body,
    ChallengeAnswer,
    ChallengeResponse,
    CreateHandleRequest,
    CreateHandleResponse,
    DeleteHandleRequest,
    ErrorResponse,
    GenericResponse,
    KeyExchange,
    ListHandlesRequest,
    ListHandlesResponse,
    LoginRequest,
    Message,
    ModifyValueRequest,
    PasswordLoginRequest,
    PrefixRequest,
    ReferralResponse,
    RemoveValueRequest,
    ResolutionRequest,
    ResolutionResponse,
    SessionSetupRequest,
    SessionSetupResponse,
    SessionTerminateRequest,
    SiteInfoRequest,
    SiteInfoResponse,
    Truncated,
    VerifyChallengeRequest,
    VerifyChallengeResponse,
)
from idnode.handle.values import ValueReference
from idnode.names import NA_PREFIX, as_handle, handle_key, split_handle
from idnode.server.answers import AnswerCache
from idnode.server.connection import Connection
from idnode.service import ANONYMOUS, Caller, NodeService
from idnode.service.offloop import OffLoop

__all__ = ["Call", "Dispatcher", "Wait"]

log = logging.getLogger("idnode.handle")

# Flags a response carries over from its request.
_ECHOED_FLAGS = OpFlag.RETURN_REQUEST_DIGEST | OpFlag.PUBLIC_ONLY | OpFlag.CERTIFY
# How long a client may treat a response as fresh (header expiration field).
_RESPONSE_LIFETIME = 43_200
_REPLY_FIELDS = struct.Struct(">BBBBII")
_RETURN_DIGEST = int(OpFlag.RETURN_REQUEST_DIGEST)
_CERTIFY = int(OpFlag.CERTIFY)
_PUBLIC_ONLY = int(OpFlag.PUBLIC_ONLY)
_ECHOED_INT = int(_ECHOED_FLAGS)
_LOGIN_OVER_TCP = "log in over TCP: a login holds for its connection"
_NEEDS_IDENTITY = frozenset(
    {
        OpCode.CREATE_HANDLE,
        OpCode.DELETE_HANDLE,
        OpCode.ADD_VALUE,
        OpCode.REMOVE_VALUE,
        OpCode.MODIFY_VALUE,
        OpCode.LIST_HANDLES,
        OpCode.HOME_NA,
        OpCode.UNHOME_NA,
        OpCode.LOGIN_ID_SYSTEM,
    }
)
# Handles per listing message, so each stays well under the 256 KiB message limit.
_LIST_CHUNK = 1000


class Wait(enum.Enum):
    """How a service call may wait, which decides where an event loop makes it."""

    READ = "read"  #: a lookup in the database: made at once where reads are local
    SCAN = "scan"  #: a read as long as the data is (a listing): always off the loop
    WRITE = "write"  #: on the database, writing (its lock, the disk)
    UPSTREAM = "upstream"  #: on other servers
    COMPUTE = "compute"  #: on the CPU for long (a password's slow hash): off the loop


class Call:
    """One service operation a request needs: ``run`` makes it (blocking);
    ``run_async``, where there is one, makes the same on an event loop without a
    thread (questions to other servers; a resolution's read of its record)."""

    # A plain class: one is made per request, and a frozen dataclass costs more.
    __slots__ = ("at_once", "run", "run_async", "wait")

    def __init__(
        self,
        wait: Wait,
        run: Callable[[], Any],
        run_async: Callable[[], Awaitable[Any]] | None = None,
        at_once: bool = False,
    ) -> None:
        self.wait = wait
        self.run = run
        self.run_async = run_async
        #: ``run`` will not wait (a read the storage answers from memory), so an event
        #: loop may make it itself.
        self.at_once = at_once


#: Serving one request: yields service calls, is sent their results, returns the reply.
Steps = Generator[Call, Any, bytes | None]
_NOTHING = object()


@dataclasses.dataclass(frozen=True, slots=True)
class _InSession:
    """The Handle protocol session a request came in: its number and key, the
    counter under the request's MAC (None: the request carried no MAC, so it proves
    nothing), and the identity the session has proven, if any."""

    number: int
    key: bytes
    counter: int | None
    identity: ValueReference | None

    @property
    def maced(self) -> bool:
        return self.counter is not None

    @property
    def proven(self) -> bool:
        return self.maced and self.identity is not None


class Dispatcher:
    def __init__(
        self,
        service: NodeService,
        *,
        udp_max_response: int = 512,
        clock: Callable[[], float] = time.time,
        signer: Signer | None = None,
        offloop: OffLoop | None = None,
        anonymous_reads: str = "public",
        session_cipher: str = "sm4",
        session_setups_per_minute: float = 60.0,
        challenges_per_minute: float = 600.0,
        answer_cache_bytes: int = 0,
    ) -> None:
        """``signer``: signs answers to requests that set CERTIFY (with the private
        key whose public half is in this server's HS_SITE); without one they go
        unsigned. ``offloop``: where :meth:`receive` makes what may wait; without
        one, :meth:`receive` makes everything at once, as :meth:`handle` does.
        ``anonymous_reads``: what an anonymous resolution without PUBLIC_ONLY of a
        record with values that are not public gets: ``public``, its public values;
        ``challenge``, a challenge (Handle.Net's way). Inside a MACed Handle session,
        whose client can answer one, it is challenged either way.
        ``session_cipher``: the cipher of IDIS encrypted sessions (``sm4``, ``aes``).
        ``session_setups_per_minute``: session set-ups one address may make (each a
        key agreement or key encryption, tens of milliseconds of CPU); more get
        SERVER_TOO_BUSY until the allowance refills. ``challenges_per_minute``: the
        same for challenges kept in storage (a write each). ``answer_cache_bytes``:
        room for answers kept to be sent again (:mod:`idnode.server.answers`), used
        by :meth:`receive` where it has an ``offloop``; 0 keeps none."""
        self._service = service
        self._signer = signer
        self._udp_max = udp_max_response
        self._clock = clock
        self._reply_flags: dict[int, OpFlag] = {}
        self._offloop = offloop
        self._setups = FailureLimiter(session_setups_per_minute)
        self._challenges_issued = FailureLimiter(challenges_per_minute)
        if anonymous_reads not in ("public", "challenge"):
            raise ValueError(f"anonymous_reads is public or challenge, not {anonymous_reads!r}")
        self._challenge_anonymous = anonymous_reads == "challenge"
        if session_cipher not in CIPHERS:
            raise ValueError(f"no session cipher {session_cipher!r}; one of {sorted(CIPHERS)}")
        self._session_cipher: CipherName = session_cipher
        self.answers = (
            AnswerCache(
                service.reads,
                max_bytes=answer_cache_bytes,
                lifetime=_RESPONSE_LIFETIME,
                clock=clock,
                reads_at_once=offloop.resolves_at_once,
            )
            if answer_cache_bytes > 0 and offloop is not None
            else None
        )

    # -- the two drivers -----------------------------------------------------------

    def handle(
        self,
        data: bytes,
        *,
        udp: bool,
        peer: object = None,
        connection: Connection | None = None,
    ) -> bytes | None:
        """The reply to one request message, or None when no reply should be sent;
        every service call is made here, however long it waits.

        ``peer`` is the client's address, recorded with writes in the audit log;
        ``connection``, the TCP connection's state (IDIS logins; None over UDP).
        """
        given = self._steps(data, udp, peer, connection)
        if given is None or type(given) is bytes:
            return given
        steps = cast(Steps, given)
        result: Any = _NOTHING
        try:
            while True:
                call = next(steps) if result is _NOTHING else steps.send(result)
                while True:
                    try:
                        result = call.run()
                        break
                    except Exception as exc:  # the request's own error: its reply says so
                        call = steps.throw(exc)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def receive(
        self,
        data: bytes,
        *,
        udp: bool,
        peer: object = None,
        connection: Connection | None = None,
    ) -> bytes | Coroutine[Any, Any, bytes | None] | None:
        """:meth:`handle` for a server on an event loop: the reply when it needed only
        local reads, else a coroutine that makes the rest of it off the loop."""
        answers = self.answers
        if answers is not None and (connection is None or connection.caller(0) is None):
            key = answers.key(data, udp)
            if key is not None:
                try:
                    kept = answers.answer(key, data)
                    asked = None if kept is not None else answers.basis(key, data)
                except Exception:  # storage failing, say: the ordinary way answers that
                    log.debug("answer cache skipped", exc_info=True)
                    return self._receive(data, udp, peer, connection)
                if kept is not None:
                    return kept
                reply = self._receive(data, udp, peer, connection)
                if asked is not None and type(reply) is bytes:
                    answers.keep(key, asked, reply)
                return reply
        return self._receive(data, udp, peer, connection)

    def _receive(
        self, data: bytes, udp: bool, peer: object, connection: Connection | None
    ) -> bytes | Coroutine[Any, Any, bytes | None] | None:
        given = self._steps(data, udp, peer, connection)
        if given is None or type(given) is bytes:
            return given
        steps = cast(Steps, given)
        offloop = self._offloop
        result: Any = _NOTHING
        try:
            while True:
                call = next(steps) if result is _NOTHING else steps.send(result)
                while (
                    offloop is None
                    or call.at_once
                    or (call.wait is Wait.READ and offloop.inline_reads)
                ):
                    try:
                        result = call.run()
                        break
                    except Exception as exc:
                        call = steps.throw(exc)
                else:
                    return self._finish(steps, call, offloop)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def _finish(self, steps: Steps, call: Call, offloop: OffLoop) -> bytes | None:
        """The rest of :meth:`receive`, from ``call`` on, each call where it belongs."""
        try:
            while True:
                try:
                    if call.run_async is not None:
                        result = await call.run_async()
                    elif call.wait is Wait.WRITE:
                        result = await offloop.write(call.run)
                    else:
                        result = await offloop.read(call.run)
                except Exception as exc:
                    call = steps.throw(exc)
                else:
                    call = steps.send(result)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def _steps(
        self, data: bytes, udp: bool, peer: object, connection: Connection | None
    ) -> Steps | bytes | None:
        cipher = None
        if connection is not None and len(data) >= ENVELOPE_SIZE:
            cipher, refusal = _session_cipher(data, connection)
            if refusal is not None:
                return self._reply_by_envelope(data, OpCode(0), refusal)
        try:
            if cipher is not None:
                data = unseal(data, cipher)
            request = decode_message(data)
        except ProtocolError as exc:
            if cipher is None:
                return self._reply_to_garbage(data, exc)
            # However it failed (padding, or what decrypted), the answer is the same
            # and the session ends: no oracle for a man in the middle to question.
            assert connection is not None
            number = session_id_of(data)
            connection.end_session(number)
            broken = SessionFailed(f"session {number} ended: a message in it could not be read")
            return self._reply_by_envelope(data, OpCode(0), broken)
        if request.is_response:
            return None  # never answer a response: that is how reflection loops start
        steps = self._serve(request, data, udp, peer, connection)
        return steps if cipher is None else _sealed(steps, cipher)

    # -- serving a request, call by call ---------------------------------------------

    def _serve(
        self,
        request: Message,
        data: bytes,
        udp: bool,
        peer: object,
        connection: Connection | None = None,
    ) -> Steps:
        original, original_raw = request, data
        session: _InSession | None = None
        try:
            if isinstance(request.body, SessionSetupRequest):
                if udp:  # a stored session per spoofable datagram, a long answer: no
                    return self._reply(request, data, ResponseCode.SUCCESS, Truncated())
                self._count(self._setups, peer, "session set-ups")
                return (yield from self._set_up_session(request, request.body, data, connection))
            caller = ANONYMOUS
            if request.session_id or connection is not None:  # not for anonymous UDP
                caller, session = yield from self._caller(
                    request, data, _origin(udp, peer), connection
                )
            if request.opcode in _NEEDS_IDENTITY and (
                # A key login proves its own identity, whoever the connection was.
                not caller.authenticated or type(request.body) is LoginRequest
            ):
                return (yield from self._challenge(request, data, session, connection, peer))
            if isinstance(request.body, ChallengeAnswer):
                original, original_raw, caller = yield from self._answer(
                    request, request.body, udp=udp, peer=peer, connection=connection
                )
            if type(original.body) is ResolutionRequest:  # most requests: one step less
                asked = original.body
                if asked.token:
                    caller = yield from self._token_caller(asked.token, caller, udp, peer)
                challengeable = session is not None and session.maced
                # A bare prefix names its prefix handle, as IDIS SDKs ask for it.
                handle = as_handle(asked.handle)
                record = yield self._resolution(
                    original, handle, asked.indexes, asked.types, caller, challengeable
                )
                body: Body = ResolutionResponse(record.handle, record.values)
            else:
                body = yield from self._execute(
                    original, caller, session, connection, _origin(udp, peer)
                )
            code = ResponseCode.SUCCESS
        except AuthenticationNeeded as exc:
            code, body = exc.response_code, ErrorResponse(exc.message)
        except IdnodeError as exc:
            code, body = _failure(original, exc)
        except Exception:
            log.exception("internal error serving opcode %s", int(request.opcode))
            code, body = ResponseCode.ERROR, ErrorResponse("internal server error")
        if code == ResponseCode.AUTHENTICATION_NEEDED and original is request:
            # A read that asked for non-public values: prove who you are first. Made
            # here, not in the handler above, as issuing it is a write that may fail too.
            return (yield from self._challenged(request, data, session, connection, peer, udp))
        return self._answered(original, original_raw, request, code, body, session, udp)

    def _challenged(
        self,
        request: Message,
        raw: bytes,
        session: _InSession | None,
        connection: Connection | None,
        peer: object,
        udp: bool,
    ) -> Generator[Call, Any, bytes]:
        """The challenge to ``request``, or the reply saying why none was made."""
        try:
            return (yield from self._challenge(request, raw, session, connection, peer))
        except IdnodeError as exc:
            code, body = _failure(request, exc)
        except Exception:
            log.exception("internal error challenging opcode %s", int(request.opcode))
            code, body = ResponseCode.ERROR, ErrorResponse("internal server error")
        return self._answered(request, raw, request, code, body, session, udp)

    def _answered(
        self,
        request: Message,
        raw: bytes,
        answered: Message,
        code: ResponseCode,
        body: Body,
        session: _InSession | None,
        udp: bool,
    ) -> bytes:
        """The reply to ``request``, sent back to ``answered`` (its challenge answer,
        if any): in parts if a listing is long, truncated if it is too long for UDP."""
        if isinstance(body, ListHandlesResponse) and len(body.handles) > _LIST_CHUNK:
            return self._listing(request, raw, answered, body, session)
        reply = self._reply(request, raw, code, body, answered=answered, session=session)
        if udp and len(reply) > self._udp_max:
            reply = self._reply(request, raw, code, Truncated(), answered=answered, session=session)
        return reply

    def _count(self, allowance: FailureLimiter, peer: object, what: str) -> None:
        """ServerBusy if ``peer``'s address has used up its ``allowance`` of ``what``;
        else this one is taken from it."""
        host = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        if allowance.blocked(host, self._clock()):
            raise ServerBusy(f"too many {what} from this address; try later")
        allowance.failed(host, self._clock())

    def _set_up_session(
        self,
        request: Message,
        setup: SessionSetupRequest,
        raw: bytes,
        connection: Connection | None,
    ) -> Generator[Call, Any, bytes]:
        version = min(request.version, PROTOCOL_VERSION)
        sessions = self._service.sessions
        if setup.mode == KeyExchange.CIPHER_HDL and connection is not None:
            # An IDIS encrypted session: its key is the connection's, under the
            # session id the client chose, and the answer goes back under it.
            name = self._session_cipher
            cipher, wrapped = yield Call(Wait.READ, lambda: sessions.cipher_session(setup, name))
            connection.encrypt_session(request.session_id, cipher)
            body = SessionSetupResponse(KeyExchange.CIPHER_HDL, wrapped)
            return self._reply(request, raw, ResponseCode.SUCCESS, body)
        number, answer = yield Call(
            Wait.WRITE, lambda: sessions.open_handle_session(setup, version)
        )
        body = SessionSetupResponse(KeyExchange.DIFFIE_HELLMAN, answer)
        named = dataclasses.replace(request, session_id=number)
        return self._reply(request, raw, ResponseCode.SUCCESS, body, answered=named)

    def _caller(
        self, request: Message, raw: bytes, origin: str, connection: Connection | None
    ) -> Generator[Call, Any, tuple[Caller, _InSession | None]]:
        """Who sends ``request``, and the Handle protocol session it names if any: the
        identity an IDIS login proved on its connection under its session id (even 0,
        which CAICT's SDK sends), else the session's."""
        logged_in = _logged_in(request, connection)
        if logged_in is not None:
            return logged_in, None
        if not request.session_id:
            return ANONYMOUS, None
        session = yield from self._session_of(request, raw)
        if session is not None and session.proven:
            return Caller(session.identity, origin), session
        return ANONYMOUS, session

    def _session_of(self, request: Message, raw: bytes) -> Generator[Call, Any, _InSession | None]:
        """The session ``request`` names; its MAC and counter checked if it has one."""
        if request.opcode == OpCode.CHALLENGE_RESPONSE and not request.credential:
            return None  # its session id names the challenge it answers
        sessions = self._service.sessions
        number = request.session_id
        if not request.credential:
            # It proves nothing: in a session of ours it is challenged there; naming
            # no session of ours (an IDIS client's own session id), it is anonymous.
            known = yield Call(Wait.READ, lambda: sessions.find_handle_session(number))
            return None if known is None else _InSession(number, known.nonce, None, None)
        stored = yield Call(Wait.READ, lambda: sessions.handle_session(number))
        counter = session_counter_of(raw, request, stored.nonce)
        if counter is None:
            raise InvalidSessionKey(
                f"the message's MAC does not check with the key of session {number}"
            )
        yield Call(Wait.WRITE, lambda: sessions.accept_session_message(stored, counter))
        return _InSession(number, stored.nonce, counter, stored.identity)

    def _challenge(
        self,
        request: Message,
        raw: bytes,
        session: _InSession | None,
        connection: Connection | None = None,
        peer: object = None,
    ) -> Generator[Call, Any, bytes]:
        version = min(request.version, PROTOCOL_VERSION)
        digest = digest_request(raw, version)
        if isinstance(request.body, LoginRequest):
            # An IDIS login: challenged under the session id the client chose, and
            # remembered by its connection only (every SDK client starts at 10001).
            if connection is None:
                raise OperationNotSupported(_LOGIN_OVER_TCP)
            if not request.session_id:
                raise SessionFailed("a login needs a session id (not 0) for its requests")
            connection.log_out(request.session_id)
            challenge = connection.challenges.issue(
                request, raw, digest, session_id=request.session_id
            )
        elif connection is not None and connection.cipher(request.session_id) is not None:
            # It came sealed in an IDIS encrypted session, which is the connection's:
            # so is its challenge, under the session's id, so that the answer comes
            # sealed in it and so does the reply; its clear text stays in memory.
            challenge = connection.challenges.issue(
                request, raw, digest, session_id=request.session_id
            )
        else:
            # Kept in storage: the answer may reach another worker (a new connection).
            # Each is a write, which anyone may cause: so many per address, no more.
            self._count(self._challenges_issued, peer, "challenges")
            shared, in_session = self._service.challenges, None
            binds = False
            if session is not None:
                in_session, binds = session.number, session.maced
            challenge = yield Call(
                Wait.WRITE,
                lambda: shared.issue(
                    request, raw, digest, session_id=in_session, binds_session=binds
                ),
            )
        return self._encode_reply(
            request,
            ResponseCode.AUTHENTICATION_NEEDED,
            ChallengeResponse(challenge.nonce, digest),
            self._flags_for(request.op_flags) | OpFlag.RETURN_REQUEST_DIGEST,
            session_id=challenge.session_id,
            session=session,
        )

    def _answer(
        self,
        answer: Message,
        body: ChallengeAnswer,
        *,
        udp: bool,
        peer: object,
        connection: Connection | None = None,
    ) -> Generator[Call, Any, tuple[Message, bytes, Caller]]:
        logins = connection.challenges if connection is not None else None
        if logins is not None and answer.session_id in logins:
            challenge = logins.take(answer.session_id)
        else:
            shared, number = self._service.challenges, answer.session_id
            challenge = yield Call(Wait.WRITE, lambda: shared.take(number))
        login = challenge.request.body
        if isinstance(login, LoginRequest) and (
            handle_key(login.handle),
            login.index,
        ) != (handle_key(body.identity_handle), body.identity_index):
            # Checked before the signature: it costs nothing, a signature check does.
            raise AuthenticationFailed(
                f"asked to log in as {login.index}:{login.handle}, answered as "
                f"{body.identity_index}:{body.identity_handle}"
            )
        version = min(challenge.request.version, PROTOCOL_VERSION)
        auth = self._service.auth
        nonce, digest, origin = challenge.nonce, challenge.digest.digest, _origin(udp, peer)
        # Off the loop: checking a signature (SM2 especially) is CPU a forger can buy.
        caller = yield Call(
            Wait.COMPUTE, lambda: auth.answer_held_here(body, nonce, digest, version, origin)
        )
        if caller is None:  # an identity held elsewhere: its home is asked
            caller = yield Call(
                Wait.UPSTREAM,
                lambda: auth.answer_held_elsewhere(body, nonce, digest, origin),
                lambda: auth.answer_held_elsewhere_async(body, nonce, digest, origin),
            )
        if challenge.binds_session:
            # The answer itself need not be MACed (Handle.Net's is not): the request
            # it answers for was, and the answer is bound to that request's digest.
            sessions, number = self._service.sessions, challenge.session_id
            yield Call(Wait.WRITE, lambda: sessions.bind_handle_session(number, caller))
        if isinstance(login, LoginRequest):
            assert connection is not None  # a login's challenge is its connection's
            connection.log_in(challenge.session_id, caller)
        return challenge.request, challenge.raw, caller

    def _token_caller(
        self, token: bytes, caller: Caller, udp: bool, peer: object
    ) -> Generator[Call, Any, Caller]:
        """Who an IDIS identity token names, once checked (the caller of a recursive
        lookup, passed along by the node that made it); ``caller`` if it is empty or
        the request has proven an identity itself."""
        if caller.authenticated:
            return caller
        auth, origin = self._service.auth, _origin(udp, peer)
        named = yield Call(Wait.READ, lambda: auth.token_held_here(token, origin))
        if named is None:  # an identity held elsewhere: its key is resolved there
            named = yield Call(
                Wait.UPSTREAM,
                lambda: auth.token_held_elsewhere(token, origin),
                lambda: auth.token_held_elsewhere_async(token, origin),
            )
        assert isinstance(named, Caller)
        return named

    def _listing(
        self,
        request: Message,
        raw: bytes,
        answered: Message,
        body: ListHandlesResponse,
        session: _InSession | None,
    ) -> bytes:
        """A long listing as several messages, each but the last flagged CONTINUOUS."""
        chunks = [
            body.handles[i : i + _LIST_CHUNK] for i in range(0, len(body.handles), _LIST_CHUNK)
        ]
        parts = []
        for n, chunk in enumerate(chunks):
            more = OpFlag.CONTINUOUS if n < len(chunks) - 1 else OpFlag.NONE
            parts.append(
                self._reply(
                    request,
                    raw,
                    ResponseCode.SUCCESS,
                    ListHandlesResponse(chunk),
                    answered=answered,
                    extra_flags=more,
                    session=session,
                )
            )
        return b"".join(parts)

    def truncated(self, data: bytes) -> bytes | None:
        """A truncated answer ("ask again over TCP") to a request, without serving it.

        For rate limiting: the reply carries no data, so it costs nothing to compute
        and cannot amplify. None when the request cannot be read or is a response.
        """
        try:
            request = decode_message(data)
        except ProtocolError:
            return None
        if request.is_response:
            return None
        return self._reply(request, data, ResponseCode.SUCCESS, Truncated())

    def _execute(
        self,
        request: Message,
        caller: Caller,
        session: _InSession | None,
        connection: Connection | None = None,
        origin: str = "unknown",
    ) -> Generator[Call, Any, Body]:
        """The body answering ``request``, from the service calls it needs."""
        writes, flags = self._service.writes, request.op_flags
        match request.body:
            case LoginRequest() | PasswordLoginRequest():
                return (yield from self._log_in(request, connection, origin))
            case PrefixRequest(handle):
                prefixes, prefix = self._service.prefixes, _prefix_of(handle)
                if request.opcode == OpCode.HOME_NA:
                    yield Call(Wait.WRITE, lambda: prefixes.home_prefix_as(prefix, caller))
                else:
                    yield Call(Wait.WRITE, lambda: prefixes.unhome_prefix_as(prefix, caller))
            case SessionTerminateRequest():
                if session is None or not session.maced:
                    raise InvalidSessionKey("only a message MACed in a session can end it")
                sessions, number = self._service.sessions, session.number
                yield Call(Wait.WRITE, lambda: sessions.close_handle_session(number))
            case CreateHandleRequest(handle, values):
                mint = bool(flags & OpFlag.MINT_NEW_SUFFIX)
                overwrite = bool(flags & OpFlag.OVERWRITE)
                made = yield Call(
                    Wait.WRITE,
                    lambda: writes.create_handle(
                        handle, values, caller, overwrite=overwrite, mint_suffix=mint
                    ),
                )
                return CreateHandleResponse(made if mint else None)
            case DeleteHandleRequest(handle):
                yield Call(Wait.WRITE, lambda: writes.delete_handle(handle, caller))
            case AddValueRequest(handle, values):
                yield Call(Wait.WRITE, lambda: writes.add_values(handle, values, caller))
            case ModifyValueRequest(handle, values):
                yield Call(Wait.WRITE, lambda: writes.modify_values(handle, values, caller))
            case RemoveValueRequest(handle, indexes):
                yield Call(Wait.WRITE, lambda: writes.remove_values(handle, indexes, caller))
            case _:
                return (yield from self._query(request, caller))
        return GenericResponse()

    def _log_in(
        self, request: Message, connection: Connection | None, origin: str
    ) -> Generator[Call, Any, Body]:
        """The answer to an IDIS login. A key login (2001) has been proven by its
        challenge's answer already; a password login (2000) is checked here."""
        if not isinstance(request.body, PasswordLoginRequest):
            return GenericResponse()  # the login is its connection's now
        if connection is None:
            raise OperationNotSupported(_LOGIN_OVER_TCP)
        connection.log_out(request.session_id)
        if connection.failed_logins >= connection.MAX_FAILED_LOGINS:
            # Each check costs a slow hash: a connection gets a few, not a stream.
            raise AuthenticationFailed("too many failed logins on this connection")
        accounts = self._service.accounts
        user, password = request.body.user, request.body.password
        try:
            proven = yield Call(Wait.COMPUTE, lambda: accounts.log_in(user, password, origin))
        except AuthenticationFailed:
            connection.failed_logins += 1
            raise
        connection.log_in(request.session_id, proven)
        # CAICT's SDK reads the answer as a resolution's and uses nothing in it.
        return ResolutionResponse(user, ())

    def _query(self, request: Message, caller: Caller) -> Generator[Call, Any, Body]:
        """The answer to a request that changes nothing."""
        service = self._service
        match request.body:
            case ResolutionRequest(handle, indexes, types):
                record = yield self._resolution(request, handle, indexes, types, caller)
                return ResolutionResponse(record.handle, record.values)
            case SiteInfoRequest():
                return SiteInfoResponse(service.reads.site_info())
            case ListHandlesRequest(handle) if request.opcode == OpCode.LIST_HANDLES:
                writes, prefix = service.writes, _prefix_of(handle)
                handles, _ = yield Call(Wait.SCAN, lambda: writes.list_handles(prefix, caller))
                return ListHandlesResponse(tuple(handles))
            case ListHandlesRequest():
                homed = yield Call(Wait.READ, service.reads.homed_prefixes)
                return ListHandlesResponse(tuple(f"{NA_PREFIX}/{p}" for p in homed))
            case VerifyChallengeRequest(handle, index, nonce, digest, signed):
                identity = ValueReference(handle, index)
                version = min(request.version, PROTOCOL_VERSION)
                auth = service.auth
                valid = yield Call(
                    Wait.READ,
                    lambda: auth.verify_challenge(identity, nonce, digest, signed, version),
                )
                return VerifyChallengeResponse(valid)
        raise OperationNotSupported(
            f"opcode {int(request.opcode)} ({request.opcode.name}) is not supported"
        )

    def _resolution(
        self,
        request: Message,
        handle: str,
        indexes: tuple[int, ...],
        types: tuple[str, ...],
        caller: Caller,
        challengeable: bool = False,
    ) -> Call:
        """The call resolving ``handle``. An anonymous request without PUBLIC_ONLY is
        read with PUBLIC_ONLY unless it may be challenged (``challengeable``: it came
        MACed in a session) or the node challenges such reads (``anonymous_reads``)."""
        reads = self._service.reads
        if reads.upstream_resolves(handle):
            return Call(
                Wait.UPSTREAM,
                lambda: reads.resolve_upstream(handle, indexes, types),
                lambda: reads.resolve_upstream_async(handle, indexes, types),
            )
        public_only = bool(int(request.op_flags) & _PUBLIC_ONLY) or (
            not caller.authenticated and not challengeable and not self._challenge_anonymous
        )
        offloop = self._offloop
        return Call(
            Wait.READ,
            lambda: reads.resolve(
                handle, indexes=indexes, types=types, caller=caller, public_only=public_only
            ),
            # Off the loop, a resolution reads as OffLoop.resolve does (PostgreSQL: the
            # cache, or an asynchronous read), not on a reader thread.
            None
            if offloop is None
            else lambda: offloop.resolve(
                handle, indexes=indexes, types=types, caller=caller, public_only=public_only
            ),
            offloop is not None and offloop.resolves_at_once(handle, public_only=public_only),
        )

    def _reply(
        self,
        request: Message,
        raw: bytes,
        code: ResponseCode,
        body: Body,
        *,
        answered: Message | None = None,
        extra_flags: OpFlag = OpFlag.NONE,
        session: _InSession | None = None,
    ) -> bytes:
        """The response to ``request``, addressed to ``answered`` (the challenge answer
        that carried it, if any), MACed when it came MACed in ``session``."""
        version = min(request.version, PROTOCOL_VERSION)
        flags = self._flags_for(request.op_flags)
        if extra_flags:
            flags |= extra_flags
        if int(flags) & _RETURN_DIGEST and isinstance(body, OPTIONALLY_DIGESTED):
            body = dataclasses.replace(body, request_digest=digest_request(raw, version))
        target = answered or request
        try:
            return self._encode_reply(
                request,
                code,
                body,
                flags,
                request_id=target.request_id,
                session_id=target.session_id,
                session=session,
            )
        except LocalProtocolError as exc:
            if isinstance(body, ErrorResponse):
                raise
            log.warning("answer to opcode %s could not be encoded: %s", request.opcode, exc)
            return self._reply(
                request,
                raw,
                ResponseCode.ERROR,
                ErrorResponse(exc.message),
                answered=answered,
                session=session,
            )

    def _encode_reply(
        self,
        request: Message,
        code: ResponseCode,
        body: Body,
        flags: OpFlag,
        *,
        request_id: int | None = None,
        session_id: int | None = None,
        session: _InSession | None = None,
    ) -> bytes:
        signer = self._signer if int(request.op_flags) & _CERTIFY else None
        key, counter = None, 0
        if session is not None and session.counter is not None:  # it came MACed
            # The request's own counter: each reply's differs, as the client checks.
            key, counter, signer = session.key, session.counter, None
        return encode_message(
            Message(
                opcode=request.opcode,
                body=body,
                response_code=code,
                op_flags=flags,
                request_id=request.request_id if request_id is None else request_id,
                session_id=request.session_id if session_id is None else session_id,
                version=min(request.version, PROTOCOL_VERSION),
                suggested_version=PROTOCOL_VERSION,
                expiration=int(self._clock()) + _RESPONSE_LIFETIME,
            ),
            signer,
            session_key=key,
            session_counter=counter,
        )

    def _flags_for(self, request_flags: OpFlag) -> OpFlag:
        # Flag arithmetic on IntFlag members is slow; there are only a few combinations.
        echoed = int(request_flags) & _ECHOED_INT
        flags = self._reply_flags.get(echoed)
        if flags is None:
            flags = OpFlag(echoed) | OpFlag.AUTHORITATIVE
            self._reply_flags[echoed] = flags  # at most 2**3 keys: the echoed bits
        return flags

    def _reply_to_garbage(self, data: bytes, exc: ProtocolError) -> bytes | None:
        # Read just enough to address a reply; the lengths need not be trustworthy.
        if len(data) < ENVELOPE_SIZE + HEADER_SIZE:
            return None
        opcode, response_code = struct.unpack_from(">II", data, ENVELOPE_SIZE)
        if response_code != 0:
            return None
        return self._reply_by_envelope(data, OpCode(opcode), exc)

    def _reply_by_envelope(self, data: bytes, opcode: OpCode, exc: IdnodeError) -> bytes:
        """An error answer to a message of which only the envelope can be read."""
        major, minor, _, _, session_id, request_id = _REPLY_FIELDS.unpack_from(data)
        log.debug("refused a message from a client: %s", exc.message)
        return encode_message(
            Message(
                opcode=opcode,
                body=ErrorResponse(exc.message),
                response_code=exc.response_code,
                op_flags=OpFlag.AUTHORITATIVE,
                request_id=request_id,
                session_id=session_id,
                version=min((major, minor), PROTOCOL_VERSION),
                suggested_version=PROTOCOL_VERSION,
                expiration=int(self._clock()) + _RESPONSE_LIFETIME,
            )
        )


def _failure(request: Message, exc: IdnodeError) -> tuple[ResponseCode, Body]:
    """The response code and body an error is answered with."""
    if isinstance(exc, Referral):
        if request.op_flags & OpFlag.DO_NOT_REFER:
            return NotResponsible.response_code, ErrorResponse(exc.message)
        return exc.response_code, ReferralResponse(exc.handle, exc.values)
    return exc.response_code, ErrorResponse(exc.message)


def _session_cipher(
    data: bytes, connection: Connection
) -> tuple[SessionCipher | None, IdnodeError | None]:
    """The key a message on ``connection`` is sealed with, or why it is refused: an
    encrypted message naming no encrypted session of the connection, or a clear one
    naming a session that is encrypted (only its key holder may speak in it)."""
    number, encrypted = session_id_of(data), is_encrypted(data)
    cipher = connection.cipher(number) if number or encrypted else None
    if encrypted:
        if cipher is None:
            unknown = SessionTimeout(
                f"no encrypted session {number} on this connection: set one up first"
            )
            return None, unknown
        return cipher, None
    if cipher is not None and not _is_setup(data):
        return None, SessionFailed(f"session {number} is encrypted: seal its messages")
    return None, None


def _is_setup(data: bytes) -> bool:
    """Whether a clear message is a session setup (which may replace a session's key)."""
    opcode = data[ENVELOPE_SIZE : ENVELOPE_SIZE + 4]
    return int.from_bytes(opcode, "big") == OpCode.SESSION_SETUP


def _sealed(steps: Steps, cipher: SessionCipher) -> Steps:
    """``steps``, its reply encrypted for the session its request came in."""
    reply = yield from steps
    return None if reply is None else seal(reply, cipher)


def _logged_in(request: Message, connection: Connection | None) -> Caller | None:
    """The identity an IDIS login proved on this connection under the request's
    session id (such requests carry no MAC: a MACed one is a Handle session's)."""
    if connection is None or request.credential:
        return None
    return connection.caller(request.session_id)


def _prefix_of(handle: str) -> str:
    """The prefix a listing asks about: ``0.NA/<prefix>``, or the bare prefix."""
    if "/" in handle:
        prefix, suffix = split_handle(handle)
        if handle_key(prefix) == NA_PREFIX:
            return suffix
    return handle


def _origin(udp: bool, peer: object) -> str:
    """Where a request came from, as the audit log records it."""
    return f"{'udp' if udp else 'tcp'} {_address(peer)}"


def _address(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return "unknown"
