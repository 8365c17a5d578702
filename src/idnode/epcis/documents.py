"""EPCIS documents in, events out: JSON and JSON-LD checked against the standard's
JSON schema, XML (EPCIS 2.0 and 1.2) read into the same JSON form first.

A document is accepted whole or not at all: :func:`read_document` raises
:class:`DocumentRejected` naming every fault it found (the event, where in it, and
what is wrong), so that a capture stores nothing from a document with one bad event.
The schema is the one GS1 publishes (``schema/EPCIS-JSON-Schema.json``, from
github.com/gs1/EPCIS, unchanged; ``schema/NOTICE.md`` says where from and under what
notice); its ``uri`` formats are not enforced, since an event on
our node may name an identifier as ``88.100.1/PUMP-0001``, which is not a URI.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from itertools import islice
from typing import Any

import fastjsonschema
from fastjsonschema import JsonSchemaValueException
from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError

from idnode.epcis.events import EVENT_TYPES, iso_time, millis
from idnode.epcis.vocabulary import Kind, bare
from idnode.errors import InvalidDocument, InvalidValue

__all__ = [
    "MAX_EVENTS",
    "STANDARD_CONTEXT",
    "Document",
    "DocumentRejected",
    "capture_document",
    "query_document",
    "read_document",
]

#: Events one capture may hold (GS1-EPCIS-Capture-Limit).
MAX_EVENTS = 10_000
#: The context every EPCIS 2.0 JSON-LD document names.
STANDARD_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
_MAX_FAULTS = 50
#: A \u escape of a lone UTF-16 surrogate, which no text can be stored with.
_SURROGATE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


class DocumentRejected(InvalidDocument):
    """The document is not a valid EPCIS document; ``faults`` says each way it is not."""

    def __init__(self, faults: list[str]) -> None:
        shown = faults[:_MAX_FAULTS]
        more = f" (and {len(faults) - len(shown)} more)" if len(faults) > len(shown) else ""
        super().__init__("; ".join(shown) + more)
        self.faults = faults


@dataclass(frozen=True, slots=True)
class Document:
    events: list[dict[str, Any]]  #: each as JSON, with the document's own context
    context: list[Any]  #: the document's @context entries beyond the standard one


def capture_document(
    events: Sequence[Mapping[str, Any]], context: Sequence[Any] = (), created: str = ""
) -> bytes:
    """An EPCISDocument of ``events`` as bytes to capture (``context``: the
    namespaces of their extensions; ``created``: its creationDate, else now)."""
    document = {
        "@context": [STANDARD_CONTEXT, *context],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": created or iso_time(int(time.time() * 1000)),
        "epcisBody": {"eventList": list(events)},
    }
    return json.dumps(document).encode()


def query_document(
    events: list[dict[str, Any]],
    context: Sequence[Any],
    query_name: str = "SimpleEventQuery",
    subscription_id: str | None = None,
) -> dict[str, Any]:
    """An EPCISQueryDocument of ``events``, as queries answer and subscriptions push."""
    results: dict[str, Any] = {"queryName": query_name}
    if subscription_id is not None:
        results["subscriptionID"] = subscription_id
    results["resultsBody"] = {"eventList": events}
    return {
        "@context": [STANDARD_CONTEXT, *context],
        "type": "EPCISQueryDocument",
        "schemaVersion": "2.0",
        "creationDate": iso_time(int(time.time() * 1000)),
        "epcisBody": {"queryResults": results},
    }


def read_document(data: bytes, media_type: str = "") -> Document:
    """The events of an EPCIS document (an EPCISDocument, or an EPCISQueryDocument
    whose results are captured again), JSON or XML by ``media_type`` or, without one,
    by its first character."""
    try:
        return _read(data, media_type)
    except RecursionError:  # nesting deeper than Python's stack: no document nests so
        raise DocumentRejected(["the document nests too deeply"]) from None


def _read(data: bytes, media_type: str) -> Document:
    kind = media_type.split(";", maxsplit=1)[0].strip().lower()
    if "xml" in kind or (not kind and data.lstrip()[:1] == b"<"):
        from idnode.epcis.xml import xml_to_json

        doc = xml_to_json(data)
    else:
        if _SURROGATE.search(data) or b"\\u0000" in data or b"\x00" in data:
            raise DocumentRejected(["the document holds a NUL or an unpaired surrogate"])
        try:
            doc = json.loads(data, parse_constant=_no_constant)
        except ValueError as exc:  # JSONDecodeError, and numbers too long to read
            raise DocumentRejected([f"not JSON: {exc}"]) from exc
    return check_document(doc)


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number JSON allows")


def check_document(doc: object) -> Document:
    """The events of a document already read into its JSON form."""
    if not isinstance(doc, dict):
        raise DocumentRejected(["an EPCIS document is a JSON object"])
    kind = doc.get("type")
    if kind not in ("EPCISDocument", "EPCISQueryDocument"):
        raise DocumentRejected([f"type must be EPCISDocument or EPCISQueryDocument, not {kind!r}"])
    for event in _event_list(doc) or ():
        _bare_terms(event)
    faults = _schema_faults(doc)
    events = _event_list(doc)
    if events is None and not faults:
        faults.append("the document holds no event list")
    events = events or []
    if len(events) > MAX_EVENTS:
        raise DocumentRejected([f"{len(events)} events: one capture takes at most {MAX_EVENTS}"])
    for n, event in enumerate(events):
        if len(faults) > _MAX_FAULTS:
            break
        faults += [f"event {n}: {fault}" for fault in _event_faults(event)]
    if faults:
        raise DocumentRejected(list(dict.fromkeys(faults)))
    context = doc.get("@context", [])
    context = context if isinstance(context, list) else [context]
    own = [c for c in context if c != STANDARD_CONTEXT]
    out = []
    for event in events:
        kept = dict(event)
        if own and "@context" not in kept:
            kept["@context"] = own
        out.append(kept)
    return Document(out, own)


def _schema_faults(doc: dict[str, Any]) -> list[str]:
    """Every way ``doc`` breaks the schema. A compiled validator answers first (a
    valid document, the usual case, costs it about 30 µs an event); only a document
    it refuses is walked again by jsonschema, which names every fault, not the first."""
    try:
        _compiled()(doc)
    except JsonSchemaValueException as exc:
        faults = [_describe(e) for e in islice(_validator().iter_errors(doc), 4 * _MAX_FAULTS)]
        return faults or [exc.message.removeprefix("data.")]
    return []


@cache
def _compiled() -> Callable[[Any], Any]:
    return fastjsonschema.compile(_schema(), use_formats=False)


@cache
def _schema() -> dict[str, Any]:
    text = files("idnode.epcis").joinpath("schema/EPCIS-JSON-Schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator() -> Draft7Validator:
    return Draft7Validator(_schema())


def _event_list(doc: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    body = doc.get("epcisBody")
    if not isinstance(body, Mapping):
        return None
    if doc.get("type") == "EPCISQueryDocument":
        results = body.get("queryResults", {})
        body = results.get("resultsBody", {}) if isinstance(results, Mapping) else {}
    events = body.get("eventList") if isinstance(body, Mapping) else None
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        return None
    return events


def _bare_terms(event: dict[str, Any]) -> None:
    """EPCIS 1.x wrote CBV terms as URNs (``urn:epcglobal:cbv:bizstep:shipping``), and
    documents converted from it still do; 2.0's JSON schema takes the bare word for the
    same term, so they are read as that word (the same event, by CBV's equivalence)."""

    def term(value: object, kind: Kind) -> object:
        return bare(value, kind) if isinstance(value, str) else value

    for field, kind in (("bizStep", "BizStep"), ("disposition", "Disp")):
        if field in event:
            event[field] = term(event[field], kind)  # type: ignore[arg-type]
    kept = event.get("persistentDisposition")
    if isinstance(kept, dict):
        for which in ("set", "unset"):
            if isinstance(kept.get(which), list):
                kept[which] = [term(v, "Disp") for v in kept[which]]
    for field, kind in (("bizTransactionList", "BTT"), ("sourceList", "SDT"),
                        ("destinationList", "SDT")):  # fmt: skip
        for item in event.get(field) or ():
            if isinstance(item, dict) and "type" in item:
                item["type"] = term(item["type"], kind)  # type: ignore[arg-type]
    declaration = event.get("errorDeclaration")
    if isinstance(declaration, dict) and "reason" in declaration:
        declaration["reason"] = term(declaration["reason"], "ER")


def _event_faults(event: Mapping[str, Any]) -> Iterator[str]:
    """What the schema cannot say: times that parse, and which event types we keep."""
    if event.get("type") not in EVENT_TYPES:
        yield f"type {event.get('type')!r} is not one of {', '.join(EVENT_TYPES)}"
    for field in ("eventTime", "recordTime"):
        if isinstance(event.get(field), str):
            try:
                millis(event[field])
            except InvalidValue as exc:
                yield f"{field}: {exc}"
    declaration = event.get("errorDeclaration")
    if isinstance(declaration, Mapping) and isinstance(declaration.get("declarationTime"), str):
        try:
            millis(declaration["declarationTime"])
        except InvalidValue as exc:
            yield f"errorDeclaration.declarationTime: {exc}"


def _describe(error: ValidationError) -> str:
    """A schema fault as "event 3 (ObjectEvent): epcList: ... is not of type array",
    from the most specific reason where the schema branches (if/then, anyOf)."""
    if error.context:
        error = min(error.context, key=lambda e: (-len(e.absolute_path), str(e.message)))
    path = list(error.absolute_path)
    where = ""
    if path[:2] == ["epcisBody", "eventList"] and len(path) >= 3:
        where, path = f"event {path[2]}: ", path[3:]
    elif "resultsBody" in path and "eventList" in path:
        at = path.index("eventList")
        if len(path) > at + 1:
            where, path = f"event {path[at + 1]}: ", path[at + 2 :]
    field = ".".join(str(p) for p in path)
    return f"{where}{field + ': ' if field else ''}{error.message}"
