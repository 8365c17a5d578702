"""Handle values as JSON in the shape of the Handle.Net server's JSON API.

Used for HTTP responses, ``idnode resolve --json`` and the JSONL import/export format,
so a record exported from one node imports into another unchanged. Encoding is
lossless: a value is written in a structured format (``admin``, ``site``, ``key``, ...)
only when re-encoding that structure gives back the very same bytes; otherwise it is
written as ``base64``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import json
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from idnode.domain import HandleRecord
from idnode.errors import InvalidValue, ProtocolError, RemoteProtocolError
from idnode.handle.values import DEFAULT_TTL, HandleValue, Permission, TTLType, ValueReference
from idnode.handle.valuetypes import (
    AdminPermission,
    AdminValue,
    DSAPublicKey,
    Interface,
    InterfaceType,
    RSAPublicKey,
    ServerInfo,
    SiteInfo,
    SM2PublicKey,
    TransportProtocol,
    ValueList,
    parse_public_key,
)
from idnode.names import validate_handle

if TYPE_CHECKING:
    from idnode.history import Change, Version

__all__ = [
    "change_to_json",
    "record_from_json",
    "record_to_json",
    "value_from_json",
    "value_to_json",
    "version_to_json",
]

JSON = dict[str, Any]


def _b64url(n: int) -> str:
    raw = n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64url_bytes(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _from_b64url_bytes(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _from_b64url(text: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


def _admin_to_json(data: bytes) -> Any:
    admin = AdminValue.from_bytes(data)
    return {
        "handle": admin.admin.handle,
        "index": admin.admin.index,
        "permissions": admin.permissions.bit_string(),
    }


def _admin_from_json(v: Mapping[str, Any]) -> bytes:
    perms = AdminPermission.from_bit_string(str(v["permissions"]))
    return AdminValue(perms, ValueReference(str(v["handle"]), int(v["index"]))).to_bytes()


def _vlist_to_json(data: bytes) -> Any:
    return [{"handle": m.handle, "index": m.index} for m in ValueList.from_bytes(data).members]


def _vlist_from_json(v: Any) -> bytes:
    return ValueList(tuple(ValueReference(str(m["handle"]), int(m["index"])) for m in v)).to_bytes()


def _site_to_json(data: bytes) -> Any:
    site = SiteInfo.from_bytes(data)
    return {
        "version": site.data_format_version,
        "protocolVersion": f"{site.protocol_version[0]}.{site.protocol_version[1]}",
        "serialNumber": site.serial_number,
        "primaryMask": {
            "primary": bool(site.primary_mask & SiteInfo.PRIMARY),
            "multiPrimary": bool(site.primary_mask & SiteInfo.MULTI_PRIMARY),
            "raw": site.primary_mask,
        },
        "hashOption": site.hash_option,
        "hashFilter": site.hash_filter.decode("utf-8"),
        "attributes": [{"name": n, "value": v} for n, v in site.attributes],
        "servers": [
            {
                "serverId": s.server_id,
                "address": str(s.address),
                "publicKey": {"format": "base64", "value": base64.b64encode(s.public_key).decode()},
                "interfaces": [
                    {
                        "query": bool(i.type & InterfaceType.QUERY),
                        "admin": bool(i.type & InterfaceType.ADMIN),
                        "protocol": i.protocol.name,
                        "port": i.port,
                    }
                    for i in s.interfaces
                ],
            }
            for s in site.servers
        ],
    }


def _site_from_json(v: Mapping[str, Any]) -> bytes:
    major, minor = (int(p) for p in str(v["protocolVersion"]).split("."))
    servers = tuple(
        ServerInfo(
            server_id=int(s["serverId"]),
            address=ipaddress.ip_address(s["address"]),
            public_key=base64.b64decode(s["publicKey"]["value"], validate=True),
            interfaces=tuple(
                Interface(
                    InterfaceType(2 * bool(i["query"]) + bool(i["admin"])),
                    TransportProtocol[str(i["protocol"]).upper()],
                    int(i["port"]),
                )
                for i in s["interfaces"]
            ),
        )
        for s in v["servers"]
    )
    return SiteInfo(
        servers=servers,
        serial_number=int(v["serialNumber"]),
        primary_mask=int(v["primaryMask"]["raw"]),
        hash_option=int(v["hashOption"]),
        hash_filter=str(v.get("hashFilter", "")).encode("utf-8"),
        attributes=tuple((str(a["name"]), str(a["value"])) for a in v.get("attributes", ())),
        data_format_version=int(v["version"]),
        protocol_version=(major, minor),
    ).to_bytes()


def _key_to_json(data: bytes) -> Any:
    key = parse_public_key(data)
    if isinstance(key, RSAPublicKey):
        return {"kty": "RSA", "n": _b64url(key.modulus), "e": _b64url(key.exponent)}
    if isinstance(key, SM2PublicKey):
        # JWK has no SM2 curve of its own; "EC" with crv "SM2" is how SM2 JWKs are
        # written where they are used (the national system's JWS trust chains).
        x, y = key.point[1:33], key.point[33:]
        return {"kty": "EC", "crv": "SM2", "x": _b64url_bytes(x), "y": _b64url_bytes(y)}
    return {k: _b64url(getattr(key, k)) for k in "pqgy"} | {"kty": "DSA"}


def _key_from_json(v: Mapping[str, Any]) -> bytes:
    if v["kty"] == "RSA":
        return RSAPublicKey(_from_b64url(v["e"]), _from_b64url(v["n"])).to_bytes()
    if v["kty"] == "DSA":
        q, p, g, y = (_from_b64url(v[k]) for k in "qpgy")
        return DSAPublicKey(q, p, g, y).to_bytes()
    if v["kty"] == "EC" and v.get("crv") == "SM2":
        point = b"\x04" + _from_b64url_bytes(v["x"]) + _from_b64url_bytes(v["y"])
        try:
            return SM2PublicKey(point).to_bytes()
        except RemoteProtocolError as exc:
            raise InvalidValue(f"SM2 key: {exc.message}") from exc
    raise InvalidValue(f"unsupported key type {v['kty']!r}")


_Structured = tuple[str, Callable[[bytes], Any], Callable[[Any], bytes]]
_STRUCTURED: dict[str, _Structured] = {
    "HS_ADMIN": ("admin", _admin_to_json, _admin_from_json),
    "HS_VLIST": ("vlist", _vlist_to_json, _vlist_from_json),
    "HS_SITE": ("site", _site_to_json, _site_from_json),
    "HS_SITE.6": ("site", _site_to_json, _site_from_json),
    "HS_SITE.PREFIX": ("site", _site_to_json, _site_from_json),
    "HS_PUBKEY": ("key", _key_to_json, _key_from_json),
}
_FROM_FORMAT: dict[str, Callable[[Any], bytes]] = {
    "string": lambda v: str(v).encode("utf-8"),
    "base64": lambda v: base64.b64decode(str(v), validate=True),
    "hex": lambda v: bytes.fromhex(str(v)),
} | {fmt: dec for fmt, _, dec in _STRUCTURED.values()}


@functools.lru_cache(maxsize=4096)
def _structured_to_json(value_type: str, data: bytes) -> JSON:
    # Cached: a prefix's records mostly share the same HS_ADMIN (and keys), and the
    # lossless check below decodes and re-encodes. Callers must not mutate the result.
    structured = _STRUCTURED[value_type]
    fmt, encode, decode = structured
    try:
        shown = encode(data)
        if decode(shown) == data:
            return {"format": fmt, "value": shown}
    except (RemoteProtocolError, UnicodeDecodeError, ValueError):
        pass
    # Not in the structured form (a key as PEM text, say): shown as any other data.
    return _plain_to_json(data)


def _data_to_json(value_type: str, data: bytes) -> JSON:
    upper = value_type.upper()
    if upper in _STRUCTURED:
        return _structured_to_json(upper, data)
    return _plain_to_json(data)


def _plain_to_json(data: bytes) -> JSON:
    try:
        return {"format": "string", "value": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"format": "base64", "value": base64.b64encode(data).decode()}


def _data_from_json(data: Any) -> bytes:
    if isinstance(data, str):  # a bare string is accepted as format "string"
        return data.encode("utf-8")
    if not isinstance(data, Mapping):
        raise InvalidValue("value data must be an object with 'format' and 'value'")
    fmt, value = str(data.get("format", "string")), data.get("value")
    decoder = _FROM_FORMAT.get(fmt)
    if decoder is None:
        raise InvalidValue(f"unknown data format {fmt!r}")
    try:
        return decoder(value)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise InvalidValue(f"bad {fmt} data: {exc!r}") from exc


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _from_iso(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def value_to_json(value: HandleValue) -> JSON:
    out: JSON = {
        "index": value.index,
        "type": value.type,
        "data": _data_to_json(value.type, value.data),
        "ttl": value.ttl,
        "timestamp": _iso(value.timestamp),
        "permissions": value.permissions.bit_string(),
    }
    if value.ttl_type == TTLType.ABSOLUTE:
        out["ttlType"] = 1
    if value.references:
        out["refs"] = [{"handle": r.handle, "index": r.index} for r in value.references]
    return out


def whole_number(given: Any, what: str) -> int:
    """``given`` as an int (a JSON number or its text); InvalidValue naming ``what``
    otherwise, rather than Python's "invalid literal for int()"."""
    if isinstance(given, int) and not isinstance(given, bool):
        return given
    if isinstance(given, float) and given.is_integer():
        return int(given)
    if isinstance(given, str) and re.fullmatch(r"[+-]?[0-9]+", given.strip()):
        return int(given)
    raise InvalidValue(f"{what} must be a whole number, not {json.dumps(given)}")


