"""Traceability: EPCIS events captured on the node, queried, and followed through
genealogy ("what is this made of, where did it go") and recalls.

Who sees what: an event belongs to the enterprise that captured it (a prefix whose
administrators may register identifiers, ADD_HANDLE) and is read by that enterprise
only, unless the capture made it public or named a reader group (``partner``: an
``index:handle`` identity or HS_VLIST group, as templates' partner values use). Every
read goes to the store with the caller's :class:`Audience`, so an event the caller may
not read is not fetched: it counts in no page and leaves no edge in a trace.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from idnode.epcis.documents import Document, read_document
from idnode.epcis.events import facts_of, iso_time
from idnode.epcis.hashing import event_hash
from idnode.epcis.identifiers import InvalidIdentifier, identifier_key, record_handle
from idnode.epcis.queries import EventQuery
from idnode.epcis.selection import (
    Access,
    Audience,
    CaptureJob,
    NewEvent,
    Selection,
    StoredEvent,
)
from idnode.errors import InvalidValue, NoSuchResource, QueryTooLarge
from idnode.handle.valuetypes import AdminPermission
from idnode.names import NA_PREFIX, handle_key, split_handle
from idnode.service.core import Caller, ServiceCore
from idnode.templates import parse_readers

__all__ = [
    "MAX_DEPTH",
    "Page",
    "Prepared",
    "Recalled",
    "Trace",
    "TraceEdge",
    "Traceability",
    "page_of",
]

#: The deepest a trace or recall follows genealogy.
MAX_DEPTH = 20
#: The most identifiers one trace or recall reaches before it stops (and says so).
MAX_NODES = 10_000
_DOWN = {"input": ("transformation", "output"), "input_class": ("transformation", "output"),
         "child": ("aggregation", "parent"), "child_class": ("aggregation", "parent"),
         "lot": ("commissioning", "epc")}  # fmt: skip
_UP = {"output": ("transformation", "input"), "output_class": ("transformation", "input"),
       "parent": ("aggregation", "child"), "epc": ("commissioning", "lot")}  # fmt: skip
_FAR_SIDE = {"output": ("output", "output_class"), "input": ("input", "input_class"),
             "parent": ("parent",), "child": ("child", "child_class"), "epc": ("epc",),
             "lot": ("lot",)}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Prepared:
    """A checked capture, ready to store."""

    job: CaptureJob
    events: list[NewEvent]
    access: Access
    readers: str


@dataclass(frozen=True, slots=True)
class Page:
    events: list[dict[str, Any]]
    next_token: str | None
    context: list[Any] = field(default_factory=list)  #: user namespaces of these events


@dataclass(frozen=True, slots=True)
class TraceEdge:
    """One step of a genealogy, in the direction goods flow: ``source`` went into
    ``target`` (a part into a pump, a pump onto a pallet)."""

    source: str
    target: str
    kind: str  #: transformation, aggregation, association or commissioning
    event_id: str
    at: int  #: the event's time, ms
    until: int | None = None  #: when it was unpacked (an aggregation's DELETE), ms
    owner: str = ""  #: the enterprise whose event says so


@dataclass(frozen=True, slots=True)
class Trace:
    identifier: str  #: the key traced from
    direction: str
    depth: int
    nodes: dict[str, int]  #: identifier key -> its depth
    edges: list[TraceEdge]
    truncated: bool  #: MAX_NODES reached


@dataclass(frozen=True, slots=True)
class Recalled:
    identifier: str
    depth: int
    record: str | None  #: the identifier of its record on this node, if one exists
    last_seen: StoredEvent | None


class Traceability:
    def __init__(self, core: ServiceCore, gs1_prefix: str = "") -> None:
        self._core = core
        self._store = core.storage.events
        self.gs1_prefix = gs1_prefix

    # -- who ---------------------------------------------------------------------

    def audience(self, caller: Caller) -> Audience:
        """The enterprises and reader groups ``caller`` reads events of."""
        identity = caller.identity
        if identity is None:
            return Audience()
        authorizer = self._core.authorizer
        owners, groups = set(), set()
        for kind, name in self._store.audiences():
            if kind == "owner":
                granted = authorizer.permissions(identity, self._core.prefix_admins(name))
                if granted & AdminPermission.ADD_HANDLE:
                    owners.add(name)
            elif kind == "group" and authorizer.is_member(identity, parse_readers(name)):
                groups.add(name)
        return Audience(frozenset(owners), frozenset(groups))

    def enterprise_of(self, caller: Caller) -> str:
        """The prefix a caller captures for unless it names one: its identity's own
        (``300:88.100.1/admin`` and ``300:0.NA/88.100.1`` both capture for 88.100.1)."""
        if caller.identity is None:
            return ""
        prefix, suffix = split_handle(caller.identity.handle)
        return suffix if handle_key(prefix) == NA_PREFIX else prefix

    # -- capture -----------------------------------------------------------------

    def capture(
        self,
        caller: Caller,
        data: bytes,
        media_type: str = "",
        *,
        prefix: str = "",
        access: str = "owner",
        readers: str = "",
    ) -> CaptureJob:
        """Check an EPCIS document and store its events for an enterprise, all or none;
        the finished capture job. A repeated event (same eventID, or same canonical
        hash when it has none) is counted, not stored twice."""
        return self.store(
            self.prepare(caller, data, media_type, prefix=prefix, access=access, readers=readers)
        )

    def prepare(
        self,
        caller: Caller,
        data: bytes,
        media_type: str = "",
        *,
        prefix: str = "",
        access: str = "owner",
        readers: str = "",
    ) -> Prepared:
        """The first half of :meth:`capture`: who may, and the document checked,
        hashed and indexed. It writes nothing, so a front end runs it on a reader
        thread and only :meth:`store` on the writer, which a large document would
        otherwise hold for the whole check."""
        prefix = prefix or self.enterprise_of(caller)
        level = _access(access, readers)
        if readers:
            readers = _readers(readers)
        self._core.authorizer.require(
            caller.identity,
            AdminPermission.ADD_HANDLE,
            self._core.prefix_admins(prefix),
            f"capture events for {prefix or 'a prefix'}",
        )
        document = read_document(data, media_type)
        now = int(self._core.wall_clock() * 1000)
        job = CaptureJob(f"{now:x}-{secrets.token_hex(6)}", caller.actor, prefix, now)
        return Prepared(job, self._prepared(document, now), level, readers)

    def store(self, prepared: Prepared) -> CaptureJob:
        """The second half of :meth:`capture`: one transaction."""
        return self._store.capture(prepared.job, prepared.events, prepared.access,
                                   prepared.readers)  # fmt: skip

    def _prepared(self, document: Document, now: int) -> list[NewEvent]:
        out: list[NewEvent] = []
        for event in document.events:
            try:
                facts = facts_of(event, self.gs1_prefix)
                event_id = str(event.get("eventID") or event_hash(event))
            except InvalidValue as exc:  # InvalidIdentifier among them
                raise InvalidValue(f"event {len(out)}: {exc.message}") from exc
            except RecursionError:
                raise InvalidValue(f"event {len(out)}: its extensions nest too deeply") from None
            body = dict(event)
            body["eventID"] = event_id
            body["recordTime"] = iso_time(now)
            out.append(NewEvent(event_id, facts, body))
        return out

    def job(self, caller: Caller, capture_id: str) -> CaptureJob:
        """A capture job, to the enterprise it captured for."""
        job = self._store.job(capture_id)
        if job is None or job.owner not in self.audience(caller).owners:
            raise NoSuchResource(f"no capture {capture_id}")
        return job

    def jobs(self, caller: Caller, limit: int = 100) -> list[CaptureJob]:
        return self._store.jobs(sorted(self.audience(caller).owners), limit)

    # -- query -------------------------------------------------------------------

    def events(self, caller: Caller, query: EventQuery) -> Page:
        """A page of the events ``query`` selects that ``caller`` may read."""
        del caller  # the query's selection already carries the caller's audience
        limit = query.max_count
        first_page = query.selection.after is None
        if (
            limit is not None
            and first_page
            and len(self.collect(query, query.selection, limit + 1)) > limit
        ):
            raise QueryTooLarge(f"the query selects more than maxEventCount={limit} events")
        wanted = query.wanted()
        found = self.collect(query, query.selection, wanted + 1) if wanted else []
        more = len(found) > wanted
        found = found[:wanted]
        token = None
        if more:
            last = found[-1]
            value = last.facts.event_time if query.selection.order == "event" else last.seq
            token = query.token_after(value, last.seq, len(found))
        return page_of(found, token)

    def collect(self, query: EventQuery, selection: Selection, wanted: int) -> list[StoredEvent]:
        """Up to ``wanted`` events of the selection that pass the query's other tests,
        reading the store in batches."""
        found: list[StoredEvent] = []
        batch = max(wanted * 2, 100) if query.tests else wanted
        while len(found) < wanted:
            rows = self._store.select(selection, batch)
            found += [row for row in rows if query.matches(row.body)]
            if len(rows) < batch:
                break
            last = rows[-1]
            order = last.facts.event_time if selection.order == "event" else last.seq
            selection = replace(selection, after=(order, last.seq))
        return found[:wanted]

    # -- genealogy ---------------------------------------------------------------

    def key_of(self, identifier: str) -> str:
        try:
            return identifier_key(identifier, self.gs1_prefix)
        except InvalidIdentifier as exc:
            raise InvalidValue(str(exc)) from exc

    def trace(
        self,
        caller: Caller,
        identifier: str,
        direction: Literal["up", "down"] = "down",
        depth: int = 5,
    ) -> Trace:
        """What ``identifier`` went into (down) or was made of (up), ``depth`` steps
        far, from the events ``caller`` may read."""
        return self._trace(self.audience(caller), identifier, direction, depth)

    def _trace(self, audience: Audience, identifier: str, direction: str, depth: int) -> Trace:
        if not 1 <= depth <= MAX_DEPTH:
            raise InvalidValue(f"depth is from 1 to {MAX_DEPTH}")
        start = self.key_of(identifier)
        steps = _DOWN if direction == "down" else _UP
        nodes, edges, frontier = {start: 0}, list[TraceEdge](), [start]
        truncated = False
        for level in range(1, depth + 1):
            found = self._step(frontier, steps, direction, audience)
            frontier = []
            for edge in found:
                edges.append(edge)
                far = edge.target if direction == "down" else edge.source
                if far not in nodes:
                    if len(nodes) >= MAX_NODES:
                        truncated = True
                        continue
                    nodes[far] = level
                    frontier.append(far)
            if not frontier:
                break
        return Trace(start, direction, depth, nodes, _unique(edges), truncated)

    def _step(
        self,
        frontier: Sequence[str],
        steps: Mapping[str, tuple[str, str]],
        direction: str,
        audience: Audience,
    ) -> list[TraceEdge]:
        """The edges one step from ``frontier``: the events that name a frontier
        identifier on the near side, and what they name on the far side."""
        edges = []
        for start in range(0, len(frontier), 500):
            chunk = frontier[start : start + 500]
            near = self._store.naming(chunk, list(steps), audience)
            linking = near  # the store returns only events that are steps in their role
            by_transformation = {ev.facts.transformation_id for _, _, ev in linking
                                 if ev.facts.transformation_id}  # fmt: skip
            partners: dict[int, StoredEvent] = {ev.seq: ev for _, _, ev in linking}
            shared: dict[str, list[StoredEvent]] = {}
            for ev in self._store.by_transformation(sorted(by_transformation), audience):
                shared.setdefault(ev.facts.transformation_id, []).append(ev)
                partners[ev.seq] = ev
            far_roles = sorted({r for role in steps for r in _FAR_SIDE[steps[role][1]]})
            named: dict[int, list[tuple[str, str]]] = {}
            for seq, role, ident in self._store.named_by(sorted(partners), far_roles):
                named.setdefault(seq, []).append((role, ident))
            for ident, role, ev in linking:
                kind, far_side = steps[role]
                if kind == "aggregation" and ev.facts.event_type == "AssociationEvent":
                    kind = "association"
                sources = shared.get(ev.facts.transformation_id, [ev]) if (
                    kind == "transformation" and ev.facts.transformation_id) else [ev]  # fmt: skip
                for other in sources:
                    for far_role, far in named.get(other.seq, ()):
                        if far_role not in _FAR_SIDE[far_side] or far == ident:
                            continue
                        source, target = (ident, far) if direction == "down" else (far, ident)
                        edges.append(
                            TraceEdge(
                                source,
                                target,
                                kind,
                                ev.event_id,
                                ev.facts.event_time,
                                owner=ev.owner,
                            )
                        )
        return self._with_unpacking(edges, audience)

    def _with_unpacking(self, edges: list[TraceEdge], audience: Audience) -> list[TraceEdge]:
        """Each packing edge with when its child was taken out again: the first DELETE
        of the same parent after the packing that names the child (as an instance or
        its class), or names no child at all (everything out). Either way a trace
        goes, so the same edge says the same both ways."""
        packs = [e for e in edges if e.kind in ("aggregation", "association")]
        if not packs:
            return edges
        deletes: dict[str, list[StoredEvent]] = {}
        parents = sorted({e.target for e in packs})
        for parent, _, ev in self._store.naming(parents, ["parent"], audience, steps=False):
            deletes.setdefault(parent, []).append(ev)
        if not deletes:
            return edges
        seqs = sorted({ev.seq for evs in deletes.values() for ev in evs})
        children: dict[int, set[str]] = {}
        for seq, _, ident in self._store.named_by(seqs, ["child", "child_class"]):
            children.setdefault(seq, set()).add(ident)
        out = []
        for edge in edges:
            until = None
            if edge.kind in ("aggregation", "association"):
                for ev in deletes.get(edge.target, ()):
                    named = children.get(ev.seq)
                    if ev.facts.event_time >= edge.at and (named is None or edge.source in named):
                        until = ev.facts.event_time
                        break
            out.append(edge if until is None else replace(edge, until=until))
        return out

    def recall(self, caller: Caller, batch: str, depth: int = MAX_DEPTH) -> list[Recalled]:
        """Every identifier downstream of ``batch``, with the last event that saw it."""
        audience = self.audience(caller)
        trace = self._trace(audience, batch, "down", depth)
        out = []
        for ident, level in sorted(trace.nodes.items(), key=lambda item: (item[1], item[0])):
            if level == 0:
                continue
            out.append(
                Recalled(
                    ident,
                    level,
                    record_handle(ident, self.gs1_prefix),
                    self._store.last_seen(ident, audience),
                )
            )
        return out


def _unique(edges: list[TraceEdge]) -> list[TraceEdge]:
    return list(dict.fromkeys(edges))


def page_of(rows: Sequence[StoredEvent], next_token: str | None = None) -> Page:
    """The events as a query returns them: each as captured, without the namespaces it
    was captured with, which the page gathers once for its document's ``@context``."""
    events, seen = [], dict[str, Any]()
    for row in rows:
        body = dict(row.body)
        context = body.pop("@context", None)
        for entry in context if isinstance(context, list) else [context] if context else []:
            seen.setdefault(repr(entry), entry)
        events.append(body)
    return Page(events, next_token, list(seen.values()))


def _access(access: str, readers: str) -> Access:
    try:
        level = Access[access.upper()]
    except KeyError:
        raise InvalidValue(f"access is public, partner or owner, not {access!r}") from None
    if level is Access.PARTNER and not readers:
        raise InvalidValue("partner events name their readers: an INDEX:HANDLE group")
    if level is not Access.PARTNER and readers:
        raise InvalidValue("readers are named only for partner events")
    return level


def _readers(text: str) -> str:
    ref = parse_readers(text)
    return f"{ref.index}:{ref.handle}"
