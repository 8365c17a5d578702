"""Named EPCIS queries, and subscriptions that push their new events.

A named query is a saved set of query parameters; running it is running them as the
caller, with the caller's audience. A subscription runs its query as the identity
that subscribed, over events recorded since it last delivered, so it pushes exactly
what that identity could have queried. Its cursor (the last event delivered, in
capture order) is in the database: a restarted node goes on where it stopped, and a
lease taken in the database lets one worker of several deliver each batch.

Captures are numbered in the order they commit (SQLite has one writer; on PostgreSQL
the event store takes a lock for each capture), so a cursor that has passed an event
number has seen every event before it. A subscription whose query selects none of the
new events moves its cursor past them without delivering, so that it does not look at
them again.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from idnode.epcis.events import iso_time, millis
from idnode.epcis.queries import EventQuery, QueryParameterError, parse_query
from idnode.epcis.schedules import parse_schedule
from idnode.epcis.selection import Audience, NamedQuery, StoredEvent, Subscription
from idnode.errors import (
    AuthenticationNeeded,
    InvalidValue,
    NoSuchResource,
    ResourceExists,
)
from idnode.handle.values import ValueReference
from idnode.service.core import Caller, ServiceCore
from idnode.service.trace import Traceability

__all__ = ["Batch", "TraceSubscriptions"]

#: How long one worker holds a subscription while it delivers.
LEASE_MS = 60_000
#: The longest wait before trying a failing destination again.
MAX_BACKOFF_MS = 300_000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class TraceSubscriptions:
    def __init__(self, core: ServiceCore, trace: Traceability) -> None:
        self._core = core
        self._trace = trace
        self._store = core.storage.events

    def _now(self) -> int:
        return int(self._core.wall_clock() * 1000)

    # -- named queries -----------------------------------------------------------

    def define(self, caller: Caller, name: str, query: Mapping[str, Any]) -> NamedQuery:
        """Save ``query`` (parameter -> value or list of values) under ``name``."""
        _authenticated(caller, "define a named query")
        if not _NAME.match(name):
            raise InvalidValue(f"a query name is letters, digits, . _ and -, not {name!r}")
        params = _pairs(query)
        parse_query(params, Audience(), self._trace.gs1_prefix)  # refuse a bad one now
        named = NamedQuery(name, caller.actor, tuple(params), self._now())
        if not self._store.put_query(named):
            raise ResourceExists(f"a query named {name} exists")
        return named

    def queries(self, caller: Caller) -> list[NamedQuery]:
        """The queries ``caller`` defined: their parameters are its own business (a
        customer's lot, a site, a PO number), not the node's."""
        _authenticated(caller, "list named queries")
        return [q for q in self._store.queries() if q.actor == caller.actor]

    def query(self, caller: Caller, name: str) -> NamedQuery:
        """A query ``caller`` defined (NoSuchResource for anyone else's)."""
        _authenticated(caller, "use a named query")
        found = self._store.queries(name)
        if not found or found[0].actor != caller.actor:
            raise NoSuchResource(f"no query named {name}")
        return found[0]

    def delete(self, caller: Caller, name: str) -> None:
        """Forget a query (and its subscriptions); only who defined it may."""
        self.query(caller, name)
        self._store.delete_query(name)

    def run(self, caller: Caller, name: str, paging: list[tuple[str, str]]) -> EventQuery:
        """The named query for ``caller``, with paging parameters; any other parameter
        is refused, since it would change what the query's name stands for."""
        named = self.query(caller, name)
        other = sorted({k for k, _ in paging} - {"perPage", "nextPageToken"})
        if other:
            raise QueryParameterError(
                f"a named query takes perPage and nextPageToken, not {other[0]}"
            )
        audience = self._trace.audience(caller)
        return parse_query([*named.params, *paging], audience, self._trace.gs1_prefix)

    # -- subscriptions -------------------------------------------------------------

    def subscribe(self, caller: Caller, name: str, body: Mapping[str, Any]) -> Subscription:
        """A webhook subscription: ``dest``, ``secret``, and ``stream: true`` or a
        ``schedule``; ``reportIfEmpty``, ``initialRecordTime`` optional."""
        _authenticated(caller, "subscribe")
        self.query(caller, name)
        dest, secret = body.get("dest"), body.get("secret", "")
        if not isinstance(dest, str) or not _web_address(dest):
            raise InvalidValue("dest is the http or https URL events are posted to")
        if not isinstance(secret, str):
            raise InvalidValue("secret is a string")
        schedule = _schedule_of(body)
        now = self._now()
        initial = body.get("initialRecordTime")
        if initial is not None and not isinstance(initial, str):
            raise InvalidValue("initialRecordTime is a date and time (RFC 3339)")
        start = millis(initial) if initial is not None else now
        subscription = Subscription(
            subscription_id=secrets.token_hex(12),
            query_name=name,
            actor=caller.actor,
            dest=dest,
            secret=secret,
            schedule=schedule,
            report_if_empty=bool(body.get("reportIfEmpty", False)),
            initial_record_time=start,
            created=now,
            next_due=now if not schedule else parse_schedule(schedule).next_after(now),
        )
        self._store.put_subscription(subscription)
        return subscription

    def subscriptions(self, caller: Caller, name: str) -> list[Subscription]:
        """The caller's subscriptions to a query."""
        self.query(caller, name)
        return [s for s in self._store.subscriptions(query_name=name) if s.actor == caller.actor]

    def subscription(self, caller: Caller, name: str, subscription_id: str) -> Subscription:
        found = self._store.subscriptions(subscription_id=subscription_id)
        if not found or found[0].query_name != name or found[0].actor != caller.actor:
            raise NoSuchResource(f"no subscription {subscription_id} to {name}")
        return found[0]

    def subscription_by_id(self, subscription_id: str) -> Subscription:
        found = self._store.subscriptions(subscription_id=subscription_id)
        if not found:
            raise NoSuchResource(f"no subscription {subscription_id}")
        return found[0]

    def unsubscribe(self, caller: Caller, name: str, subscription_id: str) -> None:
        self.subscription(caller, name, subscription_id)
        self._store.delete_subscription(subscription_id)

    # -- delivery ------------------------------------------------------------------

    def due(self) -> list[Subscription]:
        return self._store.subscriptions(due_by=self._now())

    def lease(self, subscription: Subscription) -> bool:
        """Take ``subscription`` for one delivery, if it is still as read (see
        :meth:`EventStore.lease`)."""
        now = self._now()
        return self._store.lease(subscription, now, now + LEASE_MS)

    def batch(self, subscription: Subscription, limit: int) -> Batch:
        """The subscriber's next events (at most ``limit``)."""
        found = self._store.queries(subscription.query_name)
        if not found:
            return Batch([], subscription.last_seq, exists=False)
        caller = Caller(_identity(subscription.actor), "subscription")
        return self.since(caller, found[0], subscription.last_seq, limit,
                          subscription.initial_record_time)  # fmt: skip

    def since(
        self, caller: Caller, named: NamedQuery, last_seq: int, limit: int, initial: int
    ) -> Batch:
        """The events of ``named`` that ``caller`` reads, captured after ``last_seq``,
        recorded from ``initial`` on, in capture order; and how far that looked."""
        newest = self._store.last_seq()
        query = parse_query(
            [*named.params, ("GE_recordTime", iso_time(initial))],
            self._trace.audience(caller),
            self._trace.gs1_prefix,
        )
        selection = replace(query.selection, order="record", descending=False,
                            after=(last_seq, last_seq), through=newest)  # fmt: skip
        rows = self._trace.collect(query, selection, limit)
        scanned = rows[-1].seq if len(rows) == limit else max(newest, last_seq)
        return Batch(rows, scanned)

    def skip(self, subscription: Subscription, scanned: int) -> None:
        """Move the cursor past events looked at that the query does not select."""
        if scanned > subscription.last_seq:
            self._store.move_cursor(subscription, scanned)

    def delivered(self, subscription: Subscription, batch: Batch, error: str = "") -> None:
        """Move the cursor past ``batch`` (not at all if ``error``), release the lease
        and say when the subscription is next due."""
        now = self._now()
        if error:
            wait = min(MAX_BACKOFF_MS, 1000 * 2 ** min(subscription.failures, 16))
            self._store.delivered(subscription.subscription_id, subscription.last_seq, 0,
                                  now + wait, error[:500])  # fmt: skip
            return
        if subscription.schedule:
            due = parse_schedule(subscription.schedule).next_after(now)
        else:
            due = now  # a stream: looked at again at the next turn
        last = max(batch.scanned, subscription.last_seq)
        self._store.delivered(subscription.subscription_id, last, len(batch.rows), due, "")


@dataclass(frozen=True, slots=True)
class Batch:
    rows: list[StoredEvent]
    scanned: int  #: every event up to this one was looked at
    exists: bool = True  #: whether the subscription's query still exists


def _web_address(text: str) -> bool:
    """An http or https URL with a host, and nothing in it a client would refuse."""
    try:
        parts = urlsplit(text)
    except ValueError:
        return False
    printable = text.isprintable() and " " not in text
    return parts.scheme in ("http", "https") and bool(parts.hostname) and printable


def _authenticated(caller: Caller, what: str) -> None:
    if caller.identity is None:
        raise AuthenticationNeeded(f"to {what} needs an authenticated identity")


def _identity(actor: str) -> ValueReference:
    index, _, handle = actor.partition(":")
    return ValueReference(handle, int(index))


def _pairs(query: Mapping[str, Any]) -> list[tuple[str, str]]:
    if not isinstance(query, Mapping):
        raise InvalidValue("query is an object of query parameters")
    pairs = []
    for name, value in query.items():
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, str | int | float) for v in values):
            raise InvalidValue(f"query parameter {name}: a string, a number, or a list of them")
        pairs.append((str(name), "|".join(str(v) for v in values)))
    return pairs


def _schedule_of(body: Mapping[str, Any]) -> dict[str, str]:
    stream, schedule = body.get("stream"), body.get("schedule")
    if (stream is True) == (schedule is not None):
        raise InvalidValue("a subscription has either stream: true or a schedule")
    if schedule is None:
        return {}
    if not isinstance(schedule, Mapping):
        raise InvalidValue("schedule is an object of second, minute, hour, ...")
    out = {str(k): str(v) for k, v in schedule.items()}
    parse_schedule(out)
    return out
