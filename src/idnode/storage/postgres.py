"""PostgreSQL storage: for nodes whose processes or machines share one database.

psycopg 3 with a connection pool; statements are prepared on the server from their
first use (``prepare_threshold=0``), since a node runs the same few statements
millions of times. Bulk loads stream rows with COPY into a temporary table and merge
them in one statement. Every write commits before it returns and PostgreSQL's default
``synchronous_commit=on`` puts it on disk first.

Migrations take a transaction-scoped advisory lock, so several idnode processes
starting against a fresh database at once apply them exactly once.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from idnode.errors import HandleAlreadyExists, StorageError
from idnode.handle.values import HandleValue
from idnode.names import handle_key
from idnode.stats import ReportedRow, StatsRow
from idnode.storage import search
from idnode.storage.base import (
    ADD_STATS,
    ALL_WRITES,
    INSERT_AUDIT,
    PUT_REPORTED_STATS,
    SELECT_AUDIT,
    SELECT_REPORTED_STATS,
    SELECT_STATS,
    AuditContext,
    AuditEntry,
    AuditQuery,
    HandleRecord,
    RecordChange,
    SessionSQL,
    StagedChoice,
    StoredSession,
    advance_params,
    audit_entry,
    audit_params,
    bulk_audit_rows,
    check_same_key,
    decode_record,
    encode_values,
    first_new,
    prefix_range,
    put_staged_records,
    reported_params,
    reported_row,
    row_batches,
    select_audit_params,
    session_of_row,
    session_params,
    stats_params,
)
from idnode.storage.cache import FLUSH_ALL, CachingStorage
from idnode.storage.migrations import SEARCH_INDEX_VERSION, pending
from idnode.storage.search import SearchQuery, reindexed
from idnode.storage.staging import Staging

__all__ = ["CHANNEL", "PostgresStorage"]

log = logging.getLogger("idnode.storage")

_BATCH = 20_000
_ADD_STATS = ADD_STATS.format(p="%s")
# The prefix parameter appears twice; PostgreSQL must be told its type for IS NULL.
_SELECT_STATS = SELECT_STATS.format(p="%s").replace("(%s IS NULL", "(%s::text IS NULL")
_PUT_REPORTED = PUT_REPORTED_STATS.format(p="%s")
_SELECT_REPORTED = SELECT_REPORTED_STATS.format(p="%s")
_INSERT_AUDIT = INSERT_AUDIT.format(p="%s")
# As for stats: the optional parameters need their types for IS NULL.
_SELECT_AUDIT = (
    SELECT_AUDIT.format(p="%s")
    .replace("(%s IS NULL OR key", "(%s::text IS NULL OR key")
    .replace("(%s IS NULL OR actor", "(%s::text IS NULL OR actor")
)
_SESSIONS = SessionSQL.using("%s")
CHANNEL = "idnode_changes"
# Sent in the writing transaction, so listeners hear of a change exactly when it commits.
_NOTIFY = "SELECT pg_notify('idnode_changes', %s)"
_UPSERT = (
    "INSERT INTO handles VALUES (%s, %s, %s, %s) ON CONFLICT (key) DO UPDATE"
    " SET handle = EXCLUDED.handle, values_wire = EXCLUDED.values_wire,"
    " updated_at = EXCLUDED.updated_at"
)
# Within one batch the last record for a key wins, as a loop of put() would.
_MERGE = (
    "INSERT INTO handles SELECT DISTINCT ON (key) key, handle, values_wire, updated_at"
    " FROM idnode_staging ORDER BY key, seq DESC ON CONFLICT (key) "
)
_MERGE_REPLACE = (
    _MERGE + "DO UPDATE SET handle = EXCLUDED.handle, values_wire = EXCLUDED.values_wire,"
    " updated_at = EXCLUDED.updated_at"
)
_MERGE_SKIP = _MERGE + "DO NOTHING"
_MIGRATION_LOCK = 0x1D40DE  # advisory lock id: "idnode"


class PostgresStorage:
    def __init__(
        self,
        url: str,
        *,
        replicas: Sequence[str] = (),
        replica_lag: float = 5.0,
        min_size: int = 1,
        max_size: int = 8,
    ) -> None:
        self.url = url
        self._closing = threading.Event()
        self._listener: threading.Thread | None = None
        self._replica_lag = replica_lag
        # Keys changed within the last replica_lag seconds, as heard by the listener:
        # they are read from the primary, since a replica may not have replayed them.
        self._recent: dict[str, float] = {}
        self._recent_all_until = 0.0
        self._replicas: list[ConnectionPool] = []
        self._next_replica = itertools.cycle(range(len(replicas)))
        self._pool = _pool(url, min_size, max_size)
        try:
            for replica in replicas:
                self._replicas.append(_pool(replica, 1, max_size))
            self._migrate()
        except BaseException:
            self.close()
            raise

    def _migrate(self) -> None:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
            )
            row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
            current = int(row[0]) if row else 0
            for migration in pending(current, f"database {_safe(self.url)}"):
                for statement in migration.postgresql:
                    conn.execute(statement)
                if migration.version == SEARCH_INDEX_VERSION:
                    _index_everything(conn)
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (%s, %s, %s)",
                    (migration.version, migration.name, int(time.time())),
                )

    def _one(self, sql: str, params: tuple[Any, ...]) -> Any:
        with self._read_pool().connection() as conn:
            return conn.execute(sql, params).fetchone()

    def _read_pool(self, key: str | None = None) -> ConnectionPool:
        """A replica when there are any, unless ``key`` changed too recently for one."""
        if not self._replicas:
            return self._pool
        if key is not None:
            now = time.monotonic()
            if now < self._recent_all_until or self._recent.get(key, 0.0) > now:
                return self._pool
        return self._replicas[next(self._next_replica)]

    def add_stats(self, rows: Sequence[StatsRow]) -> None:
        if not rows:
            return
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(_ADD_STATS, [stats_params(r) for r in rows])

    def stats(self, prefix: str | None = None, since: int = 0) -> list[StatsRow]:
        key = None if prefix is None else handle_key(prefix)
        with self._read_pool().connection() as conn:
            rows = conn.execute(_SELECT_STATS, (since, key, key)).fetchall()
        return [StatsRow(*row) for row in rows]

    def put_reported_stats(self, rows: Sequence[ReportedRow]) -> None:
        if not rows:
            return
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(_PUT_REPORTED, [reported_params(r) for r in rows])

    def reported_stats(self, since: int = 0) -> list[ReportedRow]:
        with self._read_pool().connection() as conn:
            rows = conn.execute(_SELECT_REPORTED, (since,)).fetchall()
        return [reported_row(r) for r in rows]

    # Sessions go to the primary pool only: one just opened must be readable at once.
    def put_session(self, session: StoredSession) -> None:
        with self._pool.connection() as conn:
            conn.execute(_SESSIONS.put, session_params(session))

    def get_session(self, session_id: str) -> StoredSession | None:
        with self._pool.connection() as conn:
            return session_of_row(conn.execute(_SESSIONS.get, (session_id,)).fetchone())

    def advance_session(
        self, session_id: str, expected: tuple[int, int], new: tuple[int, int]
    ) -> bool:
        with self._pool.connection() as conn:
            params = advance_params(session_id, expected, new)
            return conn.execute(_SESSIONS.advance, params).rowcount == 1

    def delete_session(self, session_id: str) -> bool:
        with self._pool.connection() as conn:
            return conn.execute(_SESSIONS.delete, (session_id,)).rowcount > 0

    def purge_sessions(self, now: float) -> int:
        with self._pool.connection() as conn:
            return int(conn.execute(_SESSIONS.purge, (now,)).rowcount)

    def schema_version(self) -> int:
        row = self._one("SELECT max(version) FROM schema_migrations", ())
        return int(row[0])

    def get(self, handle: str) -> HandleRecord | None:
        key = handle_key(handle)
        with self._read_pool(key).connection() as conn:
            row = conn.execute(
                "SELECT handle, values_wire FROM handles WHERE key = %s", (key,)
            ).fetchone()
        return None if row is None else decode_record(row[0], row[1])

    def search(self, query: SearchQuery) -> list[str]:
        with self._read_pool().connection() as conn:
            return search.run(
                query, "postgresql", lambda sql, params: conn.execute(sql, params).fetchall()
            )

    def get_many(self, handles: Sequence[str]) -> dict[str, HandleRecord]:
        keys = list(dict.fromkeys(handle_key(h) for h in handles))
        if not keys:
            return {}
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT key, handle, values_wire FROM handles WHERE key = ANY(%s)", (keys,)
            ).fetchall()
        return {key: decode_record(handle, wire) for key, handle, wire in rows}

    def create(self, record: HandleRecord) -> None:
        key = handle_key(record.handle)
        try:
            with self._pool.connection() as conn, conn.transaction():
                conn.execute(
                    "INSERT INTO handles VALUES (%s, %s, %s, %s)",
                    (key, record.handle, encode_values(record), _now()),
                )
                _reindex(conn, [(key, record.values)])
                conn.execute(_NOTIFY, (key,))
        except pg_errors.UniqueViolation as exc:
            raise HandleAlreadyExists(f"handle {record.handle} already exists") from exc

    def put(self, record: HandleRecord) -> None:
        key = handle_key(record.handle)
        with self._pool.connection() as conn, conn.transaction():
            conn.execute(_UPSERT, (key, record.handle, encode_values(record), _now()))
            _reindex(conn, [(key, record.values)])
            conn.execute(_NOTIFY, (key,))

    def delete(self, handle: str) -> bool:
        key = handle_key(handle)
        with self._pool.connection() as conn, conn.transaction():
            cur = conn.execute("DELETE FROM handles WHERE key = %s", (key,))
            _reindex(conn, [(key, None)])
            conn.execute(_NOTIFY, (key,))
            return cur.rowcount > 0

    def update(
        self, handle: str, change: RecordChange, audit: AuditContext | None = None
    ) -> HandleRecord | None:
        key = handle_key(handle)
        with self._pool.connection() as conn, conn.transaction():
            # A lock on the key, not on a row: it also serialises updates that create
            # the record, where there is no row yet to lock with SELECT ... FOR UPDATE.
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
            row = conn.execute(
                "SELECT handle, values_wire FROM handles WHERE key = %s", (key,)
            ).fetchone()
            new = change(None if row is None else decode_record(row[0], row[1]))
            after = None
            if new is None:
                conn.execute("DELETE FROM handles WHERE key = %s", (key,))
            else:
                check_same_key(key, new)
                after = encode_values(new)
                conn.execute(_UPSERT, (key, new.handle, after, _now()))
            _reindex(conn, [(key, None if new is None else new.values)])
            if audit is not None:
                conn.execute(_INSERT_AUDIT, audit_params(audit, key, handle, row, new, after))
            conn.execute(_NOTIFY, (key,))
            return new

    def audit_log(self, query: AuditQuery = ALL_WRITES) -> list[AuditEntry]:
        params = select_audit_params(query)
        with self._pool.connection() as conn:
            return [audit_entry(row) for row in conn.execute(_SELECT_AUDIT, params)]

    def list_handles(self, prefix: str, offset: int = 0, limit: int | None = None) -> list[str]:
        with self._read_pool().connection() as conn:
            rows = conn.execute(
                "SELECT handle FROM handles WHERE key >= %s AND key < %s ORDER BY key"
                " LIMIT %s OFFSET %s",
                (*prefix_range(prefix), limit, offset),
            ).fetchall()
        return [r[0] for r in rows]

    def put_many(
        self,
        records: Iterable[HandleRecord],
        *,
        replace: bool,
        audit: AuditContext | None = None,
    ) -> tuple[int, int]:
        merge = _MERGE_REPLACE if replace else _MERGE_SKIP
        written = offered = 0
        for batch in row_batches(records, _BATCH):
            offered += len(batch)
            with self._pool.connection() as conn, conn.transaction():
                keys = [row[0] for row in batch]
                before = {
                    key: (handle, bytes(wire))
                    for key, handle, wire in conn.execute(
                        "SELECT key, handle, values_wire FROM handles WHERE key = ANY(%s)"
                        " FOR UPDATE",
                        (keys,),
                    )
                }
                fresh = batch if replace else first_new(batch, before, last=True)
                if audit is not None:
                    with conn.cursor() as cur:
                        cur.executemany(_INSERT_AUDIT, bulk_audit_rows(audit, fresh, before))
                conn.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS idnode_staging (seq BIGSERIAL,"
                    ' key TEXT COLLATE "C", handle TEXT, values_wire BYTEA, updated_at BIGINT)'
                    " ON COMMIT DELETE ROWS"
                )
                with conn.cursor() as cur:
                    with cur.copy(
                        "COPY idnode_staging (key, handle, values_wire, updated_at) FROM STDIN"
                    ) as copy:
                        for key, handle, values, updated in batch:
                            copy.write_row((key, handle, values.wire, updated))
                    cur.execute(merge)
                    written += max(cur.rowcount, 0)
                    _reindex(conn, [(k, values) for k, _, values, _ in fresh], before.keys())
                    cur.execute(_NOTIFY, (FLUSH_ALL,))
        return written, offered - written

    def staging(self, *, parallel: bool = False) -> Staging:
        return Staging(index=False, parallel=parallel)

    def put_staged(
        self,
        staging: Staging,
        span: range,
        choose: StagedChoice,
        *,
        audit: AuditContext | None = None,
        dry_run: bool = False,
    ) -> int:
        # COPY through put_many is this backend's fast path; it indexes as it writes.
        return put_staged_records(self, staging, span, choose, audit=audit, dry_run=dry_run)

    def iter_records(self, prefix: str | None = None) -> Iterator[HandleRecord]:
        # A named (server-side) cursor streams in chunks instead of loading everything.
        with (
            self._read_pool().connection() as conn,
            conn.transaction(),
            conn.cursor(name="idnode_iter") as cur,
        ):
            if prefix is None:
                cur.execute("SELECT handle, values_wire FROM handles ORDER BY key")
            else:
                cur.execute(
                    "SELECT handle, values_wire FROM handles WHERE key >= %s AND key < %s"
                    " ORDER BY key",
                    prefix_range(prefix),
                )
            for handle, blob in cur:
                yield decode_record(handle, blob)

    def count(self, prefix: str | None = None) -> int:
        if prefix is None:
            return int(self._one("SELECT count(*) FROM handles", ())[0])
        return int(
            self._one(
                "SELECT count(*) FROM handles WHERE key >= %s AND key < %s", prefix_range(prefix)
            )[0]
        )

    def home_prefix(self, prefix: str) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO prefixes VALUES (%s, %s) ON CONFLICT (key) DO NOTHING",
                (handle_key(prefix), prefix),
            )

    def unhome_prefix(self, prefix: str) -> bool:
        with self._pool.connection() as conn:
            cur = conn.execute("DELETE FROM prefixes WHERE key = %s", (handle_key(prefix),))
            return cur.rowcount > 0

    def homed_prefixes(self) -> list[str]:
        with self._read_pool().connection() as conn:
            rows = conn.execute("SELECT prefix FROM prefixes ORDER BY key").fetchall()
        return [r[0] for r in rows]

    def is_homed(self, prefix: str) -> bool:
        return self._one("SELECT 1 FROM prefixes WHERE key = %s", (handle_key(prefix),)) is not None

    def listen(self, cache: CachingStorage) -> None:
        """Keep ``cache`` fresh: evict what writes anywhere change, from a thread."""
        self._listener = threading.Thread(
            target=self._listen, args=(cache,), name="idnode-pg-listen", daemon=True
        )
        self._listener.start()

    def _listen(self, cache: CachingStorage) -> None:
        backoff = 0.5
        while not self._closing.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    cache.set_listening(True)
                    backoff = 0.5
                    while not self._closing.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self._heard(note.payload)
                            cache.invalidate(note.payload)
            except psycopg.Error as exc:
                log.warning("cache listener lost PostgreSQL (%s); caching paused", exc)
            finally:
                cache.set_listening(False)
            self._closing.wait(backoff)
            backoff = min(backoff * 2, 30.0)

    def _heard(self, key: str) -> None:
        if not self._replicas:
            return
        until = time.monotonic() + self._replica_lag
        if key == FLUSH_ALL:
            self._recent_all_until = until
            self._recent.clear()
            return
        self._recent[key] = until
        if len(self._recent) > 100_000:  # bounded: drop what has aged out
            now = time.monotonic()
            self._recent = {k: t for k, t in self._recent.items() if t > now}

    def close(self) -> None:
        self._closing.set()
        if self._listener is not None:
            self._listener.join(5)
        for pool in [self._pool, *self._replicas]:
            pool.close()


def _pool(url: str, min_size: int, max_size: int) -> ConnectionPool:
    pool = ConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        kwargs={"autocommit": True, "prepare_threshold": 0},
        open=False,
    )
    try:
        pool.open(wait=True, timeout=10)
    except (psycopg.Error, PoolTimeout) as exc:
        pool.close()
        raise StorageError(f"cannot connect to PostgreSQL at {_safe(url)}: {exc}") from exc
    return pool


def _safe(url: str) -> str:
    """The URL without a password, for messages."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def _now() -> int:
    return int(time.time())


def _reindex(
    conn: psycopg.Connection[Any],
    rows: Sequence[tuple[str, Sequence[HandleValue] | None]],
    existed: Collection[str] | None = None,
) -> None:
    """Replace the search index rows of records written (values) or deleted (None);
    ``existed`` as for SQLite: only keys that had records can have index rows."""
    keys, fields, docs = reindexed(rows)
    gone = [k for k in keys if existed is None or k in existed]
    if gone:
        conn.execute("DELETE FROM fields WHERE key = ANY(%s)", (gone,))
        conn.execute("DELETE FROM fields_text WHERE key = ANY(%s)", (gone,))
    with conn.cursor() as cur:
        if fields:
            cur.executemany("INSERT INTO fields VALUES (%s, %s, %s, %s)", fields)
        if docs:
            cur.executemany("INSERT INTO fields_text VALUES (%s, to_tsvector('simple', %s))", docs)


def _index_everything(conn: psycopg.Connection[Any]) -> None:
    with conn.cursor(name="idnode_index_all") as cur:
        cur.execute("SELECT key, handle, values_wire FROM handles ORDER BY key")
        while batch := cur.fetchmany(_BATCH):
            _reindex(conn, [(key, decode_record(h, w).values) for key, h, w in batch])