def value_from_json(obj: Any, *, default_timestamp: int = 0) -> HandleValue:
    if not isinstance(obj, Mapping):
        raise InvalidValue("a value must be a JSON object")
    try:
        index = whole_number(obj["index"], "index")
        vtype = str(obj["type"])
        timestamp = obj.get("timestamp")
        return HandleValue(
            index=index,
            type=vtype,
            data=_data_from_json(obj.get("data", "")),
            ttl=whole_number(obj.get("ttl", DEFAULT_TTL), "ttl"),
            ttl_type=TTLType(whole_number(obj.get("ttlType", 0), "ttlType")),
            permissions=Permission.from_bit_string(str(obj.get("permissions", "1110"))),
            timestamp=_from_iso(timestamp) if timestamp else default_timestamp,
            references=tuple(
                ValueReference(str(r["handle"]), whole_number(r["index"], "a reference's index"))
                for r in obj.get("refs", ())
            ),
        )
    except InvalidValue:
        raise
    except KeyError as exc:
        raise InvalidValue(f"value is missing {exc.args[0]!r}") from exc
    except (TypeError, ValueError) as exc:
        raise InvalidValue(f"bad value: {exc}") from exc
    except ProtocolError as exc:  # out-of-range index, TTL, ...
        raise InvalidValue(exc.message) from exc


