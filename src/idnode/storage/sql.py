"""One SQL layer for both backends: every statement and every read-change-write written
once, with the dialect as data.

SQLite and PostgreSQL differ in how they connect, lock a key, tell other processes of
a change, load in bulk and index words; those are the few methods a backend
implements (the ``_`` hooks of :class:`SQLStorage`). Everything else, the statements
included, is here. Where the two spell SQL differently, :class:`Dialect` says how,
once: the driver's parameter marker and what ``LIMIT`` takes for "no limit". Both
accept ``INSERT ... ON CONFLICT ... DO UPDATE`` and ``CAST(x AS TEXT)``, so the
statements use those forms.

Values are stored in wire layout, and the keys under prefix P are exactly those in
["P/", "P0"), since '0' follows '/' in ASCII.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any, ClassVar, Literal

from idnode.domain import (
    ALL_WRITES,
    Account,
    AuditContext,
    AuditEntry,
    AuditQuery,
    HandleRecord,
    SearchQuery,
    StoredSession,
)
from idnode.errors import RemoteProtocolError, StorageError
from idnode.handle.encoded import EncodedValues
from idnode.handle.values import HandleValue, ValueReference
from idnode.names import handle_key
from idnode.stats import ReportedRow, StatsRow
from idnode.storage import search
from idnode.storage.base import RecordChange
from idnode.storage.events import EventStore
from idnode.storage.migrations import SEARCH_INDEX_VERSION, pending

__all__ = [
    "POSTGRESQL",
    "SQLITE",
    "Connection",
    "Dialect",
    "Row",
    "SQLStorage",
    "Statements",
    "audit_rows",
    "decode_record",
    "first_new",
    "prefix_range",
    "row_batches",
]

#: A DB-API connection of either driver (sqlite3's or psycopg's): both have
#: ``execute()`` returning a cursor and ``cursor()`` for ``executemany()``.
Connection = Any
#: A record as a table row: key, handle, values, updated_at.
Row = tuple[str, str, EncodedValues, int]
AuditRow = tuple[float, str, str, str, str, str, bytes | None, bytes | None]


@dataclass(frozen=True, slots=True)
class Dialect:
    name: Literal["sqlite", "postgresql"]
    placeholder: str  #: the driver's parameter marker
    no_limit: int | None  #: what LIMIT takes to mean "no limit"

    def render(self, template: str) -> str:
        return template.format(p=self.placeholder)


SQLITE = Dialect("sqlite", "?", -1)
POSTGRESQL = Dialect("postgresql", "%s", None)


@dataclass(frozen=True, slots=True)
class Statements:
    """Every statement the shared layer runs, rendered for one dialect."""

    get: str
    upsert: str
    delete: str
    list_handles: str
    count_all: str
    count_prefix: str
    home_prefix: str
    unhome_prefix: str
    homed_prefixes: str
    add_stats: str
    select_stats: str
    put_reported: str
    select_reported: str
    insert_audit: str
    select_audit: str
    select_audit_newest: str
    put_session: str
    get_session: str
    delete_session: str
    delete_session_if: str
    purge_sessions: str
    advance_session: str
    put_account: str
    get_account: str
    delete_account: str
    list_accounts: str
    create_migrations: str
    schema_version: str
    record_migration: str

    @classmethod
    def for_dialect(cls, dialect: Dialect) -> Statements:
        return cls(**{f.name: dialect.render(_TEMPLATES[f.name]) for f in fields(cls)})


# Column order of handles: key, handle, values_wire, updated_at. Optional parameters
# are cast so that PostgreSQL knows their type in "IS NULL".
_TEMPLATES = {
    "get": "SELECT handle, values_wire FROM handles WHERE key = {p}",
    "upsert": "INSERT INTO handles VALUES ({p}, {p}, {p}, {p}) ON CONFLICT (key) DO UPDATE"
    " SET handle = excluded.handle, values_wire = excluded.values_wire,"
    " updated_at = excluded.updated_at",
    "delete": "DELETE FROM handles WHERE key = {p}",
    "list_handles": "SELECT handle FROM handles WHERE key >= {p} AND key < {p}"
    " ORDER BY key LIMIT {p} OFFSET {p}",
    "count_all": "SELECT count(*) FROM handles",
    "count_prefix": "SELECT count(*) FROM handles WHERE key >= {p} AND key < {p}",
    "home_prefix": "INSERT INTO prefixes VALUES ({p}, {p}) ON CONFLICT (key) DO NOTHING",
    "unhome_prefix": "DELETE FROM prefixes WHERE key = {p}",
    "homed_prefixes": "SELECT prefix FROM prefixes ORDER BY key",
    # Counts are summed, never replaced: every process adds its own.
    "add_stats": "INSERT INTO stats VALUES ({p}, {p}, {p}, {p}, {p})"
    " ON CONFLICT (prefix, hour) DO UPDATE"
    " SET resolutions = stats.resolutions + excluded.resolutions,"
    " not_found = stats.not_found + excluded.not_found,"
    " registrations = stats.registrations + excluded.registrations",
    "select_stats": "SELECT prefix, hour, resolutions, not_found, registrations FROM stats"
    " WHERE hour >= {p} AND (CAST({p} AS TEXT) IS NULL OR prefix = {p})"
    " ORDER BY prefix, hour",
    # A report carries an hour's totals so far: the same hour again replaces them.
    "put_reported": "INSERT INTO reported_stats VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})"
    " ON CONFLICT (source, prefix, hour) DO UPDATE SET resolutions = excluded.resolutions,"
    " not_found = excluded.not_found, registrations = excluded.registrations,"
    " reported_by = excluded.reported_by, received = excluded.received",
    "select_reported": "SELECT source, prefix, hour, resolutions, not_found, registrations,"
    " reported_by, received FROM reported_stats WHERE hour >= {p}"
    " ORDER BY source, prefix, hour",
    "insert_audit": "INSERT INTO audit (at, actor, origin, operation, key, handle, before, after)"
    " VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})",
    "select_audit": "SELECT id, at, actor, origin, operation, handle, before, after FROM audit"
    " WHERE at >= {p} AND (CAST({p} AS TEXT) IS NULL OR key = {p})"
    " AND (CAST({p} AS TEXT) IS NULL OR actor = {p}) ORDER BY id LIMIT {p}",
    "select_audit_newest": "SELECT id, at, actor, origin, operation, handle, before, after"
    " FROM audit WHERE at >= {p} AND (CAST({p} AS TEXT) IS NULL OR key = {p})"
    " AND (CAST({p} AS TEXT) IS NULL OR actor = {p}) ORDER BY id DESC LIMIT {p}",
    # Storing a session again (to authenticate it) keeps its message counters.
    "put_session": "INSERT INTO sessions (id, nonce, identity, expires) VALUES ({p}, {p}, {p}, {p})"
    " ON CONFLICT (id) DO UPDATE SET nonce = excluded.nonce,"
    " identity = excluded.identity, expires = excluded.expires",
    "get_session": "SELECT id, nonce, identity, expires, counter, seen FROM sessions"
    " WHERE id = {p}",
    "delete_session": "DELETE FROM sessions WHERE id = {p}",
    "delete_session_if": "DELETE FROM sessions WHERE id = {p} AND nonce = {p}",
    "purge_sessions": "DELETE FROM sessions WHERE expires <= {p}",
    # A compare-and-swap: two workers cannot both accept one message.
    "advance_session": "UPDATE sessions SET counter = {p}, seen = {p}"
    " WHERE id = {p} AND counter = {p} AND seen = {p}",
    "put_account": "INSERT INTO accounts VALUES ({p}, {p}, {p}, {p}) ON CONFLICT (name)"
    " DO UPDATE SET identity = excluded.identity, password = excluded.password",
    "get_account": "SELECT name, identity, password, created FROM accounts WHERE name = {p}",
    "delete_account": "DELETE FROM accounts WHERE name = {p}",
    "list_accounts": "SELECT name, identity, password, created FROM accounts ORDER BY name",
    "create_migrations": "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    "schema_version": "SELECT coalesce(max(version), 0) FROM schema_migrations",
    "record_migration": "INSERT INTO schema_migrations VALUES ({p}, {p}, {p})",
}


class SQLStorage(ABC):
    """The :class:`~idnode.storage.base.Storage` methods both SQL backends share.

    A backend says how to reach its database (:meth:`_fetch`, :meth:`_writing`), how
    to serialise writers of one key (:meth:`_lock_key`) and of the schema
    (:meth:`_lock_schema`), how to tell other processes that a key changed
    (:meth:`_announce`), how to keep its word index (:meth:`_reindex`), and does its
    own bulk loads and streaming reads.
    """

    dialect: ClassVar[Dialect]
    sql: ClassVar[Statements]
    #: See :class:`~idnode.storage.base.Storage`.
    reads_over_network: bool
    single_writer: bool

    # -- what a backend provides ---------------------------------------------------

    @abstractmethod
    def _fetch(
        self,
        sql: str,
        params: Sequence[object],
        *,
        key: str | None = None,
        primary: bool = False,
    ) -> list[Any]:
        """The rows of one read. ``key``: the handle key it reads (a backend with
        replicas reads a key changed moments ago from the primary); ``primary``: it
        must see every commit so far."""

    @abstractmethod
    def _writing(self) -> AbstractContextManager[Connection]:
        """A connection in a write transaction, committed when the block ends and
        rolled back if it raises; on disk before the commit returns."""

    def _lock_key(self, conn: Connection, key: str) -> None:  # noqa: B027 - no-op by default
        """Serialise the read-change-write of one key across processes (no-op where
        the write transaction already locks the whole database)."""

    def _lock_schema(self, conn: Connection) -> None:  # noqa: B027 - no-op by default
        """Serialise migrations of processes starting against one database at once."""

    def _announce(self, conn: Connection, key: str) -> None:  # noqa: B027 - no-op by default
        """Tell other processes, as the transaction commits, that ``key`` changed."""

    @abstractmethod
    def _reindex(
        self,
        conn: Connection,
        rows: Sequence[tuple[str, Sequence[HandleValue] | None]],
        existed: Collection[str] | None = None,
    ) -> None:
        """Replace the search-index rows of records written (values) or deleted
        (None), by key. ``existed``: the keys that had records before (None: any may
        have); only theirs have index rows to remove."""

    @abstractmethod
    def _index_everything(self, conn: Connection) -> None:
        """Index every record (when the search index is first created)."""

    @abstractmethod
    def describe(self) -> str:
        """The database, for messages (no password)."""

    # -- schema ----------------------------------------------------------------------

    def _migrate(self) -> None:
        sql = self.sql
        with self._writing() as conn:
            self._lock_schema(conn)
            conn.execute(sql.create_migrations)
            current = int(conn.execute(sql.schema_version).fetchone()[0])
            for migration in pending(current, self.describe()):
                for statement in migration.statements(self.dialect.name):
                    conn.execute(statement)
                if migration.version == SEARCH_INDEX_VERSION:
                    self._index_everything(conn)
                conn.execute(
                    sql.record_migration, (migration.version, migration.name, int(time.time()))
                )

    def schema_version(self) -> int:
        return int(self._fetch(self.sql.schema_version, ())[0][0])

    @cached_property
    def events(self) -> EventStore:
        return EventStore(self.dialect, self._fetch, self._writing)

    # -- records -----------------------------------------------------------------------

    def get(self, handle: str) -> HandleRecord | None:
        key = handle_key(handle)
        rows = self._fetch(self.sql.get, (key,), key=key)
        return decode_record(*rows[0]) if rows else None

    def stored(self, handle: str) -> tuple[str, bytes] | None:
        key = handle_key(handle)
        rows = self._fetch(self.sql.get, (key,), key=key)
        return (rows[0][0], bytes(rows[0][1])) if rows else None

    def put(self, record: HandleRecord) -> None:
        key = handle_key(record.handle)
        with self._writing() as conn:
            conn.execute(self.sql.upsert, (key, record.handle, encode_values(record), _now()))
            self._reindex(conn, [(key, record.values)])
            self._announce(conn, key)

    def update(
        self, handle: str, change: RecordChange, audit: AuditContext | None = None
    ) -> HandleRecord | None:
        key = handle_key(handle)
        sql = self.sql
        with self._writing() as conn:
            self._lock_key(conn, key)
            row = conn.execute(sql.get, (key,)).fetchone()
            new = change(None if row is None else decode_record(row[0], row[1]))
            after = None
            if new is None:
                conn.execute(sql.delete, (key,))
            else:
                if handle_key(new.handle) != key:
                    raise StorageError(f"an update of {key} returned a record for {new.handle}")
                after = encode_values(new)
                conn.execute(sql.upsert, (key, new.handle, after, _now()))
            self._reindex(conn, [(key, None if new is None else new.values)])
            if audit is not None:
                name = new.handle if new is not None else row[0] if row is not None else handle
                before = None if row is None else bytes(row[1])
                conn.execute(sql.insert_audit, _audit_row(audit, key, name, before, after))
            self._announce(conn, key)
            return new

    def search(self, query: SearchQuery) -> list[str]:
        return search.run(query, self.dialect, self._fetch)

    def list_handles(self, prefix: str, offset: int = 0, limit: int | None = None) -> list[str]:
        no_limit = self.dialect.no_limit
        params = (*prefix_range(prefix), no_limit if limit is None else limit, offset)
        return [r[0] for r in self._fetch(self.sql.list_handles, params)]

    def count(self, prefix: str | None = None) -> int:
        if prefix is None:
            return int(self._fetch(self.sql.count_all, ())[0][0])
        return int(self._fetch(self.sql.count_prefix, prefix_range(prefix))[0][0])

    def audit_log(self, query: AuditQuery = ALL_WRITES) -> list[AuditEntry]:
        key = None if query.handle is None else handle_key(query.handle)
        params = (query.since, key, key, query.actor, query.actor, query.limit)
        return [
            _audit_entry(row)
            for row in self._fetch(
                self.sql.select_audit_newest if query.newest_first else self.sql.select_audit,
                params,
                primary=True,
            )
        ]

    # -- prefixes --------------------------------------------------------------------------

    def home_prefix(self, prefix: str) -> None:
        with self._writing() as conn:
            conn.execute(self.sql.home_prefix, (handle_key(prefix), prefix))

    def unhome_prefix(self, prefix: str) -> bool:
        with self._writing() as conn:
            return bool(conn.execute(self.sql.unhome_prefix, (handle_key(prefix),)).rowcount > 0)

    def homed_prefixes(self) -> list[str]:
        return [r[0] for r in self._fetch(self.sql.homed_prefixes, ())]

    # -- statistics ------------------------------------------------------------------------

    def add_stats(self, rows: Sequence[StatsRow]) -> None:
        if not rows:
            return
        params = [(r.prefix, r.hour, r.resolutions, r.not_found, r.registrations) for r in rows]
        with self._writing() as conn:
            conn.cursor().executemany(self.sql.add_stats, params)

    def stats(self, prefix: str | None = None, since: int = 0) -> list[StatsRow]:
        key = None if prefix is None else handle_key(prefix)
        return [StatsRow(*row) for row in self._fetch(self.sql.select_stats, (since, key, key))]

    def put_reported_stats(self, rows: Sequence[ReportedRow]) -> None:
        if not rows:
            return
        params = [
            (
                r.source,
                r.stats.prefix,
                r.stats.hour,
                r.stats.resolutions,
                r.stats.not_found,
                r.stats.registrations,
                r.reported_by,
                r.received,
            )
            for r in rows
        ]
        with self._writing() as conn:
            conn.cursor().executemany(self.sql.put_reported, params)

    def reported_stats(self, since: int = 0) -> list[ReportedRow]:
        found = []
        for row in self._fetch(self.sql.select_reported, (since,)):
            source, prefix, hour, resolutions, not_found, registrations, by, received = row
            counts = StatsRow(prefix, hour, resolutions, not_found, registrations)
            found.append(ReportedRow(source, counts, by, received))
        return found

    # -- sessions: from the primary, since one just opened must be readable at once -------

    def put_session(self, session: StoredSession) -> None:
        who = session.identity
        identity = None if who is None else f"{who.index}:{who.handle}"
        params = (session.session_id, session.nonce, identity, session.expires)
        with self._writing() as conn:
            conn.execute(self.sql.put_session, params)

    def get_session(self, session_id: str) -> StoredSession | None:
        rows = self._fetch(self.sql.get_session, (session_id,), primary=True)
        if not rows:
            return None
        session_id, nonce, identity, expires, counter, seen = rows[0]
        who = None
        if identity is not None:
            index, _, handle = identity.partition(":")
            who = ValueReference(handle, int(index))
        return StoredSession(session_id, bytes(nonce), who, expires, counter, seen)

    def advance_session(
        self, session_id: str, expected: tuple[int, int], new: tuple[int, int]
    ) -> bool:
        with self._writing() as conn:
            params = (*new, session_id, *expected)
            return bool(conn.execute(self.sql.advance_session, params).rowcount == 1)

    def delete_session(self, session_id: str) -> bool:
        with self._writing() as conn:
            return bool(conn.execute(self.sql.delete_session, (session_id,)).rowcount > 0)

    def delete_session_if(self, session_id: str, nonce: bytes) -> bool:
        with self._writing() as conn:
            done = conn.execute(self.sql.delete_session_if, (session_id, nonce))
            return bool(done.rowcount > 0)

    def purge_sessions(self, now: float) -> int:
        with self._writing() as conn:
            return int(conn.execute(self.sql.purge_sessions, (now,)).rowcount)

    # -- password accounts: from the primary, like sessions ------------------------------

    def put_account(self, account: Account) -> None:
        who = account.identity
        params = (account.name, f"{who.index}:{who.handle}", account.password, account.created)
        with self._writing() as conn:
            conn.execute(self.sql.put_account, params)

    def get_account(self, name: str) -> Account | None:
        rows = self._fetch(self.sql.get_account, (name,), primary=True)
        return _account(rows[0]) if rows else None

    def delete_account(self, name: str) -> bool:
        with self._writing() as conn:
            return bool(conn.execute(self.sql.delete_account, (name,)).rowcount > 0)

    def accounts(self) -> list[Account]:
        return [_account(row) for row in self._fetch(self.sql.list_accounts, (), primary=True)]

    # -- helpers for bulk loads ----------------------------------------------------------

    def _audit_batch(
        self,
        conn: Connection,
        audit: AuditContext,
        batch: Sequence[Row],
        before: dict[str, tuple[str, bytes]],
    ) -> None:
        """Audit entries for a batch of rows about to be written, given the stored
        (handle, values) they replace, by key."""
        conn.cursor().executemany(self.sql.insert_audit, audit_rows(audit, batch, before))


def _account(row: Sequence[Any]) -> Account:
    name, identity, password, created = row
    index, _, handle = str(identity).partition(":")
    return Account(name, ValueReference(handle, int(index)), password, int(created))


def _now() -> int:
    return int(time.time())


def encode_values(record: HandleRecord) -> bytes:
    return EncodedValues.of(record.values).wire


def decode_record(handle: str, blob: bytes) -> HandleRecord:
    try:
        return HandleRecord(handle, EncodedValues(bytes(blob)))
    except RemoteProtocolError as exc:
        raise StorageError(f"stored record {handle} is corrupt: {exc.message}") from exc


def prefix_range(prefix: str) -> tuple[str, str]:
    key = handle_key(prefix)
    return key + "/", key + "0"


def _audit_row(
    audit: AuditContext, key: str, handle: str, before: bytes | None, after: bytes | None
) -> AuditRow:
    return (time.time(), audit.actor, audit.origin, audit.operation, key, handle, before, after)


def audit_rows(
    audit: AuditContext, batch: Sequence[Row], before: dict[str, tuple[str, bytes]]
) -> list[AuditRow]:
    """The audit rows of a batch written in bulk, given the rows (handle, values) it
    replaces by key. The handle is recorded as the new row registers it."""
    rows = []
    for key, handle, values, _ in batch:
        old = before.get(key)
        rows.append(
            _audit_row(audit, key, handle, None if old is None else bytes(old[1]), values.wire)
        )
    return rows


def _audit_entry(
    row: tuple[int, float, str, str, str, str, bytes | None, bytes | None],
) -> AuditEntry:
    id_, at, actor, origin, operation, handle, before, after = row
    return AuditEntry(
        id_,
        at,
        actor,
        origin,
        operation,
        handle,
        None if before is None else decode_record(handle, before),
        None if after is None else decode_record(handle, after),
    )


def first_new(batch: Sequence[Row], existing: Collection[str]) -> list[Row]:
    """The rows an insert that skips existing keys writes: those of new keys, the
    first of each key the batch repeats (the later ones find it there), on both
    backends."""
    seen = set(existing)
    fresh = []
    for row in batch:
        if row[0] not in seen:
            seen.add(row[0])
            fresh.append(row)
    return fresh


def row_batches(records: Iterable[HandleRecord], size: int) -> Iterator[list[Row]]:
    """Records as table rows, ``size`` at a time, for backends' bulk loads."""
    now = _now()
    batch: list[Row] = []
    for record in records:
        batch.append(
            (handle_key(record.handle), record.handle, EncodedValues.of(record.values), now)
        )
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
