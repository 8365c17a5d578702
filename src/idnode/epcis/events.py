"""An EPCIS event as the repository keeps it: the event as captured, and the facts
about it that queries and traces look up by index.

The captured JSON (JSON-LD keys, user extensions and all) is what a query returns; the
facts are derived from it once, at capture: its times, business step, disposition,
places, and every identifier it names with the role it plays (``epc``, ``parent``,
``child``, ``input``, ``output``, their quantity-list classes, and ``lot``: the batch a
commissioning event's instance data names). Genealogy needs nothing else: a
transformation leads from its inputs to its outputs, an aggregation or association
from its children to their parent.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from idnode.epcis.identifiers import DIGITAL_LINK, identifier_key
from idnode.epcis.vocabulary import bare
from idnode.errors import InvalidValue

__all__ = [
    "CLASS_ROLES",
    "EVENT_TYPES",
    "INSTANCE_ROLES",
    "EventFacts",
    "facts_of",
    "iso_time",
    "millis",
]

EVENT_TYPES = (
    "ObjectEvent",
    "AggregationEvent",
    "TransactionEvent",
    "TransformationEvent",
    "AssociationEvent",
)
#: Where each event type lists identifiers: JSON field -> role.
_INSTANCE_FIELDS = {
    "epcList": "epc",
    "parentID": "parent",
    "childEPCs": "child",
    "inputEPCList": "input",
    "outputEPCList": "output",
}
_CLASS_FIELDS = {
    "quantityList": "class",
    "childQuantityList": "child_class",
    "inputQuantityList": "input_class",
    "outputQuantityList": "output_class",
}
INSTANCE_ROLES = frozenset(_INSTANCE_FIELDS.values())
CLASS_ROLES = frozenset(_CLASS_FIELDS.values()) | {"lot"}
_LOT_KEYS = ("cbvmda:lotNumber", "lotNumber", "urn:epcglobal:cbv:mda#lotNumber")


@dataclass(frozen=True, slots=True)
class EventFacts:
    """What is indexed of one event (identifiers and places as keys)."""

    event_type: str
    event_time: int  #: milliseconds since the epoch, UTC
    action: str  #: ADD, OBSERVE or DELETE; "" for a transformation
    biz_step: str
    disposition: str
    read_point: str
    biz_location: str
    transformation_id: str
    identifiers: tuple[tuple[str, str], ...]  #: (role, key), each once


#: Times after the end of this year would not be written back in four digits.
_LAST_YEAR = 9998


def millis(text: str) -> int:
    """Milliseconds since the epoch of an RFC 3339 time (InvalidValue if it is not)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise InvalidValue(f"{text!r} is not a date and time (RFC 3339)") from exc
    if moment.tzinfo is None:
        raise InvalidValue(f"{text!r} has no time zone (Z or ±hh:mm)")
    try:
        utc = moment.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise InvalidValue(f"{text!r} is outside the years 1 to {_LAST_YEAR} in UTC") from exc
    if not 1 <= utc.year <= _LAST_YEAR:
        raise InvalidValue(f"{text!r} is outside the years 1 to {_LAST_YEAR} in UTC")
    return int(moment.timestamp() * 1000 + (0.5 if moment.microsecond % 1000 >= 500 else 0))


def iso_time(ms: int) -> str:
    """An RFC 3339 UTC time with milliseconds."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def facts_of(event: Mapping[str, Any], gs1_prefix: str = "") -> EventFacts:
    """The facts of a schema-valid event."""
    event_type = str(event["type"])
    seen: dict[tuple[str, str], None] = {}
    for role, text in _named(event, gs1_prefix):
        seen[(role, identifier_key(text, gs1_prefix))] = None
    return EventFacts(
        event_type=event_type,
        event_time=millis(str(event["eventTime"])),
        action=str(event.get("action", "")),
        biz_step=bare(str(event.get("bizStep", "")), "BizStep"),
        disposition=bare(str(event.get("disposition", "")), "Disp"),
        read_point=_place(event.get("readPoint"), gs1_prefix),
        biz_location=_place(event.get("bizLocation"), gs1_prefix),
        transformation_id=str(event.get("transformationID", "")),
        identifiers=tuple(seen),
    )


def _named(event: Mapping[str, Any], gs1_prefix: str) -> Iterator[tuple[str, str]]:
    for field, role in _INSTANCE_FIELDS.items():
        value = event.get(field)
        if isinstance(value, str):
            yield role, value
        elif isinstance(value, list):
            yield from ((role, str(v)) for v in value)
    for field, role in _CLASS_FIELDS.items():
        for element in event.get(field) or ():
            if isinstance(element, Mapping) and "epcClass" in element:
                yield role, str(element["epcClass"])
    yield from _lots(event, gs1_prefix)


def _lots(event: Mapping[str, Any], gs1_prefix: str) -> Iterator[tuple[str, str]]:
    """A commissioning event's batch: an ObjectEvent that adds serialised GTINs and says
    their lot in its instance data makes each a member of that lot (GTIN + lot), so a
    recall of the batch reaches them."""
    ilmd = event.get("ilmd")
    if event.get("type") != "ObjectEvent" or event.get("action") != "ADD":
        return
    if not isinstance(ilmd, Mapping):
        return
    lot = next((str(ilmd[k]) for k in _LOT_KEYS if k in ilmd), None)
    if lot is None:
        return
    for epc in event.get("epcList") or ():
        key = identifier_key(str(epc), gs1_prefix)
        head = DIGITAL_LINK + "01/"
        if key.startswith(head) and "/21/" in key:
            gtin = key[len(head) :].split("/", 1)[0]
            yield "lot", f"{head}{gtin}/10/{quote(lot, safe='')}"


def _place(value: object, gs1_prefix: str) -> str:
    if isinstance(value, Mapping) and "id" in value:
        return identifier_key(str(value["id"]), gs1_prefix)
    return ""
