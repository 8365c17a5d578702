"""The storage interface every backend implements, and the record it stores.

Front ends never see this; the service layer does. A backend must make each write
durable before returning (the caller acknowledges it to a client right after), and
must compare handles case-insensitively in the ASCII range (:func:`idnode.names.handle_key`).
The contract is pinned down by ``tests/test_storage_contract.py``, which every backend
runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol

from idnode.errors import RemoteProtocolError, StorageError
from idnode.handle.encoded import EncodedValues
from idnode.handle.values import HandleValue, ValueReference
from idnode.names import handle_key
from idnode.stats import ReportedRow, StatsRow
from idnode.storage.search import SearchQuery

if TYPE_CHECKING:
    from idnode.storage.staging import Staging

__all__ = [
    "ADD_STATS",
    "ALL_WRITES",
    "INSERT_AUDIT",
    "PUT_REPORTED_STATS",
    "SELECT_AUDIT",
    "SELECT_REPORTED_STATS",
    "SELECT_STATS",
    "AuditContext",
    "AuditEntry",
    "AuditQuery",
    "HandleRecord",
    "RecordChange",
    "SessionSQL",
    "StagedChoice",
    "Storage",
    "StoredSession",
    "advance_params",
    "audit_entry",
    "audit_params",
    "bulk_audit_rows",
    "check_same_key",
    "decode_record",
    "encode_values",
    "first_new",
    "prefix_range",
    "put_staged_records",
    "reported_params",
    "reported_row",
    "row_batches",
    "select_audit_params",
    "session_of_row",
    "session_params",
    "stats_params",
]


@dataclass(frozen=True, slots=True)
class HandleRecord:
    """A handle as registered (original case kept) with all its values.

    Backends may return the values as :class:`~idnode.handle.encoded.EncodedValues`
    (still in wire layout) or as any other sequence.
    """

    handle: str
    values: Sequence[HandleValue]


RecordChange = Callable[["HandleRecord | None"], "HandleRecord | None"]
#: Given the staged records whose handles exist, by key, as (stored, staged): the keys
#: to leave as they are stored.
StagedChoice = Callable[[dict[str, tuple["HandleRecord", "HandleRecord"]]], Collection[str]]


@dataclass(frozen=True, slots=True)
class AuditContext:
    """Who makes a write, from where, and what they called it; stored with the write."""

    actor: str
    origin: str
    operation: str


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Which audit entries to read: by handle, by actor, from a time on, how many."""

    handle: str | None = None
    actor: str | None = None
    since: float = 0.0
    limit: int = 1000


