"""What the event store is given and gives back: events to keep, and selections of
kept events that its indexes can answer.

A selection holds only what the store's indexes answer (times, steps, places, the
identifiers named in a role) and who is asking; the service applies a query's other
parameters to what comes back. Every selection carries the caller's :class:`Audience`,
so that no event the caller may not read leaves the store: not in a page, not as a
genealogy edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from idnode.epcis.events import EventFacts

__all__ = [
    "Access",
    "Audience",
    "CaptureJob",
    "IdentifierMatch",
    "NamedQuery",
    "NewEvent",
    "Selection",
    "StoredEvent",
    "Subscription",
]


class Access(IntEnum):
    """Who may read an event besides the enterprise that captured it."""

    PUBLIC = 0  #: anyone, anonymous readers included
    PARTNER = 1  #: the members of the reader group it names
    OWNER = 2  #: nobody else


@dataclass(frozen=True, slots=True)
class Audience:
    """The readers a caller is among: the enterprises (prefixes) it may register
    identifiers under, and the reader groups (``index:handle``) it is a member of."""

    owners: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class NewEvent:
    event_id: str
    facts: EventFacts
    body: dict[str, Any]  #: the event as captured, with its eventID and recordTime


@dataclass(frozen=True, slots=True)
class StoredEvent:
    seq: int  #: the order of capture
    event_id: str
    record_time: int  #: milliseconds since the epoch
    facts: EventFacts
    body: dict[str, Any]
    owner: str
    access: Access
    readers: str


@dataclass(frozen=True, slots=True)
class CaptureJob:
    """One capture, as the REST binding's ``/capture/{captureID}`` reports it."""

    capture_id: str
    actor: str
    owner: str
    created: int  #: milliseconds since the epoch
    finished: int | None = None
    success: bool | None = None
    events: int = 0  #: events stored
    duplicates: int = 0  #: events already held (same eventID): a repeated capture
    errors: tuple[str, ...] = ()

    @property
    def running(self) -> bool:
        return self.finished is None


@dataclass(frozen=True, slots=True)
class IdentifierMatch:
    """An event names one of ``keys`` (or a key starting with one of ``prefixes``) in
    one of ``roles``."""

    roles: frozenset[str]
    keys: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Selection:
    audience: Audience
    event_types: tuple[str, ...] = ()
    event_time: tuple[int | None, int | None] = (None, None)  #: [from, to)
    record_time: tuple[int | None, int | None] = (None, None)
    actions: tuple[str, ...] = ()
    biz_steps: tuple[str, ...] = ()
    dispositions: tuple[str, ...] = ()
    read_points: tuple[str, ...] = ()
    biz_locations: tuple[str, ...] = ()
    transformation_ids: tuple[str, ...] = ()
    event_ids: tuple[str, ...] = ()
    identifiers: tuple[IdentifierMatch, ...] = ()  #: all must hold
    order: str = "record"  #: "record" (capture order) or "event" (eventTime)
    descending: bool = False
    after: tuple[int, int] | None = None  #: resume after (order value, seq)
    through: int | None = None  #: only events numbered up to this one


@dataclass(frozen=True, slots=True)
class NamedQuery:
    name: str
    actor: str  #: who defined it (and may delete it)
    params: tuple[tuple[str, str], ...]  #: query parameters, several values joined by |
    created: int  #: ms


@dataclass(frozen=True, slots=True)
class Subscription:
    """A named query's new events pushed to ``dest`` as they are captured (``schedule``
    empty: a stream) or on a schedule; delivered as the identity that subscribed."""

    subscription_id: str
    query_name: str
    actor: str  #: ``index:handle`` of the subscriber, whose audience deliveries have
    dest: str
    secret: str
    schedule: dict[str, str]  #: second, minute, hour, dayOfMonth, month, dayOfWeek
    report_if_empty: bool
    initial_record_time: int  #: ms: events recorded before are not delivered
    created: int
    last_seq: int = 0  #: the last event delivered, in capture order
    next_due: int = 0  #: ms
    failures: int = 0
    last_error: str = ""
    delivered: int = 0  #: events delivered so far
