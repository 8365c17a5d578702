"""The standard's query parameters (EPCIS 2.0 §8.2.7, the REST binding's ``GET
/events``) turned into what the event store answers from its indexes (a
:class:`~idnode.epcis.selection.Selection`) and a test for the rest.

Times, event types, actions, steps, dispositions, places, transformation and event IDs
and every ``MATCH_`` parameter are index reads; the others (quantities, business
transactions, sources and destinations, persistent dispositions, error declarations,
sensor values) are tested on each event the indexes return. Values in any spelling
the standard allows (a bare CBV word or its URN, an EPC URN or its Digital Link URI)
are reduced as at capture, so a query finds an event however either spelled it. A
parameter this repository does not know is refused, never ignored: a query that
silently dropped a filter would return events the caller did not ask for.
"""

from __future__ import annotations

import base64
import hashlib
import json
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from idnode.epcis.events import CLASS_ROLES, EVENT_TYPES, millis
from idnode.epcis.identifiers import InvalidIdentifier, identifier_key, pattern_prefix
from idnode.epcis.selection import Audience, IdentifierMatch, Selection
from idnode.epcis.vocabulary import Kind, bare
from idnode.errors import InvalidQueryParameter, InvalidValue

__all__ = [
    "DEFAULT_PER_PAGE",
    "MAX_PER_PAGE",
    "EventQuery",
    "QueryParameterError",
    "parse_query",
]

DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 1000
#: The largest maxEventCount: checking it reads that many events.
MAX_COUNT = 10_000
_TOKEN_MAX = 1 << 62
Test = Callable[[Mapping[str, Any]], bool]

_MATCH_ROLES = {
    "MATCH_epc": {"epc", "child"},
    "MATCH_parentID": {"parent"},
    "MATCH_inputEPC": {"input"},
    "MATCH_outputEPC": {"output"},
    "MATCH_anyEPC": {"epc", "child", "parent", "input", "output"},
    "MATCH_epcClass": {"class", "child_class"},
    "MATCH_inputEPCClass": {"input_class"},
    "MATCH_outputEPCClass": {"output_class"},
    "MATCH_anyEPCClass": set(CLASS_ROLES - {"lot"}),
}
_EQ_COLUMNS: dict[str, tuple[str, Kind | None]] = {
    "EQ_action": ("actions", None),
    "EQ_bizStep": ("biz_steps", "BizStep"),
    "EQ_disposition": ("dispositions", "Disp"),
    "EQ_transformationID": ("transformation_ids", None),
    "EQ_eventID": ("event_ids", None),
}
_PLACES = {"EQ_readPoint": "read_points", "WD_readPoint": "read_points",
           "EQ_bizLocation": "biz_locations", "WD_bizLocation": "biz_locations"}  # fmt: skip
_COMPARE = {"EQ": operator.eq, "GT": operator.gt, "GE": operator.ge, "LT": operator.lt,
            "LE": operator.le}  # fmt: skip
_QUANTITY = re.compile(r"^(EQ|GT|GE|LT|LE)_quantity$")
_SENSOR_NUMBER = re.compile(
    r"^(EQ|GT|GE|LT|LE)_(value|minValue|maxValue|meanValue|sDev|percRank|percValue)_(.+)$"
)
_SENSOR_EQ = ("deviceID", "dataProcessingMethod", "microorganism", "chemicalSubstance",
              "bizRules", "stringValue", "hexBinaryValue", "uriValue", "booleanValue")  # fmt: skip
_SENSOR_TIME = re.compile(r"^(GE|LT)_(time|startTime|endTime)$")
_PAGING = ("perPage", "nextPageToken", "orderBy", "orderDirection", "eventCountLimit",
           "maxEventCount")  # fmt: skip


class QueryParameterError(InvalidQueryParameter):
    """A query parameter the standard does not define, or a value it cannot take
    (the REST binding's QueryParameterException)."""


