"""Handle values (RFC 3651 §3.1) and their wire layout (RFC 3652 §3.1)."""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from idnode.handle.errors import LocalProtocolError, RemoteProtocolError
from idnode.handle.wire import Reader, Writer

__all__ = [
    "DEFAULT_PERMISSIONS",
    "DEFAULT_TTL",
    "MAX_VALUES",
    "HandleValue",
    "Permission",
    "TTLType",
    "ValueReference",
    "ValueShape",
    "read_value",
    "read_values",
    "type_matches",
    "write_value",
    "write_values",
]

MAX_VALUES = 2048
DEFAULT_TTL = 86400


class Permission(enum.IntFlag):
    """Who may read and write a value; the byte shown as "1110" by Handle.Net tools."""

    NONE = 0
    PUBLIC_WRITE = 0x1
    PUBLIC_READ = 0x2
    ADMIN_WRITE = 0x4
    ADMIN_READ = 0x8

    def bit_string(self) -> str:
        """Handle.Net's four-character form, admin read first: ``1110`` for the default."""
        return format(int(self) & 0xF, "04b")

    @classmethod
    def from_bit_string(cls, text: str) -> Permission:
        if len(text) != 4 or set(text) - {"0", "1"}:
            raise ValueError(f"permissions must be four 0/1 characters, got {text!r}")
        return cls(int(text, 2))  # the twin of bit_string(): admin read is the high bit


DEFAULT_PERMISSIONS = Permission.ADMIN_READ | Permission.ADMIN_WRITE | Permission.PUBLIC_READ


class TTLType(enum.IntEnum):
    RELATIVE = 0
    ABSOLUTE = 1


@dataclass(frozen=True, slots=True)
class ValueReference:
    """A pointer to one value of another handle: ``index:handle``."""

    handle: str
    index: int


@dataclass(frozen=True, slots=True)
class HandleValue:
    """One typed value of a handle record. Immutable, validated on construction."""

    index: int
    type: str
    data: bytes
    ttl: int = DEFAULT_TTL
    ttl_type: TTLType = TTLType.RELATIVE
    permissions: Permission = DEFAULT_PERMISSIONS
    timestamp: int = 0
    references: tuple[ValueReference, ...] = field(default=())
    # The value's own wire bytes when it was decoded from them: re-encoding a value read
    # from storage is then a copy. Not an init field, so dataclasses.replace() drops it.
    _wire: bytes | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.index <= 0xFFFFFFFF:
            # Index 0 is reserved on the wire for "all values" in requests.
            raise LocalProtocolError(f"value index must be 1..4294967295, got {self.index}")
        if not 0 <= self.timestamp <= 0xFFFFFFFF:
            raise LocalProtocolError(f"timestamp out of range: {self.timestamp}")
        if not -(2**31) <= self.ttl < 2**31:
            raise LocalProtocolError(f"TTL out of range: {self.ttl}")
        if not 0 <= self.permissions <= 0xFF:
            raise LocalProtocolError(f"permissions out of range: {self.permissions}")


def type_matches(value_type: str, wanted: str) -> bool:
    """Handle.Net's type filter: case-insensitive; a trailing dot selects subtypes."""
    have, want = value_type.upper(), wanted.upper()
    if want.endswith("."):
        return have.startswith(want) or have == want[:-1]
    return have == want


_HEAD = struct.Struct(">IIBiB")  # index, timestamp, TTL type, TTL, permissions
_PERMISSIONS = tuple(Permission(i) for i in range(256))
_TTL_TYPES = (TTLType.RELATIVE, TTLType.ABSOLUTE)


def write_value(w: Writer, value: HandleValue) -> None:
    if value._wire is not None:
        w.raw(value._wire)
        return
    w.raw(
        _HEAD.pack(value.index, value.timestamp, value.ttl_type, value.ttl, int(value.permissions))
    )
    w.string(value.type)
    w.block(value.data)
    w.u32(len(value.references))
    for ref in value.references:
        w.string(ref.handle)
        w.u32(ref.index)


def read_value(r: Reader) -> HandleValue:
    start = r.position
    index, timestamp, ttl_type_raw, ttl, permissions = r.unpack(_HEAD, "value header")
    try:
        vtype = r.block("value type").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError("value type is not valid UTF-8") from exc
    data = r.block("value data")
    nrefs = r.count(8, "value references")
    refs = (
        tuple(
            ValueReference(r.string("reference handle"), r.u32("reference index"))
            for _ in range(nrefs)
        )
        if nrefs
        else ()
    )
    if ttl_type_raw > 1:
        raise RemoteProtocolError(f"TTL type must be 0 or 1, got {ttl_type_raw}")
    if index == 0:
        raise RemoteProtocolError("value index 0 is not allowed")
    value = HandleValue(
        index,
        vtype,
        data,
        ttl,
        _TTL_TYPES[ttl_type_raw],
        _PERMISSIONS[permissions],
        timestamp,
        refs,
    )
    object.__setattr__(value, "_wire", r.since(start))
    return value


_SHAPE = struct.Struct(">BiB")  # TTL type, TTL, permissions
_U32 = struct.Struct(">I")
_NO_REFERENCES = bytes(4)


class ValueShape:
    """What values of one kind share (index, type, permissions, TTL), encoded once: a
    value of the shape is then a join of bytes. Bulk registration writes a million
    records of one template, six values each, this way."""

    __slots__ = ("_index", "_rest", "index", "permissions", "type_size")

    def __init__(
        self,
        index: int,
        type: str,
        permissions: Permission = DEFAULT_PERMISSIONS,
        ttl: int = DEFAULT_TTL,
        ttl_type: TTLType = TTLType.RELATIVE,
    ) -> None:
        HandleValue(index, type, b"", ttl, ttl_type, permissions)  # its checks, once
        w = Writer()
        w.raw(_SHAPE.pack(ttl_type, ttl, int(permissions)))
        w.string(type)
        self._index = _U32.pack(index)
        self._rest = w.getvalue()
        self.index = index
        self.permissions = int(permissions)
        self.type_size = len(type.encode("utf-8"))

    def wire(self, data: bytes, timestamp: int) -> bytes:
        """The value of this shape holding ``data``: what write_value writes for it."""
        if not 0 <= timestamp <= 0xFFFFFFFF:
            raise LocalProtocolError(f"timestamp out of range: {timestamp}")
        return b"".join(
            (self._index, _U32.pack(timestamp), self._rest, _U32.pack(len(data)), data,
             _NO_REFERENCES)
        )  # fmt: skip


def write_values(w: Writer, values: Sequence[HandleValue]) -> None:
    if len(values) > MAX_VALUES:
        raise LocalProtocolError(f"at most {MAX_VALUES} values per message, got {len(values)}")
    w.u32(len(values))
    for v in values:
        write_value(w, v)


def read_values(r: Reader) -> tuple[HandleValue, ...]:
    # The smallest value on the wire is 4+4+1+4+1+4+4+4 = 26 bytes.
    n = r.count(26, "handle values")
    if n > MAX_VALUES:
        raise RemoteProtocolError(f"at most {MAX_VALUES} values per message, got {n}")
    return tuple(read_value(r) for _ in range(n))
