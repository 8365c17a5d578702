"""EPCIS XML (2.0, and 1.2) read into the JSON form of EPCIS 2.0.

The two bindings say the same things: ``<epcList><epc>`` is ``"epcList": [...]``,
``<bizTransaction type="po">`` is ``{"type": "po", "bizTransaction": ...}``, a sensor
report's attributes are its JSON fields. CBV terms written as EPCIS 1.2 URNs
(``urn:epcglobal:cbv:bizstep:shipping``) become the bare words 2.0 writes. EPCIS 1.2
put what it added over 1.0 inside
``<extension>`` and ``<baseExtension>`` elements; they are flattened into their parent,
which is where 2.0 puts the same fields. User extensions (elements in a namespace of
their own) become ``prefix:name`` keys, their namespaces entries of the document's
``@context``, as the standard's JSON-LD does. The XML is parsed by defusedxml: no
entity expansion, no external references.
"""

from __future__ import annotations

import io
import math
from typing import Any
from xml.etree.ElementTree import Element

from defusedxml.common import DefusedXmlException
from defusedxml.ElementTree import ParseError, iterparse

from idnode.epcis.documents import STANDARD_CONTEXT, DocumentRejected
from idnode.epcis.vocabulary import Kind, bare

__all__ = ["xml_to_json"]

_EPCIS_NS = ("urn:epcglobal:epcis:xsd:2", "urn:epcglobal:epcis:xsd:1",
             "urn:epcglobal:epcis-query:xsd:2", "urn:epcglobal:epcis-query:xsd:1")  # fmt: skip
_LISTS = {  # list element -> its item element
    "epcList": "epc",
    "childEPCs": "epc",
    "inputEPCList": "epc",
    "outputEPCList": "epc",
    "correctiveEventIDs": "correctiveEventID",
}
_QUANTITIES = ("quantityList", "childQuantityList", "inputQuantityList", "outputQuantityList")
_TYPED = {"bizTransactionList": "bizTransaction", "sourceList": "source",
          "destinationList": "destination"}  # fmt: skip
_NUMBERS = frozenset(
    ("value", "minValue", "maxValue", "meanValue", "sDev", "percRank", "percValue")
)
_FLATTENED = ("extension", "baseExtension")
_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
#: Fields whose CBV terms EPCIS 1.2 wrote as URNs; 2.0's JSON takes the bare word.
_TERMS: dict[str, Kind] = {"bizStep": "BizStep", "disposition": "Disp", "reason": "ER"}


def xml_to_json(data: bytes) -> dict[str, Any]:
    """The JSON form of an EPCIS XML document (DocumentRejected if it is not one)."""
    prefixes: dict[str, str] = {}
    try:
        root: Element | None = None
        for kind, item in iterparse(io.BytesIO(data), events=("start-ns", "start")):
            if kind == "start-ns":
                prefix, uri = item
                if uri not in _EPCIS_NS and prefix and uri not in prefixes:
                    prefixes[uri] = prefix
            elif root is None:
                root = item
    except (ParseError, DefusedXmlException, LookupError, ValueError) as exc:
        raise DocumentRejected([f"not well-formed XML: {exc}"]) from exc
    assert root is not None
    return _Reader(prefixes).document(root)


