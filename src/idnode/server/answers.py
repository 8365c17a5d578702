"""Answers to anonymous resolutions, kept encoded and sent again while still true.

Most of a node's traffic is the same few resolutions asked again and again, each
costing about 34 µs of Python to decode, look up, filter and encode (see
docs/performance.md). Here an answer is kept as the bytes sent, keyed by the bytes of
the request that determine it; a request asking the same again is answered by copying
them and patching the two fields that differ, its request id and the expiration.

What determines the answer, and so is in the key: the request's protocol version,
op flags, body (handle, indexes, types, any token) and credential, and whether it
came over UDP (which truncates long answers). What does not, and is left out: the
session id (only requests outside a session are answered here), the request id, the
site-info serial, the recursion count and the request's own expiration.

An answer is only ever sent again if what it was made from is still what is stored:
each time, the record is read without decoding anything (its handle as registered
and its values' bytes, :meth:`~idnode.service.reads.Reads.answer_basis`) and compared
with what the answer was made from, so a write committed by any process, on SQLite
or PostgreSQL, shows in the next answer, and so does a prefix no longer homed here.
On PostgreSQL the record is read from the record cache, and the answer is as fresh as
that cache (which a change notification clears); where the record is not in memory,
the request takes the ordinary way.

Only answers the ordinary way made as SUCCESS to an anonymous resolution outside any
session, without CERTIFY, RETURN_REQUEST_DIGEST or an identity token, are kept: those
are the same for whoever asks. The answers are counted in the statistics as the
ordinary way counts them.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from idnode.errors import IdnodeError
from idnode.handle.codec import ENVELOPE_SIZE, HEADER_SIZE
from idnode.handle.codes import OpCode, OpFlag, ResponseCode
from idnode.names import as_handle
from idnode.service.reads import Reads

__all__ = ["AnswerCache", "Basis", "KeptAnswers"]

_BODY = ENVELOPE_SIZE + HEADER_SIZE
_RESOLUTION: Final = int(OpCode.RESOLUTION).to_bytes(4, "big") + bytes(4)  # opcode, code 0
_SUCCESS: Final = int(ResponseCode.SUCCESS).to_bytes(4, "big")
#: Flags whose answers depend on more than the key (a signature, a digest of the
#: whole request, an encrypted answer).
_NOT_KEPT: Final = int(OpFlag.CERTIFY | OpFlag.RETURN_REQUEST_DIGEST | OpFlag.ENCRYPT)
_FLAGS = struct.Struct(">I")
_EXPIRATION = struct.Struct(">I")
_EXPIRATION_AT: Final = ENVELOPE_SIZE + 16  # after opcode, code, flags, serial, recursion
_NO_SESSION: Final = bytes(4)
#: Requests remembered as asked before (see :meth:`KeptAnswers.admit`).
_SEEN: Final = 65536
_ASKED_BEFORE_KEPT: Final = 2
_U32 = struct.Struct(">I")


Basis = tuple[str, str, bytes]  #: (prefix key, handle as stored, values wire)
_T = TypeVar("_T")


@dataclass(slots=True)
class _Kept(Generic[_T]):
    handle: str  #: as asked
    prefix_key: str
    stored_handle: str
    wire: bytes
    answer: _T
    size: int


class KeptAnswers(Generic[_T]):
    """Answers of one front end of one worker, whatever their form, each with what it
    was made from; at most ``max_bytes`` of them (the oldest kept go first). Used on
    the event loop's thread only."""

    def __init__(
        self, reads: Reads, *, max_bytes: int, reads_at_once: Callable[[str], bool]
    ) -> None:
        self._reads = reads
        self._max_bytes = max_bytes
        self._at_once = reads_at_once
        self._answers: dict[bytes, _Kept[_T]] = {}
        #: Digests of the keys asked lately, and how often.
        self._seen: dict[bytes, int] = {}
        self._bytes = 0
        self.hits = self.misses = 0

    def get(self, key: bytes) -> _T | None:
        """The answer kept for ``key``, if what it was made from is still stored."""
        kept = self._answers.get(key)
        if kept is None:
            self.misses += 1
            return None
        basis = self.basis(kept.handle)
        if basis is None or basis[2] != kept.wire or basis[1] != kept.stored_handle:
            self._drop(key)
            self.misses += 1
            return None
        self.hits += 1
        self._reads.answered_again(kept.prefix_key)
        return kept.answer

    def admit(self, key: bytes) -> bool:
        """Whether an answer about to be made for ``key`` is to be kept: the third
        time it is asked among the last ``_SEEN`` different requests. Keeping costs a
        second read of the record (see :meth:`basis`), about half an ordinary answer
        again; a request asked once or twice (a scan, a load spread over many
        identifiers) costs a digest and a dictionary entry instead."""
        # A digest: a hostile client's 256 KiB requests must not fill memory here.
        seen = hashlib.blake2b(key, digest_size=16).digest()
        asked = self._seen.get(seen, 0)
        if asked >= _ASKED_BEFORE_KEPT:
            return True
        self._seen[seen] = asked + 1
        if len(self._seen) > _SEEN:
            del self._seen[next(iter(self._seen))]
        return False

    def basis(self, handle: str) -> Basis | None:
        """What an answer for ``handle`` is made from, as stored now; None where it
        cannot be read at once or is not held here. Read before an answer to keep is
        made the ordinary way (so that a write between the two makes the kept answer
        look outdated, never the reverse), and before a kept one is sent again."""
        if not self._at_once(handle):
            return None
        return self._reads.answer_basis(handle)

    def keep(self, key: bytes, handle: str, basis: Basis, answer: _T, size: int) -> None:
        """Keep ``answer`` (``size`` bytes), made from ``basis`` for ``handle``."""
        prefix_key, stored_handle, wire = basis
        size += len(key) + len(wire) + 200  # and the objects around them
        if size > self._max_bytes // 16:
            return  # one answer may not push out most of the others
        self._drop(key)
        self._answers[key] = _Kept(handle, prefix_key, stored_handle, wire, answer, size)
        self._bytes += size
        while self._bytes > self._max_bytes:
            self._drop(next(iter(self._answers)))

    def __len__(self) -> int:
        return len(self._answers)

    def _drop(self, key: bytes) -> None:
        kept = self._answers.pop(key, None)
        if kept is not None:
            self._bytes -= kept.size


