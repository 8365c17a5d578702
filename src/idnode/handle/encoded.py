"""A sequence of handle values kept as their wire bytes, decoded only when looked at.

Resolution is the hot path of a node: a record comes out of storage in wire layout and
goes back onto the wire, usually with a few values left out (not public, not asked
for). Building a :class:`HandleValue` per value costs more than everything else in a
resolution together, so :class:`EncodedValues` scans just the fixed header of each
value (index, permissions, where the type is), selects on that, and re-joins byte
slices. Anything that iterates or indexes it gets ordinary HandleValue objects.
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Iterator, Sequence
from typing import overload

from idnode.handle.errors import RemoteProtocolError
from idnode.handle.values import (
    MAX_VALUES,
    HandleValue,
    Permission,
    ValueShape,
    read_values,
    type_matches,
    write_values,
)
from idnode.handle.wire import Reader, Writer

__all__ = ["EncodedValues"]

_U32 = struct.Struct(">I")
# index, timestamp, TTL type, TTL, permissions, length of the type string
_HEAD = struct.Struct(">IIBiBI")
_PUBLIC_READ = int(Permission.PUBLIC_READ)
_ADMIN_READ = int(Permission.ADMIN_READ)

# (start, end, index, permissions, type_start, type_end) of one value in the wire bytes
_Span = tuple[int, int, int, int, int, int]


_unpack_u32 = _U32.unpack_from


def _scan(wire: bytes) -> tuple[list[_Span], bool]:
    """Locate every value, and tell whether each has a timestamp; RemoteProtocolError
    if the layout does not hold together."""
    size = len(wire)
    if size < 4:
        raise RemoteProtocolError("value list is shorter than its count")
    (count,) = _U32.unpack_from(wire, 0)
    if count > MAX_VALUES or count * 26 > size - 4:
        raise RemoteProtocolError(f"value count {count} does not fit the data")
    spans: list[_Span] = []
    stamped = True
    pos = 4
    try:
        for _ in range(count):
            start = pos
            index, timestamp, ttl_type, _ttl, perms, type_len = _HEAD.unpack_from(wire, pos)
            stamped = stamped and timestamp != 0
            if index == 0 or ttl_type > 1:
                raise RemoteProtocolError("value has index 0 or an unknown TTL type")
            type_start = pos + 18
            type_end = type_start + type_len
            data_end = type_end + 4 + _unpack_u32(wire, type_end)[0]
            (refs,) = _unpack_u32(wire, data_end)
            pos = data_end + 4
            for _ in range(refs):
                pos += 4 + _unpack_u32(wire, pos)[0] + 4
            if pos > size:
                raise RemoteProtocolError("value runs past the end of the data")
            spans.append((start, pos, index, perms, type_start, type_end))
    except struct.error as exc:
        raise RemoteProtocolError("value runs past the end of the data") from exc
    if pos != size:
        raise RemoteProtocolError(f"{size - pos} bytes after the last value")
    return spans, stamped


class EncodedValues(Sequence[HandleValue]):
    """Values in Handle wire layout (a 4-byte count, then the values)."""

    __slots__ = ("_decoded", "_spans", "_stamped", "_wire")

    def __init__(self, wire: bytes) -> None:
        self._wire = wire
        self._spans, self._stamped = _scan(wire)
        self._decoded: tuple[HandleValue, ...] | None = None

    @classmethod
    def of(cls, values: Sequence[HandleValue]) -> EncodedValues:
        """``values`` as EncodedValues, encoding them unless they already are."""
        if isinstance(values, EncodedValues):
            return values
        w = Writer()
        write_values(w, values)
        return cls(w.getvalue())

    @classmethod
    def joined(cls, values: Sequence[tuple[ValueShape, bytes]]) -> EncodedValues:
        """The values made by ``ValueShape.wire``, each with its shape: located from
        what the shapes know, not scanned (a bulk load joins a million records)."""
        spans: list[_Span] = []
        stamped = True
        pos = 4
        for shape, wire in values:
            end = pos + len(wire)
            type_start = pos + 18  # after index, timestamp, TTL type, TTL, permissions, length
            spans.append(
                (pos, end, shape.index, shape.permissions, type_start, type_start + shape.type_size)
            )
            stamped = stamped and wire[4:8] != b"\0\0\0\0"
            pos = end
        wire = _U32.pack(len(values)) + b"".join([w for _, w in values])
        return cls._from_parts(wire, spans, stamped)

    @classmethod
    def _from_parts(cls, wire: bytes, spans: list[_Span], stamped: bool) -> EncodedValues:
        self = cls.__new__(cls)
        self._wire, self._spans, self._stamped, self._decoded = wire, spans, stamped, None
        return self

    @property
    def wire(self) -> bytes:
        return self._wire

    def content(self) -> bytes:
        """The values' bytes without their timestamps, in index order: equal for two
        value lists that differ only in when they were written (what a bulk
        registration run again must recognise, for every row, without decoding)."""
        wire = self._wire
        return b"".join(
            wire[start : start + 4] + wire[start + 8 : end]
            for start, end, *_ in sorted(self._spans, key=lambda span: span[2])
        )

    def timestamps_set(self) -> bool:
        """Whether every value has a timestamp (the four bytes after its index)."""
        return self._stamped

    def fields(self) -> Iterator[tuple[int, bytes, bytes]]:
        """(permissions, type, data) of each value, in order, as slices of the wire
        bytes: what indexing a record needs, at a fraction of decoding it."""
        wire = self._wire
        for _, _, _, perms, type_start, type_end in self._spans:
            data_start = type_end + 4
            yield (
                perms,
                wire[type_start:type_end],
                wire[data_start : data_start + _unpack_u32(wire, type_end)[0]],
            )

    def _values(self) -> tuple[HandleValue, ...]:
        if self._decoded is None:
            r = Reader(self._wire)
            self._decoded = read_values(r)
            r.expect_end("value list")
        return self._decoded

    def __len__(self) -> int:
        return len(self._spans)

    @overload
    def __getitem__(self, i: int) -> HandleValue: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[HandleValue]: ...
    def __getitem__(self, i: int | slice) -> HandleValue | Sequence[HandleValue]:
        return self._values()[i]

    def __iter__(self) -> Iterator[HandleValue]:
        return iter(self._values())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EncodedValues):
            return self._wire == other._wire
        if isinstance(other, Sequence):
            return self._values() == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"EncodedValues({list(self._values())!r})"

    def select(
        self,
        *,
        public_only: bool,
        indexes: Collection[int] = (),
        types: Sequence[str] = (),
        admin_read: bool = False,
    ) -> EncodedValues:
        """The values a caller gets: public ones only if asked (or with ``admin_read``,
        public ones and those administrators may read), then by index or type.

        A value is kept when its index is listed or its type matches a listed type;
        no lists keeps every value. Returns ``self`` when nothing is dropped.
        """
        wire = self._wire
        kept = []
        for span in self._spans:
            if public_only and not span[3] & _PUBLIC_READ:
                continue
            if admin_read and not span[3] & (_PUBLIC_READ | _ADMIN_READ):
                continue
            if (indexes or types) and span[2] not in indexes:
                vtype = wire[span[4] : span[5]].decode("utf-8", "replace")
                if not any(type_matches(vtype, t) for t in types):
                    continue
            kept.append(span)
        if len(kept) == len(self._spans):
            return self
        parts = [_U32.pack(len(kept))]
        spans: list[_Span] = []
        pos = 4
        for start, end, index, perms, tstart, tend in kept:
            parts.append(wire[start:end])
            shift = pos - start
            spans.append((pos, end + shift, index, perms, tstart + shift, tend + shift))
            pos += end - start
        # Some of the values: stamped if all are, or if these happen to be.
        stamped = self._stamped or all(
            wire[start + 4 : start + 8] != b"\0\0\0\0" for start, *_ in kept
        )
        return EncodedValues._from_parts(b"".join(parts), spans, stamped)
