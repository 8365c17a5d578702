"""Structured data of the reserved value types: HS_ADMIN, HS_VLIST, HS_SITE, keys, ...

One immutable class per type, each with ``from_bytes`` and ``to_bytes`` that are exact
twins. :func:`parse_data` finds the class through a registry by value type; types it
does not know stay raw bytes, so every value round-trips whether or not we understand
it.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, Self

from asn1crypto import keys as asn1_keys
from asn1crypto import pem as asn1_pem

from idnode.handle.errors import RemoteProtocolError
from idnode.handle.values import ValueReference
from idnode.handle.wire import Reader, Writer

__all__ = [
    "SM2_CURVE_NAME",
    "SM2_CURVE_OID",
    "AdminPermission",
    "AdminValue",
    "Alias",
    "DSAPublicKey",
    "Interface",
    "InterfaceType",
    "PublicKey",
    "RSAPublicKey",
    "SM2PublicKey",
    "SecretKey",
    "ServerInfo",
    "ServiceHandle",
    "SiteInfo",
    "StructuredData",
    "TransportProtocol",
    "ValueList",
    "parse_data",
    "parse_public_key",
]


class StructuredData(Protocol):
    def to_bytes(self) -> bytes: ...


class AdminPermission(enum.IntFlag):
    """HS_ADMIN permission bits (RFC 3651 §3.2.2)."""

    NONE = 0
    ADD_HANDLE = 0x0001
    DELETE_HANDLE = 0x0002
    ADD_NA = 0x0004
    DELETE_NA = 0x0008
    MODIFY_VALUE = 0x0010
    REMOVE_VALUE = 0x0020
    ADD_VALUE = 0x0040
    MODIFY_ADMIN = 0x0080
    REMOVE_ADMIN = 0x0100
    ADD_ADMIN = 0x0200
    READ_VALUE = 0x0400
    LIST_HANDLES = 0x0800
    ALL = 0x0FFF

    def bit_string(self) -> str:
        """Handle.Net's twelve-character form, most significant (list handles) first."""
        return format(int(self) & 0x0FFF, "012b")

    @classmethod
    def from_bit_string(cls, text: str) -> AdminPermission:
        if len(text) != 12 or set(text) - {"0", "1"}:
            raise ValueError(f"admin permissions must be twelve 0/1 characters, got {text!r}")
        return cls(int(text, 2))


@dataclass(frozen=True, slots=True)
class AdminValue:
    """HS_ADMIN: who (a handle and the index of its key value) may do what."""

    TYPE: ClassVar[str] = "HS_ADMIN"
    permissions: AdminPermission
    admin: ValueReference

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = Reader(data)
        perms = r.u16("admin permissions")
        admin = ValueReference(r.string("admin handle"), r.u32("admin index"))
        r.expect_end("HS_ADMIN data")
        return cls(AdminPermission(perms), admin)

    def to_bytes(self) -> bytes:
        w = Writer()
        w.u16(int(self.permissions))
        w.string(self.admin.handle)
        w.u32(self.admin.index)
        return w.getvalue()


@dataclass(frozen=True, slots=True)
class ValueList:
    """HS_VLIST: a group of value references; members may be groups themselves."""

    TYPE: ClassVar[str] = "HS_VLIST"
    members: tuple[ValueReference, ...]

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = Reader(data)
        members = tuple(
            ValueReference(r.string("member handle"), r.u32("member index"))
            for _ in range(r.count(8, "HS_VLIST members"))
        )
        r.expect_end("HS_VLIST data")
        return cls(members)

    def to_bytes(self) -> bytes:
        w = Writer()
        w.u32(len(self.members))
        for m in self.members:
            w.string(m.handle)
            w.u32(m.index)
        return w.getvalue()


class _HandleText:
    """Data that is just the UTF-8 text of another handle."""

    __slots__ = ()
    handle: str

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        try:
            return cls(data.decode("utf-8"))  # type: ignore[call-arg]
        except UnicodeDecodeError as exc:
            raise RemoteProtocolError(f"{cls.__name__} data is not UTF-8") from exc

    def to_bytes(self) -> bytes:
        return self.handle.encode("utf-8")


@dataclass(frozen=True, slots=True)
class Alias(_HandleText):
    """HS_ALIAS: resolve this other handle instead."""

    TYPE: ClassVar[str] = "HS_ALIAS"
    handle: str