ALL_WRITES = AuditQuery()


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One recorded write: the record before and after (None where it did not exist)."""

    id: int
    at: float
    actor: str
    origin: str
    operation: str
    handle: str
    before: HandleRecord | None
    after: HandleRecord | None


@dataclass(frozen=True, slots=True)
class StoredSession:
    """A session: who its client proved to be (if yet), until when.

    An HTTP API session keeps in ``nonce`` the nonce its client signs; a Handle
    protocol session (id ``handle:<n>``) keeps its session key there, and in
    ``counter``/``seen`` the highest message counter accepted and a bitmap of the
    ones below it that were, so that a replayed message is refused.
    """

    session_id: str
    nonce: bytes
    identity: ValueReference | None
    expires: float
    counter: int = 0
    seen: int = 0


class Storage(Protocol):
    def get(self, handle: str) -> HandleRecord | None:
        """The record for ``handle`` in any ASCII case, or None."""

    def search(self, query: SearchQuery) -> list[str]:
        """Handles (as registered, in key order) whose public values match ``query``;
        see :mod:`idnode.storage.search`."""

    def get_many(self, handles: Sequence[str]) -> dict[str, HandleRecord]:
        """The records of those of ``handles`` that exist, by handle key: one query
        for a batch, where bulk registration would otherwise ask one by one."""

    def create(self, record: HandleRecord) -> None:
        """Store a new record; HandleAlreadyExists if the handle is taken."""

    def put(self, record: HandleRecord) -> None:
        """Create or replace a record."""

    def delete(self, handle: str) -> bool:
        """Remove a record; False if there was none."""

    def update(
        self, handle: str, change: RecordChange, audit: AuditContext | None = None
    ) -> HandleRecord | None:
        """Read, change and write one record atomically; returns what was written.

        ``change`` gets the current record (None if there is none) and returns the new
        one, or None to delete it. Updates of the same handle from any number of
        threads, processes or machines are serialised, so none is lost; ``change`` may
        raise to abort, and then nothing is written. With ``audit``, an audit entry
        holding the record before and after is written in the same transaction.
        """

    def audit_log(self, query: AuditQuery = ALL_WRITES) -> list[AuditEntry]:
        """The entries ``query`` selects, oldest first."""

    def list_handles(self, prefix: str, offset: int = 0, limit: int | None = None) -> list[str]:
        """Handles under ``prefix`` as registered, in key order, for paged listings."""

    def put_many(
        self,
        records: Iterable[HandleRecord],
        *,
        replace: bool,
        audit: AuditContext | None = None,
    ) -> tuple[int, int]:
        """Store many records in large transactions; returns (written, skipped).

        With ``replace`` false, existing handles are skipped rather than overwritten.
        With ``audit``, each record written gets an audit entry (before and after) in
        its batch's transaction.
        """

    def staging(self, *, parallel: bool = False) -> Staging:
        """A place to set aside the checked records of a bulk load, laid out for
        :meth:`put_staged` (``parallel``: staged by a second process)."""

    def put_staged(
        self,
        staging: Staging,
        span: range,
        choose: StagedChoice,
        *,
        audit: AuditContext | None = None,
        dry_run: bool = False,
    ) -> int:
        """Write the staged records numbered ``span`` in one transaction, creating or
        replacing records, except those whose keys ``choose`` leaves as they are; it
        is given the staged records whose handles exist already. Returns how many
        records were written (``dry_run``: would be, and nothing is). ``audit`` as
        for :meth:`put_many`.
        """

    def iter_records(self, prefix: str | None = None) -> Iterator[HandleRecord]:
        """Every record, or those under one prefix, in handle-key order."""

    def count(self, prefix: str | None = None) -> int: ...

    def home_prefix(self, prefix: str) -> None:
        """Mark a prefix as served here (idempotent)."""

    def unhome_prefix(self, prefix: str) -> bool: ...

    def homed_prefixes(self) -> list[str]: ...

    def is_homed(self, prefix: str) -> bool: ...

    def add_stats(self, rows: Sequence[StatsRow]) -> None:
        """Add counts to the per-prefix, per-hour totals (summed, never replaced)."""

    def stats(self, prefix: str | None = None, since: int = 0) -> list[StatsRow]:
        """Totals per prefix and hour from ``since`` on, by prefix then hour."""

    def put_reported_stats(self, rows: Sequence[ReportedRow]) -> None:
        """Store other nodes' totals in one transaction, each replacing the row of the
        same source, prefix and hour."""

    def reported_stats(self, since: int = 0) -> list[ReportedRow]:
        """Reported totals from hour ``since`` on, by source, prefix, then hour."""

    def put_session(self, session: StoredSession) -> None:
        """Store ``session``, replacing one with the same id."""

    def get_session(self, session_id: str) -> StoredSession | None:
        """The stored session (expired or not), or None."""

    def advance_session(
        self, session_id: str, expected: tuple[int, int], new: tuple[int, int]
    ) -> bool:
        """Set the session's (counter, seen) to ``new`` if they are still
        ``expected``; whether they were (a compare-and-swap, so that two workers
        cannot both accept the same message)."""

    def delete_session(self, session_id: str) -> bool: ...

    def purge_sessions(self, now: float) -> int:
        """Forget sessions that have expired by ``now``; how many there were."""

    def schema_version(self) -> int: ...

    def close(self) -> None: ...


# Helpers every SQL backend shares: values are stored in wire layout, and the keys under
# prefix P are exactly those in ["P/", "P0") since '0' follows '/' in ASCII.


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


def check_same_key(key: str, record: HandleRecord) -> None:
    """An update may change a record, never which handle it is."""
    if handle_key(record.handle) != key:
        raise StorageError(f"an update of {key} returned a record for {record.handle}")


# Both SQL dialects spell the summing upsert the same way.
ADD_STATS = (
    "INSERT INTO stats VALUES ({p}, {p}, {p}, {p}, {p}) ON CONFLICT (prefix, hour) DO UPDATE"
    " SET resolutions = stats.resolutions + excluded.resolutions,"
    " not_found = stats.not_found + excluded.not_found,"
    " registrations = stats.registrations + excluded.registrations"
)
SELECT_STATS = (
    "SELECT prefix, hour, resolutions, not_found, registrations FROM stats"
    " WHERE hour >= {p} AND ({p} IS NULL OR prefix = {p}) ORDER BY prefix, hour"
)

PUT_REPORTED_STATS = (
    "INSERT INTO reported_stats VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})"
    " ON CONFLICT (source, prefix, hour) DO UPDATE SET resolutions = excluded.resolutions,"
    " not_found = excluded.not_found, registrations = excluded.registrations,"
    " reported_by = excluded.reported_by, received = excluded.received"
)
SELECT_REPORTED_STATS = (
    "SELECT source, prefix, hour, resolutions, not_found, registrations, reported_by, received"
    " FROM reported_stats WHERE hour >= {p} ORDER BY source, prefix, hour"
)


INSERT_AUDIT = (
    "INSERT INTO audit (at, actor, origin, operation, key, handle, before, after)"
    " VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})"
)
SELECT_AUDIT = (
    "SELECT id, at, actor, origin, operation, handle, before, after FROM audit"
    " WHERE at >= {p} AND ({p} IS NULL OR key = {p}) AND ({p} IS NULL OR actor = {p})"
    " ORDER BY id LIMIT {p}"
)


class SessionSQL(NamedTuple):
    """The session statements, with a backend's parameter placeholder."""

    put: str
    get: str
    delete: str
    purge: str
    advance: str

    @classmethod
    def using(cls, placeholder: str) -> SessionSQL:
        return cls(*(sql.format(p=placeholder) for sql in _SESSION_SQL))


