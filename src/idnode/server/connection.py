"""What one TCP connection remembers between its requests.

China's IDIS SDKs log in on a connection (opcode 2001 answered by a challenge, or
opcode 2000 with a password): the session id the client chose in the envelope then
stands, on that connection only, for the identity it proved. A :class:`Connection`
holds those logins and the challenges of logins under way. It is never shared: a
session id proven on one connection means nothing on another, whichever client
sends it.

An encrypted session (key exchange mode 3) is the connection's too. Once a session id
has a key, only messages sealed with it are taken under that id; setting up a new key
ends the login made under the old one; and a message that does not decrypt and parse
ends the session (key and login): with CBC and no MAC, answering each broken message
differently would let a man in the middle decrypt by trial.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from idnode.auth.challenges import ChallengeStore
from idnode.auth.session_ciphers import SessionCipher
from idnode.service import Caller

__all__ = ["Connection"]


class Connection:
    #: Logins kept per connection (an SDK logs in once per connection; a client
    #: logging in again and again pushes out its oldest).
    MAX_LOGINS = 16
    #: Failed password logins a connection may make; later ones are refused unchecked.
    MAX_FAILED_LOGINS = 5

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._logins: OrderedDict[int, Caller] = OrderedDict()
        #: Challenges of logins under way, by the session id the client chose, and of
        #: requests sealed in this connection's encrypted sessions.
        self.challenges = ChallengeStore(clock, capacity=self.MAX_LOGINS)
        #: Keys of the encrypted sessions set up on this connection, by session id.
        self._ciphers: OrderedDict[int, SessionCipher] = OrderedDict()
        self.failed_logins = 0

    def caller(self, session_id: int) -> Caller | None:
        """Who a login under ``session_id`` proved on this connection, if one did."""
        return self._logins.get(session_id)

    def cipher(self, session_id: int) -> SessionCipher | None:
        """The key of the encrypted session ``session_id`` on this connection."""
        return self._ciphers.get(session_id)

    def encrypt_session(self, session_id: int, cipher: SessionCipher) -> None:
        """Messages under ``session_id`` are sealed with ``cipher`` from now on; a
        login made under that id before no longer holds."""
        self.log_out(session_id)
        self._ciphers[session_id] = cipher
        self._ciphers.move_to_end(session_id)
        while len(self._ciphers) > self.MAX_LOGINS:
            # Its login goes with it: left alone, it would hold for clear messages.
            oldest, _ = self._ciphers.popitem(last=False)
            self.log_out(oldest)

    def end_session(self, session_id: int) -> None:
        """Forget the session's key and login (a message in it did not decrypt)."""
        self._ciphers.pop(session_id, None)
        self.log_out(session_id)

    def log_out(self, session_id: int) -> None:
        """A new login under ``session_id`` begins: the old one, if any, ends first,
        so that a failed attempt leaves the connection anonymous."""
        self._logins.pop(session_id, None)

    def log_in(self, session_id: int, caller: Caller) -> None:
        self._logins[session_id] = caller
        self._logins.move_to_end(session_id)
        while len(self._logins) > self.MAX_LOGINS:
            self._logins.popitem(last=False)
