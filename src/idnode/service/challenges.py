"""Handle protocol challenges, kept where every worker process finds them.

A client may answer a challenge (opcode 200) on a new TCP connection or from a new
UDP socket, and SO_REUSEPORT may hand that to another worker than the one that
challenged. The challenge is therefore kept in storage, in the sessions table under
``handle-challenge:<session id>``, not in one worker's memory. Taking it reads the row
(an answer to nothing costs no write) and deletes it only if it still holds what was
read: the worker whose delete removed it serves the answer, so an answer is used
once across all workers (and all nodes on one PostgreSQL database), and a challenge
issued again under the same session id meanwhile is not taken in its place.

The row holds the nonce, whether answering proves a Handle session, and the
challenged request's bytes; the request and its digest are decoded again from those
bytes when the answer comes, as the codec is deterministic.

Each worker bounds the challenges it has issued and not yet seen expire: past
``capacity`` it deletes its oldest (whose client then gets "authentication timed
out"), as the in-memory store forgot its oldest, so a flood of requests that need an
identity cannot grow the table without bound.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict

from idnode.auth.challenges import NONCE_SIZE, Challenge
from idnode.domain import StoredSession
from idnode.errors import AuthenticationTimeout
from idnode.handle.codec import decode_message, digest_request
from idnode.handle.errors import ProtocolError
from idnode.handle.messages import PROTOCOL_VERSION, Message, RequestDigest
from idnode.service.core import ServiceCore

__all__ = ["ID_PREFIX", "HandleChallenges"]

#: The sessions table's ids of Handle challenges start so; none is an HTTP session.
ID_PREFIX = "handle-challenge:"

_BINDS_SESSION = 1  # the flag byte after the nonce


def _key(session_id: int) -> str:
    return f"{ID_PREFIX}{session_id}"


def _digest(request: Message, raw: bytes) -> RequestDigest:
    return digest_request(raw, min(request.version, PROTOCOL_VERSION))


class HandleChallenges:
    """Challenges issued and not yet answered, in storage: see the module's text."""

    def __init__(
        self, core: ServiceCore, *, lifetime: float = 60.0, capacity: int = 10_000
    ) -> None:
        self._core = core
        self._lifetime = lifetime
        self._capacity = capacity
        # What this worker issued, by session id: when each expires.
        self._issued: OrderedDict[int, float] = OrderedDict()
        self._lock = threading.Lock()  # issue and take run on the off-loop threads

    def issue(
        self,
        request: Message,
        raw: bytes,
        digest: RequestDigest,
        *,
        session_id: int | None = None,
        binds_session: bool = False,
    ) -> Challenge:
        """Keep ``request`` (``raw``, whose ``digest`` the client is sent) under a new
        session id with a new nonce; under ``session_id`` instead for a request inside
        a Handle protocol session, replacing a challenge still open in it."""
        storage = self._core.storage
        now = self._core.wall_clock()
        self._forget_old(now)
        if session_id is None:
            session_id = secrets.randbelow(2**31 - 1) + 1
            while storage.get_session(_key(session_id)) is not None:
                session_id = secrets.randbelow(2**31 - 1) + 1
        nonce = secrets.token_bytes(NONCE_SIZE)
        flags = bytes([_BINDS_SESSION if binds_session else 0])
        expires = now + self._lifetime
        storage.put_session(StoredSession(_key(session_id), nonce + flags + raw, None, expires))
        with self._lock:
            self._issued[session_id] = expires
            self._issued.move_to_end(session_id)
        return Challenge(session_id, nonce, request, raw, digest, expires, binds_session)

    def take(self, session_id: int) -> Challenge:
        """The challenge issued under ``session_id`` by any worker, deleted as it is
        handed out; AuthenticationTimeout if there is none or it has expired."""
        storage = self._core.storage
        key = _key(session_id)
        stored = storage.get_session(key)
        if stored is None or not storage.delete_session_if(key, stored.nonce):
            raise AuthenticationTimeout(
                f"no open challenge for session {session_id}: unknown, answered, or expired"
            )
        with self._lock:
            self._issued.pop(session_id, None)
        if stored.expires <= self._core.wall_clock():
            raise AuthenticationTimeout(f"the challenge for session {session_id} expired")
        kept = stored.nonce
        nonce, flags, raw = kept[:NONCE_SIZE], kept[NONCE_SIZE], kept[NONCE_SIZE + 1 :]
        try:
            request = decode_message(raw)
        except ProtocolError as exc:  # only if the stored row was damaged
            raise AuthenticationTimeout(
                f"the challenge for session {session_id} cannot be read back"
            ) from exc
        binds = bool(flags & _BINDS_SESSION)
        return Challenge(
            session_id, nonce, request, raw, _digest(request, raw), stored.expires, binds
        )

    def _forget_old(self, now: float) -> None:
        """Delete the challenges this worker issued past its capacity (oldest first);
        purge expired ones in one statement once any of its own has expired."""
        over: list[int] = []
        until: dict[int, float] = {}
        expired = False
        with self._lock:
            while self._issued:
                session_id, expires = next(iter(self._issued.items()))
                if expires <= now:
                    expired = True
                elif len(self._issued) < self._capacity:
                    break
                else:
                    over.append(session_id)
                    until[session_id] = expires
                self._issued.popitem(last=False)
        storage = self._core.storage
        if expired:
            storage.purge_sessions(now)
        for session_id in over:
            # Only the challenge this worker issued: another may have issued one since
            # under the same session id (a Handle session's).
            stored = storage.get_session(_key(session_id))
            if stored is not None and stored.expires == until[session_id]:
                storage.delete_session_if(_key(session_id), stored.nonce)