@dataclass(frozen=True, slots=True)
class ServiceHandle(_HandleText):
    """HS_SERV: the handle whose HS_SITE values describe the responsible service."""

    TYPE: ClassVar[str] = "HS_SERV"
    handle: str


@dataclass(frozen=True, slots=True)
class SecretKey:
    """HS_SECKEY: a shared secret (or, in idnode, a hash of it; see the auth docs)."""

    TYPE: ClassVar[str] = "HS_SECKEY"
    secret: bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        return cls(data)

    def to_bytes(self) -> bytes:
        return self.secret


class InterfaceType(enum.IntEnum):
    OUT_OF_SERVICE = 0
    ADMIN = 1
    QUERY = 2
    ADMIN_AND_QUERY = 3


class TransportProtocol(enum.IntEnum):
    UDP = 0
    TCP = 1
    HTTP = 2
    HTTPS = 3


@dataclass(frozen=True, slots=True)
class Interface:
    type: InterfaceType
    protocol: TransportProtocol
    port: int


@dataclass(frozen=True, slots=True)
class ServerInfo:
    server_id: int
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    public_key: bytes
    interfaces: tuple[Interface, ...]


@dataclass(frozen=True, slots=True)
class SiteInfo:
    """HS_SITE: a service site, its servers and how handles are spread over them."""

    TYPE: ClassVar[str] = "HS_SITE"
    PRIMARY: ClassVar[int] = 0x80
    MULTI_PRIMARY: ClassVar[int] = 0x40

    servers: tuple[ServerInfo, ...]
    serial_number: int = 1
    primary_mask: int = PRIMARY
    hash_option: int = 0
    hash_filter: bytes = b""
    attributes: tuple[tuple[str, str], ...] = ()
    data_format_version: int = 1
    protocol_version: tuple[int, int] = (2, 10)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = Reader(data)
        version = r.u16("site data format version")
        major = r.u8("site protocol major version")
        minor = r.u8("site protocol minor version")
        serial = r.u16("site serial number")
        primary_mask = r.u8("site primary mask")
        hash_option = r.u8("site hash option")
        hash_filter = r.block("site hash filter")
        attributes = tuple(
            (r.string("attribute name"), r.string("attribute value"))
            for _ in range(r.count(8, "site attributes"))
        )
        servers = tuple(_read_server(r) for _ in range(r.count(28, "site servers")))
        r.expect_end("HS_SITE data")
        return cls(
            servers=servers,
            serial_number=serial,
            primary_mask=primary_mask,
            hash_option=hash_option,
            hash_filter=hash_filter,
            attributes=attributes,
            data_format_version=version,
            protocol_version=(major, minor),
        )

    def to_bytes(self) -> bytes:
        w = Writer()
        w.u16(self.data_format_version)
        w.u8(self.protocol_version[0])
        w.u8(self.protocol_version[1])
        w.u16(self.serial_number)
        w.u8(self.primary_mask)
        w.u8(self.hash_option)
        w.block(self.hash_filter)
        w.u32(len(self.attributes))
        for name, value in self.attributes:
            w.string(name)
            w.string(value)
        w.u32(len(self.servers))
        for server in self.servers:
            _write_server(w, server)
        return w.getvalue()


def _read_server(r: Reader) -> ServerInfo:
    server_id = r.u32("server id")
    raw_address = r.raw(16, "server address")
    public_key = r.block("server public key")
    interfaces = []
    for _ in range(r.count(6, "server interfaces")):
        itype, proto, port = r.u8("interface type"), r.u8("interface protocol"), r.u32("port")
        if itype > 3 or proto > 3:
            raise RemoteProtocolError(f"unknown interface type {itype} or protocol {proto}")
        interfaces.append(Interface(InterfaceType(itype), TransportProtocol(proto), port))
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    # IPv4 addresses sit in the last four bytes with zeros in front (not ::ffff: mapped).
    if raw_address[:12] == bytes(12):
        address = ipaddress.IPv4Address(raw_address[12:])
    else:
        address = ipaddress.IPv6Address(raw_address)
    return ServerInfo(server_id, address, public_key, tuple(interfaces))


def _write_server(w: Writer, server: ServerInfo) -> None:
    w.u32(server.server_id)
    packed = server.address.packed
    w.raw(packed.rjust(16, b"\x00"))
    w.block(server.public_key)
    w.u32(len(server.interfaces))
    for iface in server.interfaces:
        w.u8(iface.type)
        w.u8(iface.protocol)
        w.u32(iface.port)