_SESSION_SQL = (
    "INSERT INTO sessions (id, nonce, identity, expires) VALUES ({p}, {p}, {p}, {p})"
    " ON CONFLICT (id) DO UPDATE SET nonce = excluded.nonce,"
    " identity = excluded.identity, expires = excluded.expires",
    "SELECT id, nonce, identity, expires, counter, seen FROM sessions WHERE id = {p}",
    "DELETE FROM sessions WHERE id = {p}",
    "DELETE FROM sessions WHERE expires <= {p}",
    "UPDATE sessions SET counter = {p}, seen = {p} WHERE id = {p} AND counter = {p} AND seen = {p}",
)


def session_params(session: StoredSession) -> tuple[str, bytes, str | None, float]:
    who = session.identity
    identity = None if who is None else f"{who.index}:{who.handle}"
    return (session.session_id, session.nonce, identity, session.expires)


def session_of_row(
    row: tuple[str, bytes, str | None, float, int, int] | None,
) -> StoredSession | None:
    if row is None:
        return None
    session_id, nonce, identity, expires, counter, seen = row
    who = None
    if identity is not None:
        index, _, handle = identity.partition(":")
        who = ValueReference(handle, int(index))
    return StoredSession(session_id, bytes(nonce), who, expires, counter, seen)


