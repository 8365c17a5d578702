"""The canonical event hash of CBV 2.0 (§8.9): an event's identity when it has no
eventID, so that capturing the same event twice stores it once.

The hash is SHA-256 over a "pre-hash string": the event's fields in a fixed order,
each ``name=value`` with no separators, lists sorted, identifiers in their canonical
Digital Link form, CBV terms as web URIs, times in UTC to the millisecond, user
extensions as ``{namespace}name=value`` sorted. What does not say what happened is
left out: eventID, recordTime, certificationInfo, errorDeclaration. The result is
written ``ni:///sha-256;<hex>?ver=CBV2.0``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

from idnode.epcis.events import iso_time, millis
from idnode.epcis.identifiers import InvalidIdentifier, identifier_key
from idnode.epcis.vocabulary import Kind, web_uri

__all__ = ["event_hash", "prehash"]

_EPC_LISTS = ("epcList", "inputEPCList", "childEPCs")
_QUANTITY_LISTS = ("quantityList", "childQuantityList", "inputQuantityList")
#: The standard fields, in the order the pre-hash string takes them.
_ORDER = (
    "eventType", "eventTime", "eventTimeZoneOffset", "parentID", "epcList", "inputEPCList",
    "childEPCs", "quantityList", "childQuantityList", "inputQuantityList", "outputEPCList",
    "outputQuantityList", "action", "transformationID", "bizStep", "disposition",
    "persistentDisposition", "readPoint", "bizLocation", "bizTransactionList", "sourceList",
    "destinationList", "sensorElementList", "ilmd",
)  # fmt: skip
_LEFT_OUT = frozenset(("type", "eventID", "recordTime", "certificationInfo", "errorDeclaration",
                       "@context"))  # fmt: skip
_METADATA = ("time", "startTime", "endTime", "deviceID", "deviceMetadata", "rawData",
             "dataProcessingMethod", "bizRules")  # fmt: skip
_REPORT = ("type", "exception", "deviceID", "deviceMetadata", "rawData", "dataProcessingMethod",
           "time", "microorganism", "chemicalSubstance", "value", "component", "stringValue",
           "booleanValue", "hexBinaryValue", "uriValue", "minValue", "maxValue", "meanValue",
           "sDev", "percRank", "percValue", "uom", "coordinateReferenceSystem")  # fmt: skip
_IDENTIFIERS = frozenset(("deviceID", "deviceMetadata", "rawData", "dataProcessingMethod",
                          "bizRules", "uriValue"))  # fmt: skip
_VOC = "https://ref.gs1.org/voc/"
_KNOWN_PREFIXES = {"cbvmda": "urn:epcglobal:cbv:mda", "gs1": "https://gs1.org/voc/"}


def event_hash(event: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(prehash(event).encode("utf-8")).hexdigest()
    return f"ni:///sha-256;{digest}?ver=CBV2.0"


def prehash(event: Mapping[str, Any]) -> str:
    namespaces = dict(_KNOWN_PREFIXES)
    context = event.get("@context")
    for entry in context if isinstance(context, list) else [context]:
        if isinstance(entry, Mapping):
            namespaces.update({k: str(v) for k, v in entry.items() if isinstance(v, str)})
    parts = [f"eventType={event.get('type', '')}"]
    for name in _ORDER[1:]:
        if name in event:
            parts.append(_field(name, event[name], namespaces))
    for name in ("readPoint", "bizLocation"):  # a place's own extensions come after
        place = event.get(name)
        extra = sorted(_extension(k, v, namespaces) for k, v in place.items()
                       if k != "id") if isinstance(place, Mapping) else []  # fmt: skip
        parts += [name, *extra] if extra else []
    extensions = [_extension(k, v, namespaces) for k, v in event.items()
                  if k not in _LEFT_OUT and k not in _ORDER]  # fmt: skip
    return "".join(parts) + "".join(sorted(extensions))


def _field(name: str, value: Any, ns: dict[str, str]) -> str:  # noqa: PLR0911 - one per shape
    if name == "eventTime":
        return f"eventTime={iso_time(millis(str(value)))}"
    if name in _EPC_LISTS or name == "outputEPCList":
        return name + "".join(sorted(f"epc={_id(v)}" for v in value or ()))
    if name in _QUANTITY_LISTS or name == "outputQuantityList":
        return name + "".join(sorted(_quantity(q) for q in value or () if isinstance(q, Mapping)))
    if name in ("bizStep", "disposition"):
        return f"{name}={web_uri(str(value), 'BizStep' if name == 'bizStep' else 'Disp')}"
    if name == "persistentDisposition":
        out = name
        for which in ("set", "unset"):
            out += "".join(sorted(f"{which}={web_uri(str(v), 'Disp')}"
                                  for v in (value or {}).get(which) or ()))  # fmt: skip
        return out
    if name in ("readPoint", "bizLocation"):
        return f"{name}id={_id(str((value or {}).get('id', '')))}"
    if name == "bizTransactionList":
        return name + "".join(sorted(_typed(v, "bizTransaction", "BTT") for v in value or ()))
    if name in ("sourceList", "destinationList"):
        item = name[: -len("List")]
        return name + "".join(sorted(_typed(v, item, "SDT") for v in value or ()))
    if name == "sensorElementList":
        return "".join(sorted(_sensor(e, ns) for e in value or () if isinstance(e, Mapping)))
    if name == "ilmd":
        items = value.items() if isinstance(value, Mapping) else ()
        return "ilmd" + "".join(sorted(_extension(k, v, ns) for k, v in items))
    return f"{name}={_id(str(value)) if name == 'parentID' else _scalar(value)}"


def _quantity(q: Mapping[str, Any]) -> str:
    out = f"quantityElementepcClass={_id(str(q.get('epcClass', '')))}"
    if "quantity" in q:
        out += f"quantity={_scalar(q['quantity'])}"
    if "uom" in q:
        out += f"uom={q['uom']}"
    return out


def _typed(item: Any, name: str, kind: Kind) -> str:
    if not isinstance(item, Mapping):
        return ""
    out = f"type={web_uri(str(item['type']), kind)}" if "type" in item else ""
    value = str(item.get(name, ""))
    return out + f"{name}={_id(value)}"


def _sensor(element: Mapping[str, Any], ns: dict[str, str]) -> str:
    out = "sensorElement"
    metadata = element.get("sensorMetadata")
    if isinstance(metadata, Mapping):
        out += "sensorMetadata" + _attributes(metadata, _METADATA, ns)
    for report in sorted(_attributes(r, _REPORT, ns) for r in element.get("sensorReport") or ()
                          if isinstance(r, Mapping)):  # fmt: skip
        out += "sensorReport" + report
    rest = [_extension(k, v, ns) for k, v in element.items()
            if k not in ("sensorMetadata", "sensorReport")]  # fmt: skip
    return out + "".join(sorted(rest))


def _attributes(values: Mapping[str, Any], order: tuple[str, ...], ns: dict[str, str]) -> str:
    out = ""
    for name in order:
        if name not in values:
            continue
        value = values[name]
        if name in ("time", "startTime", "endTime"):
            text = iso_time(millis(str(value)))
        elif name in ("type", "exception"):
            text = _vocabulary(str(value))
        elif name in _IDENTIFIERS:
            text = _id(str(value))
        else:
            text = _scalar(value)
        out += f"{name}={text}"
    extensions = [_extension(k, v, ns) for k, v in values.items() if k not in order]
    return out + "".join(sorted(extensions))


def _vocabulary(value: str) -> str:
    for head in ("gs1:", "https://gs1.org/voc/"):
        if value.startswith(head):
            return _VOC + value[len(head) :]
    return value if ":" in value else _VOC + value


def _extension(key: str, value: Any, ns: dict[str, str]) -> str:
    prefix, sep, local = key.partition(":")
    name = f"{{{ns[prefix]}}}{local}" if sep and prefix in ns else key
    if isinstance(value, Mapping):
        return name + "".join(sorted(_extension(k, v, ns) for k, v in value.items()))
    if isinstance(value, list):
        return "".join(sorted(_extension(key, v, ns) for v in value))
    return f"{name}={_scalar(value)}"


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    try:
        if isinstance(value, int | float):
            return _number(float(value))
        text = str(value)
        return _number(float(text)) if text.strip() and not text.isalpha() else text
    except (ValueError, OverflowError):  # not a number, or one past a double's range
        return str(value)


def _number(number: float) -> str:
    if not math.isfinite(number):
        return repr(number)
    return str(int(number)) if number.is_integer() else repr(number)


def _id(value: str) -> str:
    try:
        key = identifier_key(value)
    except InvalidIdentifier:
        return value
    return key if key.startswith("https://id.gs1.org/") else value