_RSA_TAG = b"RSA_PUB_KEY"
_DSA_TAG = b"DSA_PUB_KEY"
_SM2_TAG = b"SM2_PUB_KEY"
#: The SM2 curve (GM/T 0006), as SubjectPublicKeyInfo names it.
SM2_CURVE_OID = "1.2.156.10197.1.301"
SM2_CURVE_NAME = "sm2p256v1"
# asn1crypto knows curves by name; registering one is its documented way to add one
# (idempotent, so importing this module again does no harm).
asn1_keys.NamedCurve.register(SM2_CURVE_NAME, SM2_CURVE_OID, 32)
_PEM_START = b"-----BEGIN"
# The SM2 curve y^2 = x^3 + ax + b over GF(p) (GB/T 32918.5).
_SM2_P = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF", 16)
_SM2_A = _SM2_P - 3
_SM2_B = int("28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93", 16)


def _unsigned(data: bytes) -> int:
    return int.from_bytes(data, "big")


def _signed_bytes(n: int) -> bytes:
    # Java's BigInteger.toByteArray(): big-endian two's complement, minimal length, which
    # keeps a leading zero when the top bit is set. Deployed clients compare these bytes.
    return n.to_bytes(n.bit_length() // 8 + 1, "big")


@dataclass(frozen=True, slots=True)
class RSAPublicKey:
    """HS_PUBKEY holding an RSA key: Handle's encoding (tag, flags, e, n), or PEM text
    as the national SDKs write it (``source`` keeps that text, so that the value
    round-trips byte for byte)."""

    TYPE: ClassVar[str] = "HS_PUBKEY"
    exponent: int
    modulus: int
    source: bytes | None = field(default=None, compare=False, repr=False)

    def to_bytes(self) -> bytes:
        if self.source is not None:
            return self.source
        w = Writer()
        w.block(_RSA_TAG)
        w.u16(0)  # reserved flags
        w.block(_signed_bytes(self.exponent))
        w.block(_signed_bytes(self.modulus))
        return w.getvalue()


@dataclass(frozen=True, slots=True)
class DSAPublicKey:
    """HS_PUBKEY holding a DSA key in the Handle encoding (tag, flags, q, p, g, y)."""

    TYPE: ClassVar[str] = "HS_PUBKEY"
    q: int
    p: int
    g: int
    y: int

    def to_bytes(self) -> bytes:
        w = Writer()
        w.block(_DSA_TAG)
        w.u16(0)
        for part in (self.q, self.p, self.g, self.y):
            w.block(_signed_bytes(part))
        return w.getvalue()


@dataclass(frozen=True, slots=True)
class SM2PublicKey:
    """HS_PUBKEY holding an SM2 key (the national public-key algorithm): the point,
    uncompressed (``04 || x || y``). Written in the national SDKs' layout: the tag
    ``SM2_PUB_KEY``, two bytes of flags, then the SubjectPublicKeyInfo in DER as a
    block; PEM text is read too (``source`` keeps it)."""

    TYPE: ClassVar[str] = "HS_PUBKEY"
    point: bytes
    source: bytes | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.point) != 65 or self.point[0] != 4:
            raise RemoteProtocolError("an SM2 public key is an uncompressed 65-byte point")
        x, y = int.from_bytes(self.point[1:33], "big"), int.from_bytes(self.point[33:], "big")
        if not (
            x < _SM2_P and y < _SM2_P and (y * y - x * x * x - _SM2_A * x - _SM2_B) % _SM2_P == 0
        ):
            raise RemoteProtocolError("the SM2 public key is not a point on the SM2 curve")

    def der(self) -> bytes:
        """SubjectPublicKeyInfo (id-ecPublicKey on the SM2 curve), DER."""
        info = asn1_keys.PublicKeyInfo(
            {
                "algorithm": asn1_keys.PublicKeyAlgorithm(
                    {
                        "algorithm": "ec",
                        "parameters": asn1_keys.ECDomainParameters(
                            name="named", value=SM2_CURVE_NAME
                        ),
                    }
                ),
                "public_key": self.point,
            }
        )
        return bytes(info.dump())

    def to_pem(self) -> bytes:
        return bytes(asn1_pem.armor("PUBLIC KEY", self.der()))

    def to_bytes(self) -> bytes:
        if self.source is not None:
            return self.source
        w = Writer()
        w.block(_SM2_TAG)
        w.u16(0)
        w.block(self.der())
        return w.getvalue()