class _Reader:
    def __init__(self, prefixes: dict[str, str]) -> None:
        self.prefixes = prefixes
        self.used: dict[str, str] = {}

    def document(self, root: Element) -> dict[str, Any]:
        ns, name = _split(root.tag)
        # Some 1.2 documents declare the epcis namespace but leave the root outside it.
        if ns not in (*_EPCIS_NS, None) or name not in ("EPCISDocument", "EPCISQueryDocument"):
            raise DocumentRejected([f"the root element is {root.tag}, not an EPCIS document"])
        body = _child(root, "EPCISBody")
        if body is None:
            raise DocumentRejected(["the document has no EPCISBody"])
        holder: Element | None = body
        if name == "EPCISQueryDocument":
            for step in ("QueryResults", "resultsBody"):
                holder = None if holder is None else _child(holder, step)
        event_list = None if holder is None else _child(holder, "EventList")
        events = [] if event_list is None else [self.event(e) for e in _events(event_list)]
        doc: dict[str, Any] = {"@context": [STANDARD_CONTEXT], "type": "EPCISDocument",
                               "schemaVersion": "2.0"}  # fmt: skip
        doc["creationDate"] = root.get("creationDate", "")
        doc["epcisBody"] = {"eventList": events}
        if self.used:
            doc["@context"].append(dict(sorted(self.used.items())))
        return doc

    def event(self, element: Element) -> dict[str, Any]:
        out: dict[str, Any] = {"type": _split(element.tag)[1]}
        self.fields(element, out)
        return out

    def fields(self, element: Element, out: dict[str, Any]) -> None:
        for child in element:
            ns, name = _split(child.tag)
            if ns is None and name in _FLATTENED:
                self.fields(child, out)
            elif ns is not None and ns not in _EPCIS_NS:
                _add(out, self.key(ns, name), self.extension(child))
            else:
                out[name] = self.field(name, child)

    def field(self, name: str, element: Element) -> Any:  # noqa: PLR0911 - one per field shape
        if name in _LISTS:
            return [_text(e) for e in element if _split(e.tag)[1] == _LISTS[name]]
        if name in _QUANTITIES:
            return [self.quantity(e) for e in element]
        if name in _TYPED:
            return [self.typed(e, _TYPED[name]) for e in element]
        if name in ("readPoint", "bizLocation"):
            place: dict[str, Any] = {}
            self.fields(element, place)
            return place
        if name == "persistentDisposition":
            kept: dict[str, list[str]] = {}
            for e in element:
                kept.setdefault(_split(e.tag)[1], []).append(bare(_text(e), "Disp"))
            return kept
        if name == "sensorElementList":
            return [self.sensor(e) for e in element]
        if name == "ilmd":
            ilmd: dict[str, Any] = {}
            self.fields(element, ilmd)
            return ilmd
        if name == "errorDeclaration":
            declaration: dict[str, Any] = {}
            self.fields(element, declaration)
            return declaration
        if len(element):
            nested: dict[str, Any] = {}
            self.fields(element, nested)
            return nested
        if name in _TERMS:
            return bare(_text(element), _TERMS[name])
        return _text(element)

    def quantity(self, element: Element) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for e in element:
            if e.get(_NIL) in ("true", "1"):
                continue  # <quantity xsi:nil="true"/>: a class with no quantity given
            name = _split(e.tag)[1]
            out[name] = _number(_text(e)) if name == "quantity" else _text(e)
        return out

    def typed(self, element: Element, name: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        kind = element.get("type")
        if kind is not None:
            out["type"] = bare(kind, "BTT" if name == "bizTransaction" else "SDT")
        out[name] = _text(element)
        return out

    def sensor(self, element: Element) -> dict[str, Any]:
        out: dict[str, Any] = {}
        reports = []
        for child in element:
            ns, name = _split(child.tag)
            if name == "sensorMetadata" and ns is None:
                out["sensorMetadata"] = self.attributes(child)
            elif name == "sensorReport" and ns is None:
                reports.append(self.attributes(child))
            elif ns is not None:
                _add(out, self.key(ns, name), self.extension(child))
        out["sensorReport"] = reports
        return out

    def attributes(self, element: Element) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for raw, value in element.attrib.items():
            ns, name = _split(raw)
            if ns is not None:
                out[self.key(ns, name)] = value
            elif name in _NUMBERS:
                out[name] = _number(value)
            elif name == "booleanValue":
                out[name] = value.strip().lower() in ("true", "1")
            else:
                out[name] = value
        for child in element:  # extension elements inside a report
            ns, name = _split(child.tag)
            if ns is not None:
                _add(out, self.key(ns, name), self.extension(child))
        return out

    def extension(self, element: Element) -> Any:
        if not len(element):
            return _text(element)
        out: dict[str, Any] = {}
        for child in element:
            ns, name = _split(child.tag)
            _add(out, name if ns is None else self.key(ns, name), self.extension(child))
        return out

    def key(self, ns: str, name: str) -> str:
        prefix = self.prefixes.get(ns)
        if prefix is None:
            prefix = f"ns{len(self.prefixes)}"
            self.prefixes[ns] = prefix
        self.used[prefix] = ns
        return f"{prefix}:{name}"


def _events(event_list: Element) -> list[Element]:
    found = []
    for child in event_list:
        ns, name = _split(child.tag)
        if ns is None and name == "extension":  # 1.2 wraps newer event types so, nested
            found += _events(child)
        else:
            found.append(child)
    return found


def _add(out: dict[str, Any], key: str, value: Any) -> None:
    """A repeated element becomes a list."""
    if key not in out:
        out[key] = value
    elif isinstance(out[key], list):
        out[key].append(value)
    else:
        out[key] = [out[key], value]


def _split(tag: str) -> tuple[str | None, str]:
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return ns, name
    return None, tag


def _child(element: Element, name: str) -> Element | None:
    return next((e for e in element if _split(e.tag)[1] == name), None)


def _text(element: Element) -> str:
    return (element.text or "").strip()


def _number(text: str) -> int | float | str:
    try:
        number = float(text)
    except ValueError:
        return text  # left for the schema to refuse
    if not math.isfinite(number):
        return text  # NaN and infinities: left for the schema to refuse
    return int(number) if number.is_integer() and "." not in text and "e" not in text else number