@dataclass(frozen=True)
class EventQuery:
    selection: Selection
    tests: tuple[Test, ...] = ()
    per_page: int = DEFAULT_PER_PAGE
    count_limit: int | None = None  #: eventCountLimit: at most this many in all
    max_count: int | None = None  #: maxEventCount: refuse a query that finds more
    fingerprint: str = ""  #: what a page token is bound to
    served: int = 0  #: events the earlier pages returned (for eventCountLimit)

    def matches(self, event: Mapping[str, Any]) -> bool:
        return all(test(event) for test in self.tests)

    def resumed(self, token: str) -> EventQuery:
        """This query from after the page ``token`` ends."""
        try:
            data = json.loads(base64.urlsafe_b64decode(token.encode() + b"=="))
            value, seq, fingerprint = int(data[0]), int(data[1]), str(data[2])
            served = int(data[3])
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            raise QueryParameterError("nextPageToken is not one this repository issued") from exc
        if not all(-_TOKEN_MAX < n < _TOKEN_MAX for n in (value, seq, served)):
            raise QueryParameterError("nextPageToken is not one this repository issued")
        if fingerprint != self.fingerprint:
            raise QueryParameterError("nextPageToken belongs to another query")
        return replace(self, selection=replace(self.selection, after=(value, seq)), served=served)

    def wanted(self) -> int:
        """How many events this page may hold."""
        if self.count_limit is None:
            return self.per_page
        return max(0, min(self.per_page, self.count_limit - self.served))

    def token_after(self, order_value: int, seq: int, returned: int) -> str | None:
        """The token of the next page after one that returned ``returned`` events
        ending at (``order_value``, ``seq``); None when eventCountLimit is reached."""
        served = self.served + returned
        if self.count_limit is not None and served >= self.count_limit:
            return None
        raw = json.dumps([order_value, seq, self.fingerprint, served]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_query(
    params: Sequence[tuple[str, str]], audience: Audience, gs1_prefix: str = ""
) -> EventQuery:
    """An :class:`EventQuery` from query parameters ((name, value) pairs; a name may
    repeat, and a value may list several alternatives separated by ``|``)."""
    merged: dict[str, list[str]] = {}
    for name, value in params:
        merged.setdefault(name, []).extend(v for v in value.split("|") if v != "")
    parsed = _Parser(audience, gs1_prefix)
    for name, values in merged.items():
        if not values:
            raise QueryParameterError(f"{name}: no value given")
        if name in _PAGING:
            continue
        parsed.add(name, values)
    selection = replace(parsed.selection, identifiers=tuple(parsed.matches))
    order, descending = _order(merged)
    selection = replace(selection, order=order, descending=descending)
    per_page = _count(merged, "perPage", DEFAULT_PER_PAGE, MAX_PER_PAGE) or DEFAULT_PER_PAGE
    fingerprint = hashlib.sha256(
        json.dumps(sorted((k, v) for k, v in merged.items() if k != "nextPageToken"))
        .encode()
    ).hexdigest()[:16]  # fmt: skip
    query = EventQuery(
        selection,
        tuple(parsed.tests),
        per_page,
        _count(merged, "eventCountLimit", None, None),
        _count(merged, "maxEventCount", None, MAX_COUNT),
        fingerprint,
    )
    if "nextPageToken" in merged:
        query = query.resumed(merged["nextPageToken"][0])
    return query


def _order(merged: Mapping[str, list[str]]) -> tuple[str, bool]:
    by = merged.get("orderBy", [""])[0]
    if by not in ("", "eventTime", "recordTime"):
        raise QueryParameterError("orderBy is eventTime or recordTime")
    direction = merged.get("orderDirection", ["DESC" if by else "ASC"])[0].upper()
    if direction not in ("ASC", "DESC"):
        raise QueryParameterError("orderDirection is ASC or DESC")
    return ("event" if by == "eventTime" else "record"), direction == "DESC"


def _count(merged: Mapping[str, list[str]], name: str, default: int | None,
           most: int | None) -> int | None:  # fmt: skip
    if name not in merged:
        return default
    text = merged[name][0]
    if not re.fullmatch(r"[0-9]{1,9}", text) or int(text) < 1:
        raise QueryParameterError(f"{name} is a positive whole number, not {text!r}")
    value = int(text)
    if most is not None and value > most:
        raise QueryParameterError(f"{name} is at most {most}")
    return value


class _Parser:
    def __init__(self, audience: Audience, gs1_prefix: str) -> None:
        self.selection = Selection(audience)
        self.gs1_prefix = gs1_prefix
        self.matches: list[IdentifierMatch] = []
        self.tests: list[Test] = []

    def set(self, **changes: Any) -> None:
        self.selection = replace(self.selection, **changes)

    def key(self, value: str) -> str:
        try:
            return identifier_key(value, self.gs1_prefix)
        except InvalidIdentifier as exc:
            raise QueryParameterError(str(exc)) from exc

    def add(self, name: str, values: list[str]) -> None:  # noqa: PLR0912 - one branch per parameter family
        if name == "eventType":
            unknown = [v for v in values if v not in EVENT_TYPES]
            if unknown:
                raise QueryParameterError(f"eventType {unknown[0]!r} is not an EPCIS event type")
            self.set(event_types=tuple(values))
        elif name in ("GE_eventTime", "LT_eventTime", "GE_recordTime", "LT_recordTime"):
            self._time(name, values[0])
        elif name in _EQ_COLUMNS:
            column, kind = _EQ_COLUMNS[name]
            self.set(**{column: tuple(bare(v, kind) if kind else v for v in values)})
        elif name in _PLACES:
            self.set(**{_PLACES[name]: tuple(self.key(v) for v in values)})
        elif name in _MATCH_ROLES:
            self._match(name, values)
        elif name in ("EQ_persistentDisposition_set", "EQ_persistentDisposition_unset"):
            which = name.rsplit("_", 1)[1]
            wanted = {bare(v, "Disp") for v in values}
            self.tests.append(partial(_persistent, which=which, wanted=wanted))
        elif m := _QUANTITY.match(name):
            self.tests.append(_quantity_test(_COMPARE[m.group(1)], _number(name, values[0])))
        elif name.startswith(("EQ_bizTransaction_", "EQ_source_", "EQ_destination_")):
            self.tests.append(self._typed(name, values))
        elif name == "EXISTS_errorDeclaration":
            self.tests.append(_has_declaration)
        elif name in ("GE_errorDeclarationTime", "LT_errorDeclarationTime"):
            bound, ge = _millis(name, values[0]), name.startswith("GE")
            self.tests.append(partial(_declared, bound=bound, ge=ge))
        elif name == "EQ_errorReason":
            reasons = {bare(v, "ER") for v in values}
            self.tests.append(partial(_reason, reasons=reasons))
        elif name == "EQ_correctiveEventID":
            ids = set(values)
            self.tests.append(partial(_corrects, ids=ids))
        elif name == "EXISTS_sensorElementList":
            self.tests.append(_has_sensors)
        elif m := _SENSOR_NUMBER.match(name):
            self.tests.append(_sensor_number(m.group(1), m.group(2), m.group(3),
                                             _number(name, values[0])))  # fmt: skip
        elif name.startswith("EQ_") and name[3:] in _SENSOR_EQ:
            wanted = set(values)
            self.tests.append(partial(_sensor_has, attribute=name[3:], wanted=wanted))
        elif m := _SENSOR_TIME.match(name):
            bound, ge, attribute = _millis(name, values[0]), m.group(1) == "GE", m.group(2)
            self.tests.append(partial(_sensor_time, attribute=attribute, bound=bound, ge=ge))
        else:
            raise QueryParameterError(f"{name} is not a query parameter this repository knows")

    def _time(self, name: str, value: str) -> None:
        moment = _millis(name, value)
        field_ = "event_time" if "eventTime" in name else "record_time"
        low, high = getattr(self.selection, field_)
        bounds = (moment, high) if name.startswith("GE") else (low, moment)
        self.set(**{field_: bounds})

    def _match(self, name: str, values: list[str]) -> None:
        keys, prefixes = [], []
        classes = name.endswith("Class")
        for value in values:
            if classes and value.lower().startswith("urn:epc:idpat:sgtin:"):
                # A GTIN written as a pattern: the class itself, and its lots (LGTINs).
                key = self.key(value)
                keys.append(key)
                prefixes.append(key + "/10/")
                continue
            try:
                prefix = pattern_prefix(value, self.gs1_prefix)
            except InvalidIdentifier as exc:
                raise QueryParameterError(f"{name}: {exc}") from exc
            if prefix is None:
                keys.append(self.key(value))
            else:
                prefixes.append(prefix)
        self.matches.append(IdentifierMatch(frozenset(_MATCH_ROLES[name]), tuple(keys),
                                            tuple(prefixes)))  # fmt: skip

    def _typed(self, name: str, values: list[str]) -> Test:
        what, _, kind = name[3:].partition("_")
        list_name = {"bizTransaction": "bizTransactionList", "source": "sourceList",
                     "destination": "destinationList"}[what]  # fmt: skip
        vocabulary: Kind = "BTT" if what == "bizTransaction" else "SDT"
        wanted_type = bare(kind, vocabulary)
        wanted = (set(values) if what == "bizTransaction"
                  else {self.key(v) for v in values})  # fmt: skip
        gs1 = self.gs1_prefix

        def test(event: Mapping[str, Any]) -> bool:
            for item in event.get(list_name) or ():
                if not isinstance(item, Mapping):
                    continue
                if bare(str(item.get("type", "")), vocabulary) != wanted_type:
                    continue
                value = str(item.get(what, ""))
                if what != "bizTransaction":
                    with suppress(InvalidIdentifier):  # else compared as written
                        value = identifier_key(value, gs1)
                if value in wanted:
                    return True
            return False

        return test


def _millis(name: str, value: str) -> int:
    try:
        return millis(value)
    except InvalidValue as exc:
        raise QueryParameterError(f"{name}: {exc}") from exc


def _number(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError as exc:
        raise QueryParameterError(f"{name} is a number, not {value!r}") from exc


def _persistent(event: Mapping[str, Any], which: str, wanted: set[str]) -> bool:
    kept = event.get("persistentDisposition")
    if not isinstance(kept, Mapping):
        return False
    return any(bare(str(v), "Disp") in wanted for v in kept.get(which) or ())


def _quantity_test(compare: Callable[[float, float], bool], bound: float) -> Test:
    def test(event: Mapping[str, Any]) -> bool:
        for name in ("quantityList", "childQuantityList", "inputQuantityList",
                     "outputQuantityList"):  # fmt: skip
            for element in event.get(name) or ():
                quantity = element.get("quantity") if isinstance(element, Mapping) else None
                if isinstance(quantity, int | float) and compare(float(quantity), bound):
                    return True
        return False

    return test


def _declaration(event: Mapping[str, Any]) -> Mapping[str, Any]:
    declaration = event.get("errorDeclaration")
    return declaration if isinstance(declaration, Mapping) else {}


def _has_declaration(event: Mapping[str, Any]) -> bool:
    return isinstance(event.get("errorDeclaration"), Mapping)


def _has_sensors(event: Mapping[str, Any]) -> bool:
    return bool(event.get("sensorElementList"))


def _reason(event: Mapping[str, Any], reasons: set[str]) -> bool:
    reason = _declaration(event).get("reason")
    return reason is not None and bare(str(reason), "ER") in reasons


def _corrects(event: Mapping[str, Any], ids: set[str]) -> bool:
    return bool(ids & set(_declaration(event).get("correctiveEventIDs") or ()))


def _declared(event: Mapping[str, Any], bound: int, ge: bool) -> bool:
    at = _declaration(event).get("declarationTime")
    if not isinstance(at, str):
        return False
    moment = millis(at)
    return moment >= bound if ge else moment < bound


def _reports(event: Mapping[str, Any]) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """(metadata, report) of every sensor report of the event."""
    out = []
    for element in event.get("sensorElementList") or ():
        if not isinstance(element, Mapping):
            continue
        metadata = element.get("sensorMetadata")
        metadata = metadata if isinstance(metadata, Mapping) else {}
        out += [(metadata, r) for r in element.get("sensorReport") or () if isinstance(r, Mapping)]
    return out


def _measurement(kind: object) -> str:
    """``gs1:Temperature``, ``Temperature`` and ``https://gs1.org/voc/Temperature`` alike."""
    text = str(kind)
    for head in ("gs1:", "https://gs1.org/voc/", "https://ref.gs1.org/voc/"):
        if text.startswith(head):
            return text[len(head) :]
    return text


def _sensor_number(op: str, attribute: str, kind: str, bound: float) -> Test:
    compare, wanted = _COMPARE[op], _measurement(kind)

    def test(event: Mapping[str, Any]) -> bool:
        for _, report in _reports(event):
            value = report.get(attribute)
            if (
                _measurement(report.get("type", "")) == wanted
                and isinstance(value, int | float)
                and compare(float(value), bound)
            ):
                return True
        return False

    return test


def _sensor_has(event: Mapping[str, Any], attribute: str, wanted: set[str]) -> bool:
    for metadata, report in _reports(event):
        value = report.get(attribute, metadata.get(attribute))
        if value is not None and (str(value).lower() if isinstance(value, bool)
                                  else str(value)) in wanted:  # fmt: skip
            return True
    return False


def _sensor_time(event: Mapping[str, Any], attribute: str, bound: int, ge: bool) -> bool:
    for metadata, report in _reports(event):
        value = report.get(attribute, metadata.get(attribute))
        if isinstance(value, str):
            try:
                moment = millis(value)
            except InvalidValue:
                continue
            if (moment >= bound) if ge else (moment < bound):
                return True
    return False
