"""The EPCIS event store: events, the identifiers they name, and capture jobs, in the
node's own database (SQLite or PostgreSQL, one SQL text for both).

Three tables (migration 10): ``epcis_events`` (one row per event: its indexed facts and
the event as captured, JSON), ``epcis_identifiers`` (one row per identifier an event
names and the role it plays there, keyed by identifier first, so that "the events of
this pump" and every genealogy step are index range reads), and ``epcis_captures``.
``epcis_audiences`` lists the enterprises and reader groups events were captured for,
so that a caller's audience is worked out over a handful of names, not the events.

Every read takes the caller's :class:`~idnode.epcis.selection.Audience` and filters by
it in SQL: an event the caller may not read is never fetched.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from idnode.epcis.events import EventFacts
from idnode.epcis.selection import (
    Access,
    Audience,
    CaptureJob,
    NamedQuery,
    NewEvent,
    Selection,
    StoredEvent,
    Subscription,
)

if TYPE_CHECKING:
    from idnode.storage.sql import Dialect

__all__ = ["TABLES", "EventStore"]

Fetch = Callable[..., list[Any]]
#: The most values one IN list takes (PostgreSQL allows 65,535 parameters a statement).
_CHUNK = 1000
#: Every table of the event store: its columns, and its key (the order of copies).
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "epcis_events": (
        ("seq", "event_key", "event_id", "event_type", "event_time", "record_time", "action",
         "biz_step", "disposition", "read_point", "biz_location", "transformation_id", "owner",
         "access", "readers", "capture_id", "body"),
        ("seq",),
    ),
    "epcis_identifiers": (("identifier", "role", "seq"), ("identifier", "role", "seq")),
    "epcis_audiences": (("kind", "name"), ("kind", "name")),
    "epcis_captures": (
        ("id", "actor", "owner", "created", "finished", "success", "events", "duplicates",
         "errors"),
        ("id",),
    ),
    "epcis_queries": (("name", "actor", "query", "created"), ("name",)),
    "epcis_subscriptions": (
        ("id", "query_name", "actor", "dest", "secret", "schedule", "report_if_empty",
         "initial_record_time", "created", "last_seq", "next_due", "lease_until", "failures",
         "last_error", "delivered"),
        ("id",),
    ),
}  # fmt: skip
Connection = Any
#: An event's genealogy facts, without its body.
_FACTS = (
    "e.seq, e.event_id, e.record_time, e.event_type, e.event_time, e.action, e.biz_step,"
    " e.disposition, e.read_point, e.biz_location, e.transformation_id, e.owner, e.access,"
    " e.readers"
)
#: Events that are a genealogy step for the role they name an identifier in.
_STEP = (
    "((x.role IN ('input', 'input_class', 'output', 'output_class')"
    " AND e.event_type = 'TransformationEvent')"
    " OR (x.role IN ('child', 'child_class', 'parent') AND e.action = 'ADD'"
    " AND e.event_type IN ('AggregationEvent', 'AssociationEvent'))"
    " OR (x.role IN ('lot', 'epc') AND e.action = 'ADD' AND e.event_type = 'ObjectEvent'))"
)
_UNPACKING = "(e.action = 'DELETE' AND e.event_type IN ('AggregationEvent', 'AssociationEvent'))"
_COLUMNS = (
    "e.seq, e.event_id, e.record_time, e.event_type, e.event_time, e.action, e.biz_step,"
    " e.disposition, e.read_point, e.biz_location, e.transformation_id, e.owner, e.access,"
    " e.readers, e.body"
)


class EventStore:
    """Events kept by one SQL backend; built by the backend with its own reader and
    writer (each write one durable transaction)."""

    def __init__(
        self,
        dialect: Dialect,
        fetch: Fetch,
        writing: Callable[[], AbstractContextManager[Connection]],
    ) -> None:
        self._dialect = dialect
        self._p = dialect.placeholder
        self._fetch = fetch
        self._writing = writing

    # -- capture -------------------------------------------------------------------

    def capture(
        self, job: CaptureJob, events: Sequence[NewEvent], access: Access, readers: str
    ) -> CaptureJob:
        """Store ``events`` for ``job.owner`` in one transaction, skipping those whose
        eventID is held already; the job, finished, as stored with them."""
        p = self._p
        insert = (
            "INSERT INTO epcis_events (event_key, event_id, event_type, event_time, record_time,"
            " action, biz_step, disposition, read_point, biz_location, transformation_id,"
            " owner, access, readers, capture_id, body) VALUES"
            f" ({', '.join([p] * 16)}) ON CONFLICT (event_key, owner) DO NOTHING RETURNING seq"
        )
        named = f"INSERT INTO epcis_identifiers (identifier, role, seq) VALUES ({p}, {p}, {p})"
        stored = 0
        with self._writing() as conn:
            if self._dialect.name == "postgresql":
                # One capture at a time, so that capture numbers commit in their order
                # and a subscription's cursor never passes one still committing.
                conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('epcis capture', 0))")
            for event in events:
                f = event.facts
                row = conn.execute(
                    insert,
                    (
                        event_key(event.event_id),
                        event.event_id,
                        f.event_type,
                        f.event_time,
                        job.created,
                        f.action,
                        f.biz_step,
                        f.disposition,
                        f.read_point,
                        f.biz_location,
                        f.transformation_id,
                        job.owner,
                        int(access),
                        readers,
                        job.capture_id,
                        json.dumps(event.body, ensure_ascii=False, separators=(",", ":")),
                    ),
                ).fetchone()
                if row is None:
                    continue
                stored += 1
                seq = int(row[0])
                conn.cursor().executemany(named, [(key, role, seq) for role, key in f.identifiers])
            for kind, name in (("owner", job.owner), ("group", readers)):
                if name:
                    conn.execute(
                        f"INSERT INTO epcis_audiences VALUES ({p}, {p}) ON CONFLICT DO NOTHING",
                        (kind, name),
                    )
            done = CaptureJob(
                job.capture_id,
                job.actor,
                job.owner,
                job.created,
                job.created,
                True,
                stored,
                len(events) - stored,
            )
            self._put_job(conn, done)
        return done

    def _put_job(self, conn: Connection, job: CaptureJob) -> None:
        p = self._p
        conn.execute(
            f"INSERT INTO epcis_captures VALUES ({', '.join([p] * 9)})",
            (
                job.capture_id,
                job.actor,
                job.owner,
                job.created,
                job.finished,
                None if job.success is None else int(job.success),
                job.events,
                job.duplicates,
                json.dumps(list(job.errors), ensure_ascii=False),
            ),
        )

    def job(self, capture_id: str) -> CaptureJob | None:
        rows = self._fetch(
            "SELECT id, actor, owner, created, finished, success, events, duplicates, errors"
            f" FROM epcis_captures WHERE id = {self._p}",
            (capture_id,),
            primary=True,
        )
        return _job(rows[0]) if rows else None

    def jobs(self, owners: Sequence[str], limit: int) -> list[CaptureJob]:
        """The newest capture jobs of these enterprises."""
        if not owners:
            return []
        rows = self._fetch(
            "SELECT id, actor, owner, created, finished, success, events, duplicates, errors"
            f" FROM epcis_captures WHERE owner IN ({', '.join([self._p] * len(owners))})"
            f" ORDER BY created DESC, id LIMIT {self._p}",
            (*owners, limit),
        )
        return [_job(row) for row in rows]

    def audiences(self) -> list[tuple[str, str]]:
        """(kind, name) of every enterprise ("owner") and reader group ("group") that
        events were captured for."""
        rows = self._fetch("SELECT kind, name FROM epcis_audiences ORDER BY kind, name", ())
        return [(str(k), str(n)) for k, n in rows]

    # -- reads ---------------------------------------------------------------------

    def select(self, selection: Selection, limit: int) -> list[StoredEvent]:
        """Up to ``limit`` visible events the selection holds, in its order."""
        where, params = self._where(selection)
        column = "e.seq" if selection.order == "record" else "e.event_time"
        direction = "DESC" if selection.descending else "ASC"
        if selection.after is not None:
            value, seq = selection.after
            op = "<" if selection.descending else ">"
            if selection.order == "record":
                where.append(f"e.seq {op} {self._p}")
                params.append(seq)
            else:
                where.append(
                    f"(e.event_time {op} {self._p} OR (e.event_time = {self._p}"
                    f" AND e.seq {op} {self._p}))"
                )
                params += [value, value, seq]
        order = f"{column} {direction}" + ("" if column == "e.seq" else f", e.seq {direction}")
        sql = (
            f"SELECT {_COLUMNS} FROM epcis_events e WHERE {' AND '.join(where) or 'TRUE'}"
            f" ORDER BY {order} LIMIT {self._p}"
        )
        rows = self._fetch(sql, (*params, limit), primary=True)
        return [_event(row) for row in rows]

    def naming(
        self,
        identifiers: Sequence[str],
        roles: Sequence[str],
        audience: Audience,
        *,
        steps: bool = True,
    ) -> list[tuple[str, str, StoredEvent]]:
        """(identifier, role, event) for every visible event that names one of
        ``identifiers`` in one of ``roles``. With ``steps``, only events that are a
        genealogy step in that role (a transformation; an aggregation or association
        that adds; a commissioning ObjectEvent that adds); without, only aggregations
        that take out (DELETE), for when a child was unpacked. Events come without
        their body: a genealogy needs the facts only."""
        if len(identifiers) > _CHUNK:
            found = [row for start in range(0, len(identifiers), _CHUNK)
                     for row in self.naming(identifiers[start : start + _CHUNK], roles,
                                            audience, steps=steps)]  # fmt: skip
            return sorted(found, key=lambda row: (row[2].facts.event_time, row[2].seq))
        if not identifiers or not roles:
            return []
        p = self._p
        visible, params = self._visible(audience)
        kind = _STEP if steps else _UNPACKING
        sql = (
            f"SELECT x.identifier, x.role, {_FACTS} FROM epcis_identifiers x"
            " JOIN epcis_events e ON e.seq = x.seq"
            f" WHERE x.identifier IN ({', '.join([p] * len(identifiers))})"
            f" AND x.role IN ({', '.join([p] * len(roles))}) AND {visible} AND {kind}"
            " ORDER BY e.event_time, e.seq"
        )
        rows = self._fetch(sql, (*identifiers, *roles, *params), primary=True)
        return [(str(r[0]), str(r[1]), _event((*r[2:], "{}"))) for r in rows]

    def named_by(self, seqs: Sequence[int], roles: Sequence[str]) -> list[tuple[int, str, str]]:
        """(seq, role, identifier) of what the events ``seqs`` name in ``roles``."""
        if len(seqs) > _CHUNK:  # PostgreSQL takes at most 65,535 parameters a statement
            return [row for start in range(0, len(seqs), _CHUNK)
                    for row in self.named_by(seqs[start : start + _CHUNK], roles)]  # fmt: skip
        if not seqs:
            return []
        p = self._p
        rows = self._fetch(
            "SELECT seq, role, identifier FROM epcis_identifiers"
            f" WHERE seq IN ({', '.join([p] * len(seqs))})"
            f" AND role IN ({', '.join([p] * len(roles))}) ORDER BY seq, role, identifier",
            (*seqs, *roles),
            primary=True,
        )
        return [(int(s), str(r), str(i)) for s, r, i in rows]

    def by_transformation(self, ids: Sequence[str], audience: Audience) -> list[StoredEvent]:
        """The visible events that share one of these transformation IDs (no body)."""
        if len(ids) > _CHUNK:
            chunks = [ids[start : start + _CHUNK] for start in range(0, len(ids), _CHUNK)]
            return [ev for chunk in chunks for ev in self.by_transformation(chunk, audience)]
        if not ids:
            return []
        visible, params = self._visible(audience)
        sql = (
            f"SELECT {_FACTS} FROM epcis_events e WHERE e.transformation_id IN"
            f" ({', '.join([self._p] * len(ids))}) AND {visible} ORDER BY e.seq"
        )
        return [_event((*r, "{}")) for r in self._fetch(sql, (*ids, *params), primary=True)]

    def last_seen(self, identifier: str, audience: Audience) -> StoredEvent | None:
        """The visible event with the latest eventTime that names ``identifier``."""
        visible, params = self._visible(audience)
        sql = (
            f"SELECT {_COLUMNS} FROM epcis_identifiers x JOIN epcis_events e ON e.seq = x.seq"
            f" WHERE x.identifier = {self._p} AND {visible}"
            " ORDER BY e.event_time DESC, e.seq DESC LIMIT 1"
        )
        rows = self._fetch(sql, (identifier, *params), primary=True)
        return _event(rows[0]) if rows else None

    def last_seq(self) -> int:
        """The newest event's number in capture order (0: none)."""
        rows = self._fetch("SELECT coalesce(max(seq), 0) FROM epcis_events", (), primary=True)
        return int(rows[0][0])

    # -- copies between backends (idnode migrate) -----------------------------------

    def rows(self, table: str, batch: int = 5000) -> Iterator[tuple[Any, ...]]:
        """Every row of one of :data:`TABLES`, in key order, read a batch at a time."""
        columns, key = TABLES[table]
        p = self._p
        last: tuple[Any, ...] | None = None
        width = len(key)
        while True:
            after = ""
            params: list[object] = []
            if last is not None:
                after = f"WHERE ({', '.join(key)}) > ({', '.join([p] * width)})"
                params = list(last[:width])
            ordered = [*key, *(c for c in columns if c not in key)]
            sql = (
                f"SELECT {', '.join(ordered)}"
                f" FROM {table} {after} ORDER BY {', '.join(key)} LIMIT {p}"
            )
            found = self._fetch(sql, (*params, batch), primary=True)
            yield from (tuple(row) for row in found)
            if len(found) < batch:
                return
            last = tuple(found[-1])

    def load(self, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert rows :meth:`rows` read from another store, as they were (an event
        keeps its number in capture order, which subscriptions' cursors count on)."""
        if not rows:
            return
        columns, key = TABLES[table]
        ordered = [*key, *(c for c in columns if c not in key)]
        overriding = (
            " OVERRIDING SYSTEM VALUE"
            if table == "epcis_events" and self._dialect.name == "postgresql"
            else ""
        )
        sql = (
            f"INSERT INTO {table} ({', '.join(ordered)}){overriding}"
            f" VALUES ({', '.join([self._p] * len(ordered))})"
        )
        with self._writing() as conn:
            conn.cursor().executemany(sql, list(rows))
            if overriding:  # the next capture numbers after the copied ones
                conn.execute(
                    "SELECT setval(pg_get_serial_sequence('epcis_events', 'seq'),"
                    " (SELECT max(seq) FROM epcis_events))"
                )

    # -- named queries and subscriptions ---------------------------------------------

    def put_query(self, query: NamedQuery) -> bool:
        """Keep a named query; False if the name is taken."""
        p = self._p
        with self._writing() as conn:
            cursor = conn.execute(
                f"INSERT INTO epcis_queries VALUES ({p}, {p}, {p}, {p})"
                " ON CONFLICT (name) DO NOTHING",
                (query.name, query.actor, json.dumps(list(query.params)), query.created),
            )
            return bool(cursor.rowcount == 1)

    def queries(self, name: str | None = None) -> list[NamedQuery]:
        where, params = ("WHERE name = " + self._p, (name,)) if name is not None else ("", ())
        rows = self._fetch(
            f"SELECT name, actor, query, created FROM epcis_queries {where} ORDER BY name",
            params,
            primary=True,
        )
        return [
            NamedQuery(str(n), str(a), tuple((str(k), str(v)) for k, v in json.loads(q)), int(c))
            for n, a, q, c in rows
        ]

    def delete_query(self, name: str) -> bool:
        """Forget a named query and every subscription to it."""
        p = self._p
        with self._writing() as conn:
            conn.execute(f"DELETE FROM epcis_subscriptions WHERE query_name = {p}", (name,))
            return bool(conn.execute(f"DELETE FROM epcis_queries WHERE name = {p}", (name,))
                        .rowcount == 1)  # fmt: skip

    def put_subscription(self, sub: Subscription) -> None:
        p = self._p
        with self._writing() as conn:
            conn.execute(
                f"INSERT INTO epcis_subscriptions VALUES ({', '.join([p] * 15)})",
                (
                    sub.subscription_id,
                    sub.query_name,
                    sub.actor,
                    sub.dest,
                    sub.secret,
                    json.dumps(sub.schedule) if sub.schedule else "",
                    int(sub.report_if_empty),
                    sub.initial_record_time,
                    sub.created,
                    sub.last_seq,
                    sub.next_due,
                    0,
                    sub.failures,
                    sub.last_error,
                    sub.delivered,
                ),
            )

    def subscriptions(
        self,
        *,
        query_name: str | None = None,
        subscription_id: str | None = None,
        due_by: int | None = None,
    ) -> list[Subscription]:
        """Subscriptions to a query, one by its id, or those due by a time and not
        leased to a worker then."""
        p = self._p
        params: list[object]
        if subscription_id is not None:
            where, params = f"id = {p}", [subscription_id]
        elif query_name is not None:
            where, params = f"query_name = {p}", [query_name]
        else:
            where, params = f"next_due <= {p} AND lease_until <= {p}", [due_by, due_by]
        rows = self._fetch(
            "SELECT id, query_name, actor, dest, secret, schedule, report_if_empty,"
            " initial_record_time, created, last_seq, next_due, failures, last_error,"
            f" delivered FROM epcis_subscriptions WHERE {where} ORDER BY created, id",
            params,
            primary=True,
        )
        return [_subscription(row) for row in rows]

    def delete_subscription(self, subscription_id: str) -> bool:
        with self._writing() as conn:
            return bool(
                conn.execute(
                    f"DELETE FROM epcis_subscriptions WHERE id = {self._p}", (subscription_id,)
                ).rowcount
                == 1
            )

    def lease(self, subscription: Subscription, now: int, until: int) -> bool:
        """Take the subscription for one delivery (until ``until``, ms) if it is as
        ``subscription`` says (same cursor, due) and no worker holds it: a worker that
        read it before another delivered cannot take it and deliver again."""
        p = self._p
        with self._writing() as conn:
            cursor = conn.execute(
                f"UPDATE epcis_subscriptions SET lease_until = {p}"
                f" WHERE id = {p} AND lease_until <= {p} AND next_due <= {p} AND last_seq = {p}",
                (until, subscription.subscription_id, now, now, subscription.last_seq),
            )
            return bool(cursor.rowcount == 1)

    def move_cursor(self, subscription: Subscription, last_seq: int) -> None:
        """Past events examined that the subscription's query does not select (no
        delivery, no lease): unless a worker moved it meanwhile."""
        p = self._p
        with self._writing() as conn:
            conn.execute(
                f"UPDATE epcis_subscriptions SET last_seq = {p}"
                f" WHERE id = {p} AND last_seq = {p} AND lease_until = 0",
                (last_seq, subscription.subscription_id, subscription.last_seq),
            )

    def delivered(
        self, subscription_id: str, last_seq: int, count: int, next_due: int, error: str
    ) -> None:
        """Record a delivery (``error`` empty: the cursor moves to ``last_seq``, never
        back) or a failed one (the cursor stays), and release the lease."""
        p = self._p
        with self._writing() as conn:
            if error:
                conn.execute(
                    f"UPDATE epcis_subscriptions SET next_due = {p}, lease_until = 0,"
                    f" failures = failures + 1, last_error = {p} WHERE id = {p}",
                    (next_due, error, subscription_id),
                )
                return
            conn.execute(
                f"UPDATE epcis_subscriptions SET last_seq = CASE WHEN last_seq < {p} THEN {p}"
                f" ELSE last_seq END, delivered = delivered + {p}, next_due = {p},"
                f" lease_until = 0, failures = 0, last_error = '' WHERE id = {p}",
                (last_seq, last_seq, count, next_due, subscription_id),
            )

    # -- SQL -----------------------------------------------------------------------

    def _visible(self, audience: Audience) -> tuple[str, list[object]]:
        p = self._p
        terms, params = [f"e.access = {int(Access.PUBLIC)}"], list[object]()
        if audience.owners:
            terms.append(f"e.owner IN ({', '.join([p] * len(audience.owners))})")
            params += sorted(audience.owners)
        if audience.groups:
            terms.append(
                f"(e.access = {int(Access.PARTNER)}"
                f" AND e.readers IN ({', '.join([p] * len(audience.groups))}))"
            )
            params += sorted(audience.groups)
        return "(" + " OR ".join(terms) + ")", params

    def _where(self, s: Selection) -> tuple[list[str], list[object]]:
        p = self._p
        visible, params = self._visible(s.audience)
        where = [visible]
        for column, chosen in (
            ("e.event_type", s.event_types),
            ("e.action", s.actions),
            ("e.biz_step", s.biz_steps),
            ("e.disposition", s.dispositions),
            ("e.read_point", s.read_points),
            ("e.biz_location", s.biz_locations),
            ("e.transformation_id", s.transformation_ids),
            ("e.event_key", tuple(event_key(i) for i in s.event_ids)),
        ):
            if chosen:
                where.append(f"{column} IN ({', '.join([p] * len(chosen))})")
                params += chosen
        for column, (low, high) in (("e.event_time", s.event_time),
                                    ("e.record_time", s.record_time)):  # fmt: skip
            if low is not None:
                where.append(f"{column} >= {p}")
                params.append(low)
            if high is not None:
                where.append(f"{column} < {p}")
                params.append(high)
        if s.through is not None:
            where.append(f"e.seq <= {p}")
            params.append(s.through)
        for match in s.identifiers:
            roles = sorted(match.roles)
            terms, named = [], list[object]()
            if match.keys:
                terms.append(f"x.identifier IN ({', '.join([p] * len(match.keys))})")
                named += match.keys
            for prefix in match.prefixes:
                terms.append(f"(x.identifier >= {p} AND x.identifier < {p})")
                named += [prefix, prefix + "\U0010ffff"]
            where.append(
                "e.seq IN (SELECT x.seq FROM epcis_identifiers x WHERE"
                f" x.role IN ({', '.join([p] * len(roles))})"
                f" AND ({' OR '.join(terms) or 'FALSE'}))"
            )
            params += [*roles, *named]
        return where, params


def event_key(event_id: str) -> bytes:
    """What an event is unique by: 16 bytes of the SHA-256 of its eventID."""
    return hashlib.sha256(event_id.encode()).digest()[:16]


def _event(row: Sequence[Any]) -> StoredEvent:
    (seq, event_id, record_time, event_type, event_time, action, biz_step, disposition,
     read_point, biz_location, transformation_id, owner, access, readers, body) = row  # fmt: skip
    facts = EventFacts(
        str(event_type),
        int(event_time),
        str(action),
        str(biz_step),
        str(disposition),
        str(read_point),
        str(biz_location),
        str(transformation_id),
        (),
    )
    return StoredEvent(
        int(seq),
        str(event_id),
        int(record_time),
        facts,
        json.loads(body),
        str(owner),
        Access(int(access)),
        str(readers),
    )


def _job(row: Sequence[Any]) -> CaptureJob:
    capture_id, actor, owner, created, finished, success, events, duplicates, errors = row
    return CaptureJob(
        str(capture_id),
        str(actor),
        str(owner),
        int(created),
        None if finished is None else int(finished),
        None if success is None else bool(success),
        int(events),
        int(duplicates),
        tuple(json.loads(errors)),
    )


def _subscription(row: Sequence[Any]) -> Subscription:
    (sid, query_name, actor, dest, secret, schedule, report_if_empty, initial, created,
     last_seq, next_due, failures, last_error, delivered) = row  # fmt: skip
    return Subscription(
        str(sid), str(query_name), str(actor), str(dest), str(secret),
        json.loads(schedule) if schedule else {}, bool(report_if_empty), int(initial),
        int(created), int(last_seq), int(next_due), int(failures), str(last_error),
        int(delivered),
    )  # fmt: skip