class AnswerCache:
    """Handle protocol answers kept (see the module): the request's key, the reply
    addressed to a new request."""

    def __init__(
        self,
        reads: Reads,
        *,
        max_bytes: int,
        lifetime: int,
        clock: Callable[[], float],
        reads_at_once: Callable[[str], bool],
    ) -> None:
        self.kept: KeptAnswers[bytes] = KeptAnswers(
            reads, max_bytes=max_bytes, reads_at_once=reads_at_once
        )
        self._lifetime = lifetime
        self._clock = clock

    @staticmethod
    def key(data: bytes, udp: bool) -> bytes | None:
        """The key of a request that may have a kept answer; None for one that may
        not (not a resolution, in a session, signed or digested answers wanted)."""
        if (
            len(data) < _BODY + 4
            or data[20:28] != _RESOLUTION
            or data[4:8] != _NO_SESSION
            or data[2] & 0xE0  # compressed, encrypted or truncated
            or _FLAGS.unpack_from(data, 28)[0] & _NOT_KEPT
            or int.from_bytes(data[16:20], "big") != len(data) - ENVELOPE_SIZE
        ):
            return None
        # Version; flags; body length; body and credential.
        return (b"U" if udp else b"T") + data[0:2] + data[28:32] + data[40:]

    def answer(self, key: bytes, data: bytes) -> bytes | None:
        """The kept answer for ``key``, addressed to ``data``, if it is still true."""
        kept = self.kept.get(key)
        if kept is None:
            return None
        reply = bytearray(kept)
        reply[8:12] = data[8:12]  # the request id
        _EXPIRATION.pack_into(reply, _EXPIRATION_AT, int(self._clock()) + self._lifetime)
        return bytes(reply)

    def basis(self, key: bytes, data: bytes) -> tuple[str, Basis] | None:
        """:meth:`KeptAnswers.basis` of the request ``data``, with its handle, if it
        is to be kept (:meth:`KeptAnswers.admit`)."""
        if not self.kept.admit(key):
            return None
        handle = _asked_handle(data)
        if handle is None:
            return None
        basis = self.kept.basis(handle)
        return None if basis is None else (handle, basis)

    def keep(self, key: bytes, asked: tuple[str, Basis], reply: bytes) -> None:
        """Keep ``reply``, made the ordinary way from ``asked`` (see :meth:`basis`),
        if it is an answer the same for anyone asking."""
        if reply[20:24] != _RESOLUTION[:4] or reply[24:28] != _SUCCESS:
            return
        if reply[4:8] != _NO_SESSION:
            return
        handle, basis = asked
        self.kept.keep(key, handle, basis, reply, len(reply))

    def __len__(self) -> int:
        return len(self.kept)


def _asked_handle(data: bytes) -> str | None:
    """The handle of a resolution that may be answered the same for anyone: no
    identity token in it (an IDIS SDK's token makes its caller someone) and no
    credential. Read from the bytes, as :func:`~idnode.handle.codec.decode_message`
    reads them, without decoding the rest; a request it would refuse is answered
    with an error, which is not kept, so this need not refuse it too."""
    try:
        end = _BODY + _U32.unpack_from(data, _BODY - 4)[0]
        size = _U32.unpack_from(data, _BODY)[0]
        handle = data[_BODY + 4 : _BODY + 4 + size].decode("utf-8")
        pos = _BODY + 4 + size
        pos += 4 + 4 * _U32.unpack_from(data, pos)[0]  # indexes
        types = _U32.unpack_from(data, pos)[0]
        pos += 4
        for _ in range(types):
            pos += 4 + _U32.unpack_from(data, pos)[0]
        if pos < end and _U32.unpack_from(data, pos)[0]:
            return None  # an identity token
        if data[end:] not in (b"", bytes(4)):
            return None  # a credential
        return as_handle(handle)
    except (struct.error, UnicodeDecodeError, IdnodeError):
        return None  # the ordinary way says what is wrong with it
