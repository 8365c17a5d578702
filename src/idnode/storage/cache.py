"""A bounded in-memory cache of records in front of a storage backend.

For nodes whose processes share a PostgreSQL database: each process keeps its own
least-recently-used cache of records (and of "no such handle"), and every write made
anywhere sends the changed key on a notification channel that all caches listen to
(:meth:`PostgresStorage.listen`), so a cached answer is dropped as soon as the write
that outdates it commits.

Two rules keep it from serving stale data. A record read from the database is cached
only if no invalidation arrived while it was being read (an epoch counter), so a
slow read cannot put back what a concurrent write just evicted. And while the listener
is not connected (start-up, a dropped connection) nothing is cached at all. Entries
also expire after ``max_age`` seconds, in case a notification is lost in a way the
listener cannot see.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence

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
from idnode.handle.encoded import EncodedValues
from idnode.metrics import record_cache
from idnode.names import handle_key
from idnode.stats import ReportedRow, StatsRow
from idnode.storage.base import RecordChange, StagedChoice, Storage
from idnode.storage.events import EventStore
from idnode.storage.staging import Staging

__all__ = ["FLUSH_ALL", "CachingStorage"]

#: Notification payload meaning "drop everything" (sent after bulk loads).
FLUSH_ALL = "*"

_MISSING = object()


class CachingStorage:
    """Wraps a Storage; reads go through the cache, writes through to the backend."""

    def __init__(
        self,
        inner: Storage,
        *,
        max_entries: int,
        max_age: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = inner
        self._max_entries = max_entries
        self._max_age = max_age
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, HandleRecord | None]] = OrderedDict()
        self._lock = threading.Lock()
        self._epoch = 0
        self._listening = False
        self.hits = self.misses = 0

    @property
    def reads_over_network(self) -> bool:
        # A hit is answered from memory, but a miss reads the backend.
        return self._inner.reads_over_network

    @property
    def single_writer(self) -> bool:
        return self._inner.single_writer

    # -- invalidation (called from the listener thread) ------------------------

    def set_listening(self, listening: bool) -> None:
        """The listener reports whether it is connected; caching only while it is."""
        with self._lock:
            self._listening = listening
            self._epoch += 1
            self._entries.clear()

    def invalidate(self, key: str) -> None:
        with self._lock:
            self._epoch += 1
            if key == FLUSH_ALL:
                self._entries.clear()
            else:
                self._entries.pop(key, None)

    # -- reads -----------------------------------------------------------------

    def get(self, handle: str) -> HandleRecord | None:
        key, now = handle_key(handle), self._clock()
        hit, record, epoch = self._lookup(key, now)
        if hit:
            return record
        record = self._inner.get(handle)
        self._keep(key, now, record, epoch)
        return record

    def stored(self, handle: str) -> tuple[str, bytes] | None:
        key, now = handle_key(handle), self._clock()
        hit, record, _ = self._lookup(key, now)
        if not hit:
            return self._inner.stored(handle)
        if record is None:
            return None
        return record.handle, EncodedValues.of(record.values).wire

    def reads_at_once(self, handle: str) -> bool:
        entry = self._entries.get(handle_key(handle))
        if entry is not None and self._clock() - entry[0] <= self._max_age:
            return True
        return self._inner.reads_at_once(handle)

    async def get_async(self, handle: str) -> HandleRecord | None:
        key, now = handle_key(handle), self._clock()
        hit, record, epoch = self._lookup(key, now)
        if hit:
            return record
        record = await self._inner.get_async(handle)
        self._keep(key, now, record, epoch)
        return record

    async def aclose(self) -> None:
        await self._inner.aclose()

    def _lookup(self, key: str, now: float) -> tuple[bool, HandleRecord | None, int | None]:
        """(hit, record, None) from the cache, or (False, None, epoch) for a miss: the
        epoch to pass to :meth:`_keep` (None while nothing may be cached)."""
        epoch = None
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and now - entry[0] <= self._max_age:
                self._entries.move_to_end(key)
                self.hits += 1
            else:
                entry = None
                self.misses += 1
                epoch = self._epoch if self._listening else None
        record_cache(entry is not None)
        if entry is not None:
            return True, entry[1], None
        return False, None, epoch

    def _keep(self, key: str, now: float, record: HandleRecord | None, epoch: int | None) -> None:
        """Cache what a miss read, unless an invalidation came while it was read."""
        with self._lock:
            if epoch is not None and self._listening and epoch == self._epoch:
                self._entries[key] = (now, record)
                self._entries.move_to_end(key)
                while len(self._entries) > self._max_entries:
                    self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    # -- writes: through to the backend, and forget the local copy at once -----

    def put(self, record: HandleRecord) -> None:
        self._inner.put(record)
        self.invalidate(handle_key(record.handle))

    def update(
        self, handle: str, change: RecordChange, audit: AuditContext | None = None
    ) -> HandleRecord | None:
        try:
            return self._inner.update(handle, change, audit)
        finally:
            self.invalidate(handle_key(handle))

    def put_many(
        self,
        records: Iterable[HandleRecord],
        *,
        replace: bool,
        audit: AuditContext | None = None,
    ) -> tuple[int, int]:
        try:
            return self._inner.put_many(records, replace=replace, audit=audit)
        finally:
            self.invalidate(FLUSH_ALL)

    def staging(self, *, parallel: bool = False) -> Staging:
        return self._inner.staging(parallel=parallel)

    def put_staged(
        self,
        staging: Staging,
        span: range,
        choose: StagedChoice,
        *,
        audit: AuditContext | None = None,
        dry_run: bool = False,
    ) -> int:
        try:
            return self._inner.put_staged(staging, span, choose, audit=audit, dry_run=dry_run)
        finally:
            if not dry_run:
                self.invalidate(FLUSH_ALL)

    # -- everything else is not cached -------------------------------------------

    def iter_records(self, prefix: str | None = None) -> Iterator[HandleRecord]:
        return self._inner.iter_records(prefix)

    def audit_log(self, query: AuditQuery = ALL_WRITES) -> list[AuditEntry]:
        return self._inner.audit_log(query)

    def list_handles(self, prefix: str, offset: int = 0, limit: int | None = None) -> list[str]:
        return self._inner.list_handles(prefix, offset, limit)

    def count(self, prefix: str | None = None) -> int:
        return self._inner.count(prefix)

    def home_prefix(self, prefix: str) -> None:
        self._inner.home_prefix(prefix)

    def unhome_prefix(self, prefix: str) -> bool:
        return self._inner.unhome_prefix(prefix)

    def homed_prefixes(self) -> list[str]:
        return self._inner.homed_prefixes()

    def search(self, query: SearchQuery) -> list[str]:
        return self._inner.search(query)

    def get_many(self, handles: Sequence[str]) -> dict[str, HandleRecord]:
        # Bulk work reads the database itself: it must see what is there now.
        return self._inner.get_many(handles)

    def add_stats(self, rows: Sequence[StatsRow]) -> None:
        self._inner.add_stats(rows)

    def stats(self, prefix: str | None = None, since: int = 0) -> list[StatsRow]:
        return self._inner.stats(prefix, since)

    def put_reported_stats(self, rows: Sequence[ReportedRow]) -> None:
        self._inner.put_reported_stats(rows)

    def reported_stats(self, since: int = 0) -> list[ReportedRow]:
        return self._inner.reported_stats(since)

    def put_session(self, session: StoredSession) -> None:
        self._inner.put_session(session)

    def get_session(self, session_id: str) -> StoredSession | None:
        return self._inner.get_session(session_id)

    def advance_session(
        self, session_id: str, expected: tuple[int, int], new: tuple[int, int]
    ) -> bool:
        return self._inner.advance_session(session_id, expected, new)

    def delete_session(self, session_id: str) -> bool:
        return self._inner.delete_session(session_id)

    def delete_session_if(self, session_id: str, nonce: bytes) -> bool:
        return self._inner.delete_session_if(session_id, nonce)

    def purge_sessions(self, now: float) -> int:
        return self._inner.purge_sessions(now)

    def put_account(self, account: Account) -> None:
        self._inner.put_account(account)

    def get_account(self, name: str) -> Account | None:
        return self._inner.get_account(name)

    def delete_account(self, name: str) -> bool:
        return self._inner.delete_account(name)

    def accounts(self) -> list[Account]:
        return self._inner.accounts()

    @property
    def events(self) -> EventStore:
        return self._inner.events

    def schema_version(self) -> int:
        return self._inner.schema_version()

    def close(self) -> None:
        self._inner.close()
