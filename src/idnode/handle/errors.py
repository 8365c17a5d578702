"""The root of idnode's exceptions, and the protocol errors the codec raises.

They live here, in the lowest layer, because the sans-I/O codec raises them and must
import nothing else of idnode. :mod:`idnode.errors` builds the rest of the hierarchy
on :class:`IdnodeError` and re-exports these, so everything else imports errors from
there.

Protocol errors split the way h11 splits them: :class:`RemoteProtocolError` when the
peer sent bytes we cannot accept, :class:`LocalProtocolError` when our own code asked
the codec to build something invalid (a bug, or bad input that should have been
validated earlier).
"""

from __future__ import annotations

from typing import ClassVar

from idnode.handle.codes import ResponseCode

__all__ = [
    "IdnodeError",
    "LocalProtocolError",
    "MessageTooLarge",
    "ProtocolError",
    "RemoteProtocolError",
]


class IdnodeError(Exception):
    """Root of every error idnode raises on purpose."""

    response_code: ClassVar[ResponseCode] = ResponseCode.ERROR
    #: Set only where HTTP has a more precise status than the response code gives.
    http_status: ClassVar[int | None] = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ProtocolError(IdnodeError):
    response_code = ResponseCode.PROTOCOL_ERROR


class RemoteProtocolError(ProtocolError):
    """The peer sent a message that does not follow the protocol."""


class MessageTooLarge(RemoteProtocolError):
    """A declared length is over the limit; the bytes are never read or allocated."""


class LocalProtocolError(ProtocolError):
    """We were asked to encode something the protocol cannot carry."""
