"""Primitive readers and writers for the Handle wire format.

Every length read from the wire is checked against the bytes actually left before
anything is sliced or allocated, so a hostile length costs nothing. Element counts are
checked against the smallest size an element can have (4 bytes for a string or an int),
which bounds the work a count can cause to the message's own size.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from idnode.handle.errors import LocalProtocolError, RemoteProtocolError

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")

MAX_U32 = 0xFFFFFFFF


class Reader:
    """Reads big-endian fields from a buffer, raising RemoteProtocolError on any misfit."""

    __slots__ = ("_data", "_end", "_pos")

    def __init__(
        self, data: bytes | bytearray | memoryview, start: int = 0, end: int | None = None
    ) -> None:
        self._data = data
        self._pos = start
        self._end = len(data) if end is None else end

    @property
    def remaining(self) -> int:
        return self._end - self._pos

    @property
    def position(self) -> int:
        return self._pos

    def _take(self, size: int, what: str) -> int:
        start = self._pos
        if size > self._end - start:
            raise RemoteProtocolError(
                f"{what} needs {size} bytes but only {self._end - start} remain"
            )
        self._pos = start + size
        return start

    def u8(self, what: str = "byte") -> int:
        return int(_U8.unpack_from(self._data, self._take(1, what))[0])

    def peek_u8(self, what: str = "byte") -> int:
        """The next byte, left to be read: for layouts that branch on it."""
        if self._pos >= self._end:
            raise RemoteProtocolError(f"{what} needs 1 byte but none remain")
        return int(self._data[self._pos])

    def u16(self, what: str = "16-bit integer") -> int:
        return int(_U16.unpack_from(self._data, self._take(2, what))[0])

    def u32(self, what: str = "32-bit integer") -> int:
        return int(_U32.unpack_from(self._data, self._take(4, what))[0])

    def i32(self, what: str = "32-bit integer") -> int:
        return int(_I32.unpack_from(self._data, self._take(4, what))[0])

    def raw(self, size: int, what: str = "bytes") -> bytes:
        start = self._take(size, what)
        return bytes(self._data[start : start + size])

    def unpack(self, fmt: struct.Struct, what: str) -> tuple[Any, ...]:
        """Several fixed-size fields at once (the hot paths read headers this way)."""
        return fmt.unpack_from(self._data, self._take(fmt.size, what))

    def since(self, start: int) -> bytes:
        """The bytes read from ``start`` up to the current position."""
        return bytes(self._data[start : self._pos])

    def block(self, what: str = "byte block") -> bytes:
        """A 4-byte length, then that many bytes."""
        # Written out rather than composed from u32() and raw(): this runs for every
        # string and byte block of every value, and the calls were most of its cost.
        pos, end = self._pos, self._end
        if end - pos < 4:
            raise RemoteProtocolError(f"length of {what} needs 4 bytes but {end - pos} remain")
        size = _U32.unpack_from(self._data, pos)[0]
        start = pos + 4
        if size > end - start:
            raise RemoteProtocolError(f"{what} needs {size} bytes but only {end - start} remain")
        self._pos = start + size
        return bytes(self._data[start : start + size])

    def string(self, what: str = "string") -> str:
        data = self.block(what)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RemoteProtocolError(f"{what} is not valid UTF-8") from exc

    def count(self, min_element_size: int, what: str) -> int:
        """A 4-byte element count, refused unless that many elements could fit."""
        n = self.u32(f"count of {what}")
        if n * min_element_size > self.remaining:
            raise RemoteProtocolError(
                f"{what}: {n} elements cannot fit in the {self.remaining} bytes left"
            )
        return n

    def int_array(self, what: str = "int array") -> tuple[int, ...]:
        n = self.count(4, what)
        start = self._take(4 * n, what)
        return struct.unpack_from(f">{n}I", self._data, start)

    def string_array(self, what: str = "string array") -> tuple[str, ...]:
        return tuple(self.string(what) for _ in range(self.count(4, what)))

    def expect_end(self, what: str) -> None:
        if self._pos != self._end:
            raise RemoteProtocolError(f"{what} has {self._end - self._pos} trailing bytes")


class Writer:
    """Accumulates big-endian fields; the twin of :class:`Reader`."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def u8(self, value: int) -> None:
        self._parts.append(_pack(_U8, value, "byte"))

    def u16(self, value: int) -> None:
        self._parts.append(_pack(_U16, value, "16-bit integer"))

    def u32(self, value: int) -> None:
        self._parts.append(_pack(_U32, value, "32-bit integer"))

    def i32(self, value: int) -> None:
        self._parts.append(_pack(_I32, value, "signed 32-bit integer"))

    def raw(self, data: bytes) -> None:
        self._parts.append(data)

    def block(self, data: bytes) -> None:
        self.u32(len(data))
        self._parts.append(data)

    def string(self, text: str) -> None:
        self.block(text.encode("utf-8"))

    def int_array(self, values: Sequence[int]) -> None:
        self.u32(len(values))
        for v in values:
            self.u32(v)

    def string_array(self, values: Sequence[str]) -> None:
        self.u32(len(values))
        for v in values:
            self.string(v)

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


def _pack(fmt: struct.Struct, value: int, what: str) -> bytes:
    try:
        return fmt.pack(value)
    except struct.error as exc:
        raise LocalProtocolError(f"{value!r} does not fit in a {what}") from exc