PublicKey = RSAPublicKey | DSAPublicKey | SM2PublicKey


def _key_from_info(der: bytes, source: bytes | None) -> RSAPublicKey | SM2PublicKey:
    """An RSA or SM2 key from a SubjectPublicKeyInfo (DER)."""
    try:
        info = asn1_keys.PublicKeyInfo.load(der, strict=True)
        algorithm = info.algorithm
        if algorithm == "rsa":
            numbers = info["public_key"].parsed
            return RSAPublicKey(
                numbers["public_exponent"].native, numbers["modulus"].native, source
            )
        if algorithm == "ec":
            curve = info["algorithm"]["parameters"].chosen.native
            if curve in (SM2_CURVE_NAME, SM2_CURVE_OID):
                return SM2PublicKey(bytes(info["public_key"].native), source)
            raise RemoteProtocolError(f"EC public keys on curve {curve} are not supported")
    except (ValueError, TypeError, KeyError) as exc:
        raise RemoteProtocolError(f"malformed SubjectPublicKeyInfo: {exc}") from exc
    raise RemoteProtocolError(f"{algorithm} public keys are not supported")


def _key_from_pem(text: bytes) -> RSAPublicKey | SM2PublicKey:
    try:
        kind, _, der = asn1_pem.unarmor(text.strip())
    except (ValueError, TypeError) as exc:
        raise RemoteProtocolError(f"malformed PEM public key: {exc}") from exc
    if kind == "RSA PUBLIC KEY":
        try:
            numbers = asn1_keys.RSAPublicKey.load(der, strict=True)
            return RSAPublicKey(numbers["public_exponent"].native, numbers["modulus"].native, text)
        except (ValueError, TypeError) as exc:
            raise RemoteProtocolError(f"malformed PKCS#1 public key: {exc}") from exc
    if kind != "PUBLIC KEY":
        raise RemoteProtocolError(f"PEM {kind!r} is not a public key")
    return _key_from_info(der, text)


def parse_public_key(data: bytes) -> PublicKey:
    """A key in any of the encodings HS_PUBKEY values hold: Handle's binary layouts
    (RSA, DSA, the SDKs' SM2) or PEM text (RSA or SM2, as the national SDKs write)."""
    if data.lstrip().startswith(_PEM_START):
        return _key_from_pem(data)
    r = Reader(data)
    tag = r.block("key type")
    r.u16("key flags")
    key: PublicKey
    if tag == _RSA_TAG:
        key = RSAPublicKey(_unsigned(r.block("RSA exponent")), _unsigned(r.block("RSA modulus")))
    elif tag == _DSA_TAG:
        q, p, g, y = (_unsigned(r.block(f"DSA {n}")) for n in "qpgy")
        key = DSAPublicKey(q, p, g, y)
    elif tag == _SM2_TAG:
        encoded = r.block("SM2 key")
        if encoded.lstrip().startswith(_PEM_START):
            found = _key_from_pem(encoded)
        else:
            found = _key_from_info(encoded, None)
        if not isinstance(found, SM2PublicKey):
            raise RemoteProtocolError("an SM2_PUB_KEY value holds a key of another kind")
        key = SM2PublicKey(found.point, data)
    else:
        raise RemoteProtocolError(f"unsupported public key type {tag[:32]!r}")
    r.expect_end("HS_PUBKEY data")
    return key


_PARSERS: dict[str, Callable[[bytes], StructuredData]] = {
    "HS_ADMIN": AdminValue.from_bytes,
    "HS_VLIST": ValueList.from_bytes,
    "HS_SITE": SiteInfo.from_bytes,
    "HS_SITE.6": SiteInfo.from_bytes,
    "HS_SITE.PREFIX": SiteInfo.from_bytes,
    "HS_ALIAS": Alias.from_bytes,
    "HS_SERV": ServiceHandle.from_bytes,
    "HS_SERV.PREFIX": ServiceHandle.from_bytes,
    "HS_SECKEY": SecretKey.from_bytes,
    "HS_PUBKEY": parse_public_key,
}


def parse_data(value_type: str, data: bytes) -> StructuredData | bytes:
    """Typed view of a value's data, or the bytes themselves for types without structure.

    Raises RemoteProtocolError if a reserved type's data is malformed.
    """
    parser = _PARSERS.get(value_type.upper())
    if parser is None:
        return data
    return parser(data)
