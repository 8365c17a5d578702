"""Challenges a server has issued and not yet seen answered. Sans-I/O: time is passed in.

Theory of operation. A request that needs an identity is not served; the server
answers 402 with a fresh random nonce and a session id, and remembers the request
under that id. The client answers (opcode 200) in the same session; :meth:`take`
hands back the remembered request exactly once, so a captured answer cannot be
replayed, and only within ``lifetime`` seconds. The store is bounded: when full, the
oldest challenge is forgotten (its client gets "authentication timed out").
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from idnode.errors import AuthenticationTimeout
from idnode.handle.messages import Message, RequestDigest

__all__ = ["NONCE_SIZE", "Challenge", "ChallengeStore"]

NONCE_SIZE = 16


@dataclass(frozen=True, slots=True)
class Challenge:
    session_id: int
    nonce: bytes
    request: Message
    raw: bytes
    digest: RequestDigest
    expires: float
    #: Answering it authenticates the Handle protocol session ``session_id`` names:
    #: the challenged request came MACed with that session's key.
    binds_session: bool = False


class ChallengeStore:
    def __init__(
        self, clock: Callable[[], float], *, lifetime: float = 60.0, capacity: int = 10_000
    ) -> None:
        self._clock = clock
        self._lifetime = lifetime
        self._capacity = capacity
        self._pending: OrderedDict[int, Challenge] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, session_id: int) -> bool:
        return session_id in self._pending

    def issue(
        self,
        request: Message,
        raw: bytes,
        digest: RequestDigest,
        *,
        session_id: int | None = None,
        binds_session: bool = False,
    ) -> Challenge:
        """Remember ``request`` (and its bytes) under a new session id with a new nonce;
        under ``session_id`` instead for a request inside a Handle protocol session
        (replacing a challenge still open in it)."""
        now = self._clock()
        while self._pending:
            oldest = next(iter(self._pending.values()))
            if oldest.expires > now and len(self._pending) < self._capacity:
                break
            self._pending.popitem(last=False)
        if session_id is None:
            session_id = secrets.randbelow(2**31 - 1) + 1
            while session_id in self._pending:
                session_id = secrets.randbelow(2**31 - 1) + 1
        else:
            self._pending.pop(session_id, None)
        challenge = Challenge(
            session_id,
            secrets.token_bytes(NONCE_SIZE),
            request,
            raw,
            digest,
            now + self._lifetime,
            binds_session,
        )
        self._pending[session_id] = challenge
        return challenge

    def take(self, session_id: int) -> Challenge:
        """The challenge issued under ``session_id``, forgotten as it is handed out."""
        challenge = self._pending.pop(session_id, None)
        if challenge is None:
            raise AuthenticationTimeout(
                f"no open challenge for session {session_id}: unknown, answered, or expired"
            )
        if challenge.expires <= self._clock():
            raise AuthenticationTimeout(f"the challenge for session {session_id} expired")
        return challenge
