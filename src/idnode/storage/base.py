"""The storage interface every backend implements.

Front ends never see this; the service layer does. A backend must make each write
durable before returning (the caller acknowledges it to a client right after), and
must compare handles case-insensitively in the ASCII range (:func:`idnode.names.handle_key`).
The contract is pinned down by ``tests/test_storage_contract.py``, which every backend
runs. The records, sessions and queries it stores and answers are the types of
:mod:`idnode.domain`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

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
from idnode.stats import ReportedRow, StatsRow

if TYPE_CHECKING:
    from idnode.storage.events import EventStore
    from idnode.storage.staging import Staging

__all__ = ["RecordChange", "StagedChoice", "Storage"]

#: Given the current record (None if there is none): the new one, or None to delete.
RecordChange = Callable[[HandleRecord | None], HandleRecord | None]
#: Given the staged records whose handles exist, by key, as (stored, staged): the keys
#: to leave as they are stored.
StagedChoice = Callable[[dict[str, tuple[HandleRecord, HandleRecord]]], Collection[str]]


class Storage(Protocol):
    @property
    def reads_over_network(self) -> bool:
        """Whether a read waits on another machine (a database server): the servers
        then read off their event loop, and a local read is not answered inline."""

    @property
    def single_writer(self) -> bool:
        """Whether writes are best made by one thread per process (one write
        connection, as SQLite has): the servers then queue writes to one thread."""

    def get(self, handle: str) -> HandleRecord | None:
        """The record for ``handle`` in any ASCII case, or None."""

    def reads_at_once(self, handle: str) -> bool:
        """Whether :meth:`get` of ``handle`` answers without waiting: a local read,
        or a record held in memory (a cache hit)."""

    def stored(self, handle: str) -> tuple[str, bytes] | None:
        """The record for ``handle`` as stored: its handle as registered and its
        values in wire layout, none decoded; or None. What the servers' answer cache
        compares with what it answered from (only where :meth:`reads_at_once`)."""

    async def get_async(self, handle: str) -> HandleRecord | None:
        """:meth:`get` on an event loop, without blocking it: asynchronous I/O where
        the backend reads over the network, the plain read where it reads locally."""

    async def aclose(self) -> None:
        """Release what :meth:`get_async` opened on the event loop (before :meth:`close`)."""

    def search(self, query: SearchQuery) -> list[str]:
        """Handles (as registered, in key order) whose public values match ``query``;
        see :mod:`idnode.storage.search`."""

    def get_many(self, handles: Sequence[str]) -> dict[str, HandleRecord]:
        """The records of those of ``handles`` that exist, by handle key: one query
        for a batch, where bulk registration would otherwise ask one by one."""

    def put(self, record: HandleRecord) -> None:
        """Create or replace a record."""

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

    def delete_session_if(self, session_id: str, nonce: bytes) -> bool:
        """Delete the session only if it still holds ``nonce``; whether it did (so that
        of two workers that read one challenge, one takes it, and a challenge issued
        again under the same id meanwhile is not taken in its place)."""

    def purge_sessions(self, now: float) -> int:
        """Forget sessions that have expired by ``now``; how many there were."""

    def put_account(self, account: Account) -> None:
        """Store ``account``, replacing one of the same name."""

    def get_account(self, name: str) -> Account | None: ...

    def delete_account(self, name: str) -> bool: ...

    def accounts(self) -> list[Account]:
        """Every account, by name."""

    def schema_version(self) -> int: ...

    @property
    def events(self) -> EventStore:
        """The EPCIS event store, in the same database."""

    def close(self) -> None: ...
