"""Sessions, kept in storage so that every worker process knows them.

HTTP API sessions give a client a nonce to sign once and a session id to send after.
Handle protocol sessions (opcodes 400-402) agree on a key by Diffie-Hellman; every
message in one carries a MAC and a counter, which is accepted once.

The national system's HTTP APIs (SNMS, IDHub) log in once and then send a bearer
token. Ours are JWTs (HS256, as theirs) signed with the node's token secret, naming
the identity, when they expire (24 hours, as those APIs document) and a random id:
a token not signed by this node is refused without a database read, and one that is
must still have its id stored, so deleting that row revokes it in every worker at
once. IDHub's challenge is a nonce kept per identity handle for a few minutes and
taken by the first answer.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import secrets

import jwt

from idnode.auth import replay
from idnode.auth.challenges import NONCE_SIZE
from idnode.auth.identity import check_answer, public_key_of
from idnode.auth.session_ciphers import CipherName, SessionCipher, wrap_key
from idnode.auth.session_keys import server_agreement
from idnode.auth.signatures import check_signature
from idnode.domain import StoredSession
from idnode.errors import (
    AuthenticationFailed,
    AuthenticationNeeded,
    InvalidCredential,
    RemoteProtocolError,
    SessionFailed,
    SessionMessageRejected,
    SessionTimeout,
)
from idnode.handle.messages import PROTOCOL_VERSION, KeyExchange, SessionSetupRequest
from idnode.handle.values import ValueReference
from idnode.names import handle_key, validate_handle
from idnode.service.challenges import ID_PREFIX as HANDLE_CHALLENGE
from idnode.service.core import ANONYMOUS, Caller, ServiceCore

__all__ = ["Sessions"]

# Ids of Handle protocol sessions in the sessions table, of bearer tokens, of IDHub
# and Handle challenges: none of them is an HTTP API session.
_HANDLE_SESSION = "handle:"
_TOKEN = "token:"  # noqa: S105 - the id prefix of stored tokens, not a secret
_CHALLENGE = "challenge:"
#: Web console sessions: carried by a cookie, never an Authorization header.
CONSOLE_SESSION = "console:"
_NOT_HTTP_SESSIONS = (_HANDLE_SESSION, _TOKEN, _CHALLENGE, HANDLE_CHALLENGE, CONSOLE_SESSION)


def _account_mark(core: ServiceCore, name: str) -> bytes:
    """What a token issued on account ``name`` remembers of it: its name and a digest
    of its stored password hash, which a new password (a new salt) changes."""
    account = core.storage.get_account(name)
    if account is None:
        return b""
    digest = hashlib.sha256(account.password.encode("utf-8")).digest()[:16]
    return name.encode("utf-8") + b"\0" + digest


class Sessions:
    # An HTTP session lasts this long from when it was opened; authenticating does not
    # extend it.
    SESSION_SECONDS = 3600.0
    # A Handle protocol session lasts what its client asks, at most this long (the
    # deployed default), from when it was set up.
    HANDLE_SESSION_SECONDS = 86_400.0

    def __init__(self, core: ServiceCore, token_secret: bytes = b"") -> None:
        self._core = core
        self._token_secret = token_secret or secrets.token_bytes(32)

    # -- HTTP API sessions -----------------------------------------------------------

    def open_session(self, caller: Caller = ANONYMOUS) -> StoredSession:
        """A new session with a fresh nonce; already authenticated as ``caller``."""
        storage = self._core.storage
        now = self._core.wall_clock()
        storage.purge_sessions(now)
        session = StoredSession(
            secrets.token_urlsafe(24),
            secrets.token_bytes(NONCE_SIZE),
            caller.identity,
            now + self.SESSION_SECONDS,
        )
        storage.put_session(session)
        return session

    def session(self, session_id: str) -> StoredSession:
        """The open session ``session_id``; AuthenticationNeeded when unknown or expired."""
        # A Handle protocol session is proven by the MAC of each message, which HTTP
        # requests do not carry: its id names nothing here.
        session = None
        if not session_id.startswith(_NOT_HTTP_SESSIONS):
            session = self._core.storage.get_session(session_id)
        if session is None or session.expires <= self._core.wall_clock():
            raise AuthenticationNeeded(
                "the session is unknown or has expired; open a new one with POST /api/sessions"
            )
        return session

    def session_caller(self, session_id: str, origin: str) -> Caller:
        return Caller(self.session(session_id).identity, origin)

    def authenticate_session(
        self,
        session_id: str,
        identity: ValueReference,
        auth_type: str,
        answer: bytes,
        client_nonce: bytes,
        origin: str,
    ) -> Caller:
        """Prove ``identity`` in a session: ``answer`` signs its nonce + ``client_nonce``.

        The session is then authenticated as that identity until it expires.
        """
        session = self.session(session_id)
        if not 8 <= len(client_nonce) <= 1024:
            raise AuthenticationFailed("cnonce must be 8 to 1024 bytes")
        values = self._core.values_of(identity.handle)
        proven = check_answer(
            values, identity, auth_type, answer, session.nonce, client_nonce, PROTOCOL_VERSION
        )
        self._bind(session, proven)
        return Caller(proven, origin)

    def bind_session(self, session_id: str, caller: Caller) -> StoredSession:
        """Authenticate an open session as ``caller`` (proven some other way)."""
        return self._bind(self.session(session_id), caller.identity)

    def _bind(self, session: StoredSession, identity: ValueReference | None) -> StoredSession:
        # A session already bound to this identity is not written again: a request
        # that authenticates in its session, then binds it, costs one write, not two.
        if session.identity != identity:
            session = dataclasses.replace(session, identity=identity)
            self._core.storage.put_session(session)
        return session

    def close_session(self, session_id: str) -> None:
        """End an HTTP API session; an id naming anything else (a Handle session, a
        token, a challenge) ends nothing, as :meth:`session` finds nothing there."""
        if not session_id.startswith(_NOT_HTTP_SESSIONS):
            self._core.storage.delete_session(session_id)

    # -- web console sessions -----------------------------------------------------------

    #: A console session is refreshed (a write) at most once a minute, or twice in its
    #: idle time when that is shorter.
    CONSOLE_REFRESH_SECONDS = 60.0

    def open_console_session(self, caller: Caller, idle_seconds: float, account: str = "") -> str:
        """A console session signed in as ``caller``, ending after ``idle_seconds``
        without a request; its id is the cookie's value (and so a secret). ``account``:
        the account signed in with; the session ends when it is removed or given a new
        password, as the tokens of its logins do."""
        if caller.identity is None:
            raise AuthenticationNeeded("a console session needs a signed-in identity")
        now = self._core.wall_clock()
        self._core.storage.purge_sessions(now)
        session_id = CONSOLE_SESSION + secrets.token_urlsafe(32)
        mark = _account_mark(self._core, account) if account else b""
        session = StoredSession(session_id, mark, caller.identity, now + idle_seconds)
        self._core.storage.put_session(session)
        return session_id

    def console_caller(
        self, session_id: str, idle_seconds: float, origin: str
    ) -> tuple[Caller, bool]:
        """Who the console session ``session_id`` is signed in as, and whether it is
        due a :meth:`refresh_console_session` (a write, so the caller makes it on the
        writer); AuthenticationNeeded once the session has ended."""
        session = None
        if session_id.startswith(CONSOLE_SESSION):
            session = self._core.storage.get_session(session_id)
        now = self._core.wall_clock()
        if session is None or session.expires <= now or session.identity is None:
            raise AuthenticationNeeded("the console session has ended; sign in again")
        if session.nonce:  # signed in with an account: is it still the same?
            name = session.nonce.partition(b"\0")[0].decode("utf-8", "replace")
            if not hmac.compare_digest(_account_mark(self._core, name), session.nonce):
                raise AuthenticationNeeded("the account was removed or changed; sign in again")
        due = session.expires - now < idle_seconds - min(
            self.CONSOLE_REFRESH_SECONDS, idle_seconds / 2
        )
        return Caller(session.identity, origin), due

    def refresh_console_session(self, session_id: str, idle_seconds: float) -> None:
        """Keep a console session open for ``idle_seconds`` from now (if still open)."""
        storage = self._core.storage
        session = None
        if session_id.startswith(CONSOLE_SESSION):
            session = storage.get_session(session_id)
        now = self._core.wall_clock()
        if session is not None and session.expires > now:
            storage.put_session(dataclasses.replace(session, expires=now + idle_seconds))

    def close_console_session(self, session_id: str) -> None:
        if session_id.startswith(CONSOLE_SESSION):
            self._core.storage.delete_session(session_id)

    # -- bearer tokens of the SNMS and IDHub APIs -------------------------------------

    TOKEN_SECONDS = 86_400.0
    CHALLENGE_SECONDS = 300.0

    def issue_token(self, caller: Caller, account: str = "") -> tuple[str, float]:
        """A bearer token acting as ``caller``'s identity, and when it expires (epoch
        seconds). ``account``: the account whose login it stands for; the token ends
        when that account is removed or given a new password."""
        if caller.identity is None:
            raise AuthenticationNeeded("a token is issued to an identity only")
        storage = self._core.storage
        now = self._core.wall_clock()
        storage.purge_sessions(now)
        token_id = secrets.token_urlsafe(16)
        expires = now + self.TOKEN_SECONDS
        identity = caller.identity
        claims = {
            "sub": f"{identity.index}:{identity.handle}",
            "iat": int(now),
            "exp": int(expires),
            "jti": token_id,
        }
        issued_on = _account_mark(self._core, account) if account else b""
        storage.put_session(StoredSession(_TOKEN + token_id, issued_on, identity, expires))
        return jwt.encode(claims, self._token_secret, algorithm="HS256"), expires

    def _token_id(self, token: str) -> str:
        """The id of a token this node signed and that has not expired."""
        try:
            claims = jwt.decode(
                token,
                self._token_secret,
                algorithms=["HS256"],
                options={"verify_exp": False, "require": ["sub", "exp", "jti"]},
            )
        except jwt.PyJWTError as exc:
            raise AuthenticationNeeded("the token is not one this node issued") from exc
        if not isinstance(claims["exp"], int) or claims["exp"] <= self._core.wall_clock():
            raise AuthenticationNeeded("the token has expired; log in again")
        return str(claims["jti"])

    def token_caller(self, token: str, origin: str) -> Caller:
        """Who a bearer token stands for; AuthenticationNeeded if it is unknown or
        expired, or if what it was issued on is gone: the account (removed, or added
        again with a new password) or, for a key login, that key value."""
        core = self._core
        session = core.storage.get_session(_TOKEN + self._token_id(token))
        if session is None or session.expires <= core.wall_clock() or session.identity is None:
            raise AuthenticationNeeded("the token was revoked or has expired; log in again")
        if session.nonce:
            name = session.nonce.partition(b"\0")[0].decode("utf-8", "replace")
            if not hmac.compare_digest(_account_mark(core, name), session.nonce):
                raise AuthenticationNeeded("the account was removed or changed; log in again")
        elif session.identity.index:
            try:
                public_key_of(core.values_of(session.identity.handle), session.identity)
            except InvalidCredential as exc:
                raise AuthenticationNeeded(f"the key is gone: {exc.message}") from exc
        return Caller(session.identity, origin)

    def revoke_token(self, token: str) -> bool:
        """End a token at once, in every worker; False if it had ended already."""
        return self._core.storage.delete_session(_TOKEN + self._token_id(token))

    def idhub_challenge(self, handle: str) -> str:
        """A nonce for ``handle``'s keys to sign (IDHub's challenge), replacing any
        unanswered one; only a handle held here with a public key gets one."""
        validate_handle(handle)
        values = self._core.values_of(handle)
        public_key_of(values, ValueReference(handle, 0))  # InvalidCredential if none
        nonce = secrets.token_hex(16)
        now = self._core.wall_clock()
        session = StoredSession(
            _CHALLENGE + handle_key(handle), nonce.encode(), None, now + self.CHALLENGE_SECONDS
        )
        self._core.storage.put_session(session)
        return nonce

    def idhub_verify(self, handle: str, signature: str, origin: str) -> Caller:
        """The caller proven by ``signature`` (base64) of the last nonce given to
        ``handle``: SHA256withRSA, or SM2 with SM3, by one of its HS_PUBKEY values.
        The nonce is used up whatever the outcome."""
        validate_handle(handle)
        storage = self._core.storage
        key = _CHALLENGE + handle_key(handle)
        session = storage.get_session(key)
        if session is None or not storage.delete_session(key):
            raise AuthenticationFailed(f"no challenge is open for {handle}; ask for one first")
        if session.expires <= self._core.wall_clock():
            raise AuthenticationFailed("the challenge has expired; ask for a new one")
        try:
            answer = base64.b64decode("".join(signature.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise AuthenticationFailed("the signature is not base64") from exc
        values = self._core.values_of(handle) or ()
        for value in sorted(values, key=lambda v: v.index):
            if value.type.upper() != "HS_PUBKEY":
                continue
            for hash_name in (b"SHA256", b"SM3"):
                if check_signature(
                    value.data, session.nonce, hash_name, answer, (handle.encode("utf-8"),)
                ):
                    return Caller(ValueReference(handle, value.index), origin)
        raise AuthenticationFailed(f"the signature is not by a key of {handle}")

    # -- Handle protocol sessions (opcodes 400-402) ------------------------------------

    def open_handle_session(
        self, setup: SessionSetupRequest, version: tuple[int, int]
    ) -> tuple[int, bytes]:
        """A new session: its number and the server's half of the key agreement.

        Only Diffie-Hellman (what deployed clients use by default) is offered, and only
        from protocol 2.7, whose messages are authenticated with HMAC-SHA256.
        """
        if setup.mode != KeyExchange.DIFFIE_HELLMAN:
            raise SessionFailed(
                f"key exchange mode {setup.mode} is not offered; use Diffie-Hellman (4)"
            )
        if version < (2, 7):
            raise SessionFailed("sessions need protocol 2.7 or later (HMAC-SHA256)")
        answer, key = server_agreement(setup.public_key)
        storage = self._core.storage
        now = self._core.wall_clock()
        storage.purge_sessions(now)
        lasts = self.HANDLE_SESSION_SECONDS
        if setup.timeout > 0:
            lasts = min(float(setup.timeout), lasts)
        number = secrets.randbelow(2**31 - 1) + 1
        storage.put_session(StoredSession(_HANDLE_SESSION + str(number), key, None, now + lasts))
        return number, answer

    def cipher_session(
        self, setup: SessionSetupRequest, cipher: CipherName
    ) -> tuple[SessionCipher, bytes]:
        """A fresh session key for an IDIS encrypted session (mode 3), and that key
        encrypted with the public key in the handle value the setup names.

        The key is not stored: it belongs to the TCP connection that asked (the SDKs
        choose the session id themselves, so ids mean nothing across connections).
        Anyone may ask; only the key's holder can read the answer.
        """
        if setup.mode != KeyExchange.CIPHER_HDL:
            raise SessionFailed(f"key exchange mode {setup.mode} is not offered here")
        who = ValueReference(setup.exchange_handle, setup.exchange_index)
        try:
            public_key = public_key_of(self._core.values_of(who.handle), who)
        except InvalidCredential as exc:
            raise SessionFailed(f"no key to encrypt a session key with: {exc.message}") from exc
        made = SessionCipher.generate(cipher)
        try:
            return made, wrap_key(public_key, made)
        except RemoteProtocolError as exc:
            raise SessionFailed(f"{who.index}:{who.handle}: {exc.message}") from exc

    def handle_session(self, number: int) -> StoredSession:
        """The open Handle protocol session ``number``; SessionTimeout if none."""
        session = self.find_handle_session(number)
        if session is None:
            raise SessionTimeout(f"session {number} is unknown or has expired; set up a new one")
        return session

    def find_handle_session(self, number: int) -> StoredSession | None:
        """The open Handle protocol session ``number``, None if there is none."""
        session = self._core.storage.get_session(_HANDLE_SESSION + str(number))
        if session is None or session.expires <= self._core.wall_clock():
            return None
        return session

    def accept_session_message(self, session: StoredSession, counter: int) -> None:
        """Count a message of ``session`` (its MAC checked by the caller);
        SessionMessageRejected if its counter was seen before."""
        storage = self._core.storage
        state = (session.counter, session.seen)
        while True:
            new = replay.accept(state, counter)
            if new is None:
                raise SessionMessageRejected(
                    f"message {counter} of session {session.session_id} was seen before"
                )
            if storage.advance_session(session.session_id, state, new):
                return
            # Another worker counted a message meanwhile: start from what it stored.
            current = storage.get_session(session.session_id)
            if current is None:
                raise SessionTimeout(f"session {session.session_id} ended meanwhile")
            state = (current.counter, current.seen)

    def bind_handle_session(self, number: int, caller: Caller) -> None:
        """The session has proven ``caller`` (by a challenge answered inside it)."""
        self._bind(self.handle_session(number), caller.identity)

    def close_handle_session(self, number: int) -> None:
        self._core.storage.delete_session(_HANDLE_SESSION + str(number))
