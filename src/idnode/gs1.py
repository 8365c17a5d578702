"""GS1 codes as identifiers: parsing barcodes, element strings and Digital Link URIs.

Parsing and check-digit validation are biip's; this module decides what identifies an
item. A GS1 code names an entity by a primary key (GTIN, SSCC, GLN) and, for some keys,
key qualifiers (for a GTIN: consumer product variant, batch/lot, serial number); every
other element (an expiry date, a weight) is a data attribute, which describes the item
but does not name it. The identifier of an entity under a node's prefix is the
prefix followed by its GS1 Digital Link path::

    (01)09506000134352(17)201225(21)12345  ->  88.100.1/01/09506000134352/21/12345

so a code scanned in any of its forms reaches the same record, and a resolver can walk
up from a serial number to the product (:meth:`GS1Key.candidates`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from biip import ParseError, parse
from biip.gs1_digital_link_uris import GS1DigitalLinkURI
from biip.gs1_element_strings import GS1ElementString
from biip.gs1_messages import GS1Message

from idnode.errors import InvalidValue

__all__ = ["PRIMARY_KEYS", "GS1Key", "InvalidGS1", "from_path", "parse_gs1"]

#: The primary keys served, each with its key qualifiers in Digital Link path order.
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "01": ("22", "10", "21"),  # GTIN: consumer product variant, batch/lot, serial
    "00": (),  # SSCC
    "414": ("254",),  # GLN: GLN extension component
}
_NAMES = {"01": "GTIN", "00": "SSCC", "414": "GLN", "22": "CPV", "10": "batch/lot",
          "21": "serial", "254": "GLN extension"}  # fmt: skip


class InvalidGS1(InvalidValue):
    """Not a GS1 code, or not one that names an entity this node can serve."""


@dataclass(frozen=True, slots=True)
class GS1Key:
    primary: str  #: the primary key's AI: 01, 00 or 414
    value: str
    qualifiers: tuple[tuple[str, str], ...] = ()  #: (AI, value) in path order
    attributes: tuple[tuple[str, str], ...] = ()  #: the other elements, as given

    @property
    def path(self) -> str:
        """The Digital Link path: ``/01/09506000134352/21/12345``."""
        parts = [(self.primary, self.value), *self.qualifiers]
        return "".join(f"/{ai}/{quote(value, safe='')}" for ai, value in parts)

    def identifier(self, prefix: str) -> str:
        return prefix + self.path

    def candidates(self) -> Iterator[GS1Key]:
        """This key, then ever less specific ones down to the primary key alone: a
        serial number's record may not exist where its product's does."""
        for n in range(len(self.qualifiers), -1, -1):
            yield GS1Key(self.primary, self.value, self.qualifiers[:n])

    def describe(self) -> dict[str, str]:
        named = [(self.primary, self.value), *self.qualifiers, *self.attributes]
        return {_NAMES.get(ai, f"AI {ai}"): value for ai, value in named}


def parse_gs1(text: str) -> GS1Key:
    """A GS1 Digital Link URI, an element string (``(01)...(21)...``), barcode content
    (with its symbology identifier and GS separators) or a bare GTIN or SSCC."""
    text = text.strip()
    if not text:
        raise InvalidGS1("no GS1 code given")
    if text.lower().startswith(("http://", "https://")):
        return from_path(urlsplit(text).path, urlsplit(text).query)
    try:
        if text.startswith("("):
            return _key_of(GS1Message.parse_hri(text).element_strings, text)
        result = parse(text)
    except ParseError as exc:
        raise InvalidGS1(f"not a GS1 code: {exc}") from exc
    if text.isdigit() and result.gtin is not None and result.gtin_error is None:
        return GS1Key("01", result.gtin.as_gtin_14())  # a bare EAN/UPC/GTIN
    if result.gs1_message is not None:
        return _key_of(result.gs1_message.element_strings, text)
    errors = [e for e in (result.gs1_message_error, result.gtin_error, result.sscc_error) if e]
    raise InvalidGS1(f"not a GS1 code: {errors[0] if errors else text!r}")


def from_path(path: str, query: str = "") -> GS1Key:
    """The key a Digital Link path (and query string, for data attributes) names; the
    path may sit below a stem (``/some/stem/01/...``) and end in a slash."""
    segments = [unquote(s) for s in path.strip("/").split("/") if s]
    start = next((i for i, s in enumerate(segments) if s in PRIMARY_KEYS), None)
    if start is None:
        raise InvalidGS1(f"{path!r} holds no GS1 primary key ({', '.join(PRIMARY_KEYS)})")
    pairs = segments[start:]
    if len(pairs) % 2:
        raise InvalidGS1(f"{path!r}: every application identifier needs a value")
    uri = "https://id.gs1.org/" + "/".join(quote(s, safe="") for s in pairs)
    uri += f"?{query}" if query else ""
    try:
        link = GS1DigitalLinkURI.parse(uri)
    except ParseError as exc:
        raise InvalidGS1(f"not a GS1 Digital Link: {exc}") from exc
    key = _key_of(link.element_strings, path)
    in_path = [pairs[i] for i in range(0, len(pairs), 2)]
    expected = [key.primary] + [ai for ai, _ in key.qualifiers]
    if in_path != expected:
        raise InvalidGS1(
            f"{path!r}: the path must be the primary key then its qualifiers in the "
            f"order {'/'.join([key.primary, *PRIMARY_KEYS[key.primary]])}; data "
            "attributes go in the query string"
        )
    return key


def _key_of(elements: list[GS1ElementString], text: str) -> GS1Key:
    for element in elements:
        problem = element.gtin_error or element.sscc_error or element.gln_error
        if problem:
            raise InvalidGS1(f"invalid GS1 code: {problem}")
    found = {e.ai.ai: e.value for e in elements}
    if len(found) < len(elements):
        raise InvalidGS1(f"{text!r} repeats an application identifier")
    primary = next((e.ai.ai for e in elements if e.ai.ai in PRIMARY_KEYS), None)
    if primary is None:
        raise InvalidGS1(f"{text!r} names no entity: it has no GTIN (01), SSCC (00) or GLN (414)")
    value = found.pop(primary)
    qualifiers = tuple((ai, found.pop(ai)) for ai in PRIMARY_KEYS[primary] if ai in found)
    return GS1Key(primary, value, qualifiers, tuple(found.items()))