def advance_params(
    session_id: str, expected: tuple[int, int], new: tuple[int, int]
) -> tuple[int, int, str, int, int]:
    return (*new, session_id, *expected)


def audit_params(
    audit: AuditContext,
    key: str,
    handle: str,
    row: tuple[str, bytes] | None,
    new: HandleRecord | None,
    after: bytes | None,
) -> tuple[float, str, str, str, str, str, bytes | None, bytes | None]:
    """The audit row for an update that read ``row`` (handle, values) and wrote ``new``.

    The handle is recorded as registered: the new record's, else the old one's.
    """
    name = new.handle if new is not None else row[0] if row is not None else handle
    before = None if row is None else bytes(row[1])
    return (time.time(), audit.actor, audit.origin, audit.operation, key, name, before, after)


def select_audit_params(
    query: AuditQuery,
) -> tuple[float, str | None, str | None, str | None, str | None, int]:
    key = None if query.handle is None else handle_key(query.handle)
    return (query.since, key, key, query.actor, query.actor, query.limit)


def audit_entry(
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


def bulk_audit_rows(
    audit: AuditContext, batch: Sequence[Row], before: dict[str, tuple[str, bytes]]
) -> list[tuple[float, str, str, str, str, str, bytes | None, bytes | None]]:
    """The audit rows of a batch written by :meth:`Storage.put_many`, given the rows
    (handle, values) it replaces by key."""
    return [
        audit_params(audit, key, handle, before.get(key), None, values.wire)
        for key, handle, values, _ in batch
    ]


def first_new(batch: Sequence[Row], existing: Collection[str], *, last: bool = False) -> list[Row]:
    """The rows an insert that skips existing keys writes: those of new keys, one per
    key the batch repeats, the first (SQLite's INSERT OR IGNORE) or with ``last`` the
    last (the PostgreSQL merge, which keeps the latest row of a key)."""
    seen = set(existing)
    fresh = []
    for row in reversed(batch) if last else batch:
        if row[0] not in seen:
            seen.add(row[0])
            fresh.append(row)
    return fresh


def put_staged_records(
    storage: Storage,
    staging: Staging,
    span: range,
    choose: StagedChoice,
    *,
    audit: AuditContext | None,
    dry_run: bool,
) -> int:
    """:meth:`Storage.put_staged` for a backend that loads records through its
    ``put_many``: read back, compared, written. A record created between the reading
    and the writing is overwritten, as by ``put_many`` with ``replace``."""
    records = [(handle_key(r.handle), r) for r in staging.records(span)]
    stored = storage.get_many([r.handle for _, r in records])
    leave = set(choose({key: (stored[key], r) for key, r in records if key in stored}))
    writes = [r for key, r in records if key not in leave]
    if not dry_run:
        storage.put_many(writes, replace=True, audit=audit)
    return len(writes)


def stats_params(row: StatsRow) -> tuple[str, int, int, int, int]:
    return (row.prefix, row.hour, row.resolutions, row.not_found, row.registrations)


def reported_params(r: ReportedRow) -> tuple[str, str, int, int, int, int, str, float]:
    row = r.stats
    return (
        r.source,
        row.prefix,
        row.hour,
        row.resolutions,
        row.not_found,
        row.registrations,
        r.reported_by,
        r.received,
    )


def reported_row(row: tuple[str, str, int, int, int, int, str, float]) -> ReportedRow:
    source, prefix, hour, resolutions, not_found, registrations, reported_by, received = row
    stats = StatsRow(prefix, hour, resolutions, not_found, registrations)
    return ReportedRow(source, stats, reported_by, received)


Row = tuple[str, str, EncodedValues, int]  # key, handle, values, updated_at


def row_batches(records: Iterable[HandleRecord], size: int) -> Iterator[list[Row]]:
    """Records as table rows, ``size`` at a time, for backends' bulk loads."""
    now = int(time.time())
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