def record_to_json(record: HandleRecord) -> JSON:
    return {"handle": record.handle, "values": [value_to_json(v) for v in record.values]}


def record_from_json(obj: Any, *, default_timestamp: int = 0) -> HandleRecord:
    if not isinstance(obj, Mapping) or not isinstance(obj.get("handle"), str):
        raise InvalidValue("a record must be an object with a 'handle' string")
    validate_handle(obj["handle"])
    values = obj.get("values")
    if not isinstance(values, list):
        raise InvalidValue("a record needs a 'values' list")
    parsed = tuple(value_from_json(v, default_timestamp=default_timestamp) for v in values)
    indexes = [v.index for v in parsed]
    if len(set(indexes)) != len(indexes):
        raise InvalidValue(f"{obj['handle']}: value indexes are not unique")
    return HandleRecord(obj["handle"], parsed)


def version_to_json(version: Version, *, values: bool = False) -> JSON:
    """A version's description (time in UTC, null when not recorded), and with
    ``values`` its values (null for a deletion)."""
    out: JSON = {
        "version": version.number,
        "at": None if version.at is None else _iso(version.at),
        "actor": version.actor,
        "origin": version.origin,
        "operation": version.operation,
        "deleted": version.record is None,
    }
    if values:
        out["values"] = (
            None if version.values is None else [value_to_json(v) for v in version.values]
        )
    return out


def change_to_json(change: Change) -> JSON:
    return {
        "index": change.index,
        "change": change.kind,
        "before": None if change.before is None else value_to_json(change.before),
        "after": None if change.after is None else value_to_json(change.after),
    }
