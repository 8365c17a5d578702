"""Identifiers in events: one key per thing, whichever way an event names it.

An event may name a pump as an EPC URN (``urn:epc:id:sgtin:0614141.107346.2017``), a
GS1 Digital Link URI on any domain (``https://example.com/01/10614141073464/21/2017``)
or, on our node, by its identifier (``88.100.1/PUMP-0001``) or proxy URL
(``https://node.example/88.100.1/PUMP-0001``). Capture and query both reduce each to a
key, so that a query in one form finds events captured in another:

- GS1 keys become the canonical Digital Link URI, ``https://id.gs1.org/<path>``: the
  primary key and its key qualifiers, nothing else (the conversion of the GS1 Tag Data
  Standard, EPC URN to Digital Link, which needs no company prefix table);
- handles become their handle key (:func:`idnode.names.handle_key`: ASCII upper case),
  and a handle under the node's GS1 prefix is the GS1 key it stands for
  (``88.100.1/01/09506000134352/21/12345``), as ``docs/gs1.md`` maps codes to records;
- anything else (``urn:uuid:``, a company's own URI) is kept as written.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import quote, unquote, urlsplit

from idnode.errors import InvalidValue
from idnode.names import handle_key

__all__ = [
    "DIGITAL_LINK",
    "InvalidIdentifier",
    "identifier_key",
    "pattern_prefix",
    "record_handle",
]

DIGITAL_LINK = "https://id.gs1.org/"

#: GS1 Digital Link primary keys (AI: digits of a fixed-length key, 0: variable) with
#: the key qualifiers each may carry, in path order.
_PRIMARY: dict[str, tuple[int, tuple[str, ...]]] = {
    "01": (14, ("22", "10", "21", "235")),  # GTIN
    "00": (18, ()),  # SSCC
    "414": (13, ("254", "7040")),  # GLN (location)
    "417": (13, ("7040",)),  # party GLN
    "8003": (0, ()),  # GRAI
    "8004": (0, ()),  # GIAI
    "8006": (0, ("22", "10", "21")),  # ITIP
    "8010": (0, ("8011",)),  # CPID
    "8017": (18, ("8019",)),  # GSRN provider
    "8018": (18, ("8019",)),  # GSRN recipient
    "253": (0, ()),  # GDTI
    "255": (0, ()),  # GCN
    "401": (0, ()),  # GINC
    "402": (17, ()),  # GSIN
    "8013": (0, ()),  # GMN
}
#: Kept as they are in a Digital Link value (the GS1 canonical form); the rest is
#: percent-encoded.
_SAFE = "!'()*"
_HANDLE_PREFIX = re.compile(r"^\d+(\.\d+)+$")
_URN = re.compile(r"^urn:epc:(id|class|idpat):([a-z]+):(.+)$", re.IGNORECASE)


class InvalidIdentifier(InvalidValue):
    """An EPC URN or Digital Link URI that breaks its own rules (a wrong check digit is
    not one: keys are compared as written)."""


@lru_cache(maxsize=65536)
def identifier_key(text: str, gs1_prefix: str = "") -> str:
    """The key ``text`` is stored and matched by (see the module's docstring).
    Remembered: an identifier recurs in event after event (and in each event's hash)."""
    text = text.strip()
    low = text[:12].lower()
    if low.startswith("urn:epc:"):
        return _from_urn(text)
    if low.startswith(("http://", "https://")):
        try:
            parts = urlsplit(text)
        except ValueError as exc:  # an unclosed [IPv6 address, say
            raise InvalidIdentifier(f"{text[:80]!r} is not a URL: {exc}") from exc
        segments = [s for s in parts.path.split("/") if s]
        gs1 = _digital_link(segments)
        if gs1 is not None:
            return gs1
        handle = _proxied_handle(segments)
        if handle is not None:
            return _handle(handle, gs1_prefix)
        return text
    if "/" in text and ":" not in text.partition("/")[0]:
        return _handle(text, gs1_prefix)
    return text


def record_handle(key: str, gs1_prefix: str = "") -> str | None:
    """The identifier of the record a key names on a node (None: not one of ours)."""
    if key.startswith(DIGITAL_LINK):
        return gs1_prefix + "/" + key[len(DIGITAL_LINK) :] if gs1_prefix else None
    if "/" in key and ":" not in key.partition("/")[0]:
        return key
    return None


def pattern_prefix(text: str, gs1_prefix: str = "") -> str | None:
    """For a pattern of EPCs (``urn:epc:idpat:sgtin:0614141.107346.*`` or any key
    ending in ``*``): the key prefix every EPC it matches has; None if it is not a
    pattern. A pattern with a wildcard before its last field (a whole company) is
    refused: keys are not ordered by company prefix."""
    text = text.strip()
    match = _URN.match(text)
    if match and match.group(1).lower() == "idpat":
        scheme, body = match.group(2).lower(), match.group(3)
        fields = body.split(".")
        if "*" in fields[:-1]:
            raise InvalidIdentifier(f"{text}: only the last field of a pattern may be *")
        if fields[-1] != "*":
            return None
        if scheme == "sgtin" and len(fields) == 3:
            return f"{DIGITAL_LINK}01/{_gtin(fields[0], fields[1])}/21/"
        if scheme == "sscc" and len(fields) == 2:
            raise InvalidIdentifier(f"{text}: an SSCC pattern needs its serial reference")
        raise InvalidIdentifier(f"{text}: patterns are supported for sgtin")
    if text.endswith("*"):
        return identifier_key(text[:-1], gs1_prefix) if text[:-1] else ""
    return None


# -- Digital Link ------------------------------------------------------------------------


def _digital_link(segments: list[str]) -> str | None:
    """The canonical URI of a Digital Link path (below any stem), or None if it is not
    one: the first segment that is a primary key's AI must be followed by a value of
    digits and then only by that key's qualifiers."""
    for start, segment in enumerate(segments):
        if segment in _PRIMARY and start + 1 < len(segments):
            break
    else:
        return None
    pairs = segments[start:]
    length, qualifiers = _PRIMARY[pairs[0]]
    if len(pairs) % 2:
        return None
    value = unquote(pairs[1])
    if pairs[0] == "01" and value.isdigit() and len(value) in (8, 12, 13):
        value = value.zfill(14)
    if length and not (value.isdigit() and len(value) == length):
        return None
    out = [pairs[0], quote(value, safe=_SAFE)]
    allowed = list(qualifiers)
    for ai, raw in zip(pairs[2::2], pairs[3::2], strict=True):
        if ai not in allowed:
            return None
        allowed = allowed[allowed.index(ai) + 1 :]
        out += [ai, quote(unquote(raw), safe=_SAFE)]
    return DIGITAL_LINK + "/".join(out)


def _proxied_handle(segments: list[str]) -> str | None:
    if len(segments) >= 2 and _HANDLE_PREFIX.match(segments[0]):
        return unquote("/".join(segments))
    return None


def _handle(handle: str, gs1_prefix: str) -> str:
    if gs1_prefix:
        prefix, _, path = handle.partition("/")
        if handle_key(prefix) == handle_key(gs1_prefix):
            gs1 = _digital_link([s for s in path.split("/") if s])
            if gs1 is not None and path.split("/", 1)[0] in _PRIMARY:
                return gs1
    return handle_key(handle)


# -- EPC URNs (GS1 Tag Data Standard) ------------------------------------------------------


def _from_urn(text: str) -> str:
    match = _URN.match(text)
    if match is None:
        return text
    kind, scheme, body = match.group(1).lower(), match.group(2).lower(), match.group(3)
    fields = body.split(".")
    if kind == "idpat" and scheme == "sgtin" and fields[-1:] == ["*"] and "*" not in fields[:-1]:
        kind, fields = "class", fields[:-1]  # a GTIN: the class of its serial numbers
    if "*" in fields:
        return text  # a wider pattern: matched by prefix (pattern_prefix), not a key
    convert = _CLASSES.get(scheme) if kind != "id" else _INSTANCES.get(scheme)
    if convert is None:
        return text  # gid, usdod, adi, ...: no Digital Link form; kept as written
    try:
        path = convert(fields)
    except (ValueError, IndexError) as exc:
        raise InvalidIdentifier(f"{text}: not a valid {scheme} EPC ({exc})") from exc
    return DIGITAL_LINK + "/".join(quote(part, safe=_SAFE) for part in path)


def _digits(*parts: str) -> str:
    joined = "".join(parts)
    if not joined.isdigit():
        raise ValueError("the company prefix and references are digits")
    return joined


def _check_digit(digits: str) -> str:
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return str(-total % 10)


def _with_check(digits: str) -> str:
    return digits + _check_digit(digits)


def _gtin(company: str, item: str) -> str:
    digits = _digits(company, item)
    if len(digits) != 13:
        raise ValueError("company prefix and item reference must be 13 digits together")
    return _with_check(item[:1] + company + item[1:])


def _field(value: str) -> str:
    return unquote(value)


def _sgtin(f: list[str]) -> list[str]:
    _arity(f, 3)
    return ["01", _gtin(f[0], f[1]), "21", _field(f[2])]


def _sscc(f: list[str]) -> list[str]:
    _arity(f, 2)
    digits = _digits(f[0], f[1])
    if len(digits) != 17:
        raise ValueError("company prefix and serial reference must be 17 digits together")
    return ["00", _with_check(f[1][:1] + f[0] + f[1][1:])]


def _sgln(f: list[str]) -> list[str]:
    _arity(f, 3)
    gln = _with_check(_digits(f[0], f[1]))
    if len(gln) != 13:
        raise ValueError("company prefix and location reference must be 12 digits together")
    return ["414", gln] + ([] if f[2] == "0" else ["254", _field(f[2])])


def _pgln(f: list[str]) -> list[str]:
    _arity(f, 2)
    return ["417", _with_check(_digits(f[0], f[1]))]


def _grai(f: list[str]) -> list[str]:
    _arity(f, 3)
    return ["8003", "0" + _with_check(_digits(f[0], f[1])) + _field(f[2])]


def _giai(f: list[str]) -> list[str]:
    _arity(f, 2)
    _digits(f[0])
    return ["8004", f[0] + _field(f[1])]


def _gsrn(f: list[str]) -> list[str]:
    _arity(f, 2)
    return ["8018", _with_check(_digits(f[0], f[1]))]


def _gsrnp(f: list[str]) -> list[str]:
    _arity(f, 2)
    return ["8017", _with_check(_digits(f[0], f[1]))]


def _gdti(f: list[str]) -> list[str]:
    _arity(f, 3)
    return ["253", _with_check(_digits(f[0], f[1])) + _field(f[2])]


def _sgcn(f: list[str]) -> list[str]:
    _arity(f, 3)
    return ["255", _with_check(_digits(f[0], f[1])) + _field(f[2])]


def _cpi(f: list[str]) -> list[str]:
    _arity(f, 3)
    _digits(f[0])
    return ["8010", f[0] + _field(f[1]), "8011", _field(f[2])]


def _lgtin(f: list[str]) -> list[str]:
    _arity(f, 3)
    return ["01", _gtin(f[0], f[1]), "10", _field(f[2])]


def _sgtin_class(f: list[str]) -> list[str]:
    _arity(f, 2)
    return ["01", _gtin(f[0], f[1])]


def _arity(fields: list[str], n: int) -> None:
    if len(fields) != n:
        raise ValueError(f"{n} fields separated by dots expected, got {len(fields)}")


_INSTANCES = {
    "sgtin": _sgtin, "sscc": _sscc, "sgln": _sgln, "pgln": _pgln, "grai": _grai,
    "giai": _giai, "gsrn": _gsrn, "gsrnp": _gsrnp, "gdti": _gdti, "sgcn": _sgcn,
    "cpi": _cpi,
}  # fmt: skip
_CLASSES = {"lgtin": _lgtin, "sgtin": _sgtin_class}
