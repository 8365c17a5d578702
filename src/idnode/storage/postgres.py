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

import asyncio
import functools
import itertools
import logging
import re
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from idnode.domain import AuditContext, HandleRecord
from idnode.errors import StorageError
from idnode.handle.values import HandleValue
from idnode.metrics import observe_database
from idnode.names import handle_key
from idnode.storage.base import StagedChoice
from idnode.storage.batch import KeyBatcher
from idnode.storage.cache import FLUSH_ALL, CachingStorage
from idnode.storage.search import reindexed
from idnode.storage.sql import (
    POSTGRESQL,
    Row,
    SQLStorage,
    Statements,
    decode_record,
    first_new,
    prefix_range,
    row_batches,
)
from idnode.storage.staging import Staging

__all__ = ["CHANNEL", "PostgresStorage"]

log = logging.getLogger("idnode.storage")

_BATCH = 20_000
CHANNEL = "idnode_changes"
# Sent in the writing transaction, so listeners hear of a change exactly when it commits.
_NOTIFY = "SELECT pg_notify('idnode_changes', %s)"
# A batch repeating a key is taken as a loop of single writes would take it: when
# replacing, the last record of the key wins; when skipping existing keys, the first
# (the later ones find it there), as SQLite does.
_MERGE = (
    "INSERT INTO handles SELECT DISTINCT ON (key) key, handle, values_wire, updated_at"
    " FROM idnode_staging ORDER BY key, seq {order} ON CONFLICT (key) "
)
_MERGE_REPLACE = (
    _MERGE.format(order="DESC")
    + "DO UPDATE SET handle = EXCLUDED.handle, values_wire = EXCLUDED.values_wire,"
    " updated_at = EXCLUDED.updated_at"
)
_MERGE_SKIP = _MERGE.format(order="ASC") + "DO NOTHING"
_MIGRATION_LOCK = 0x1D40DE  # advisory lock id: "idnode"
_GET_MANY = "SELECT key, handle, values_wire FROM handles WHERE key = ANY(%s)"


class PostgresStorage(SQLStorage):
    dialect = POSTGRESQL
    sql = Statements.for_dialect(POSTGRESQL)
    reads_over_network = True
    single_writer = False

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
        self._urls = [url, *replicas]
        self._max_size = max_size
        # Opened by the first get_async, on its event loop: [primary, *replicas].
        self._async_pools: list[AsyncConnectionPool] | None = None
        self._async_opening: asyncio.Lock | None = None
        self._batchers: dict[int, KeyBatcher[tuple[str, bytes]]] = {}
        self._pool = _pool(url, min_size, max_size)
        try:
            for replica in replicas:
                self._replicas.append(_pool(replica, 1, max_size))
            self._migrate()
        except BaseException:
            self.close()
            raise

    def describe(self) -> str:
        return f"database {_safe(self.url)}"

    def _fetch(
        self,
        sql: str,
        params: Sequence[object],
        *,
        key: str | None = None,
        primary: bool = False,
    ) -> list[Any]:
        pool = self._pool if primary else self._read_pool(key)
        began = time.perf_counter()
        with pool.connection() as conn:
            rows = conn.execute(sql, params).fetchall()
        observe_database("read", began)
        return rows

    @contextmanager
    def _writing(self) -> Iterator[psycopg.Connection[Any]]:
        began = time.perf_counter()
        try:
            with self._pool.connection() as conn, conn.transaction():
                yield conn
        finally:  # a refused write took its time too
            observe_database("write", began)

    def _lock_key(self, conn: psycopg.Connection[Any], key: str) -> None:
        # A lock on the key, not on a row: it also serialises updates that create the
        # record, where there is no row yet to lock with SELECT ... FOR UPDATE.
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))

    def _lock_schema(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))

    def _announce(self, conn: psycopg.Connection[Any], key: str) -> None:
        conn.execute(_NOTIFY, (key,))

    def _reindex(
        self,
        conn: psycopg.Connection[Any],
        rows: Sequence[tuple[str, Sequence[HandleValue] | None]],
        existed: Collection[str] | None = None,
    ) -> None:
        _reindex(conn, rows, existed)

    def _index_everything(self, conn: psycopg.Connection[Any]) -> None:
        with conn.cursor(name="idnode_index_all") as cur:
            cur.execute("SELECT key, handle, values_wire FROM handles ORDER BY key")
            while batch := cur.fetchmany(_BATCH):
                _reindex(conn, [(key, decode_record(h, w).values) for key, h, w in batch])

    def _read_pool(self, key: str | None = None) -> ConnectionPool:
        """A replica when there are any, unless ``key`` changed too recently for one."""
        where = self._read_from(key)
        return self._pool if where == 0 else self._replicas[where - 1]

    def _read_from(self, key: str | None) -> int:
        """0 for the primary, n for replica n (see :meth:`_read_pool`)."""
        if not self._replicas:
            return 0
        if key is not None:
            now = time.monotonic()
            if now < self._recent_all_until or self._recent.get(key, 0.0) > now:
                return 0
        return 1 + next(self._next_replica)

    # -- reads on an event loop ------------------------------------------------------

    def reads_at_once(self, handle: str) -> bool:
        return False

    async def get_async(self, handle: str) -> HandleRecord | None:
        # psycopg's asynchronous connections: the loop waits on the socket while the
        # server answers, and goes on with other work; no thread is woken, which here
        # costs more than the read itself. The keys asked for in one turn of the loop
        # are read with one query (see storage/batch.py).
        key = handle_key(handle)
        where = self._read_from(key)
        batcher = self._batchers.get(where)
        if batcher is None:
            pools = self._async_pools or await self._open_async_pools()
            batcher = self._batchers[where] = KeyBatcher(functools.partial(_rows, pools[where]))
        row = await batcher.get(key)
        return None if row is None else decode_record(*row)

    async def _open_async_pools(self) -> list[AsyncConnectionPool]:
        if self._async_opening is None:
            self._async_opening = asyncio.Lock()
        async with self._async_opening:
            if self._async_pools is None:
                pools = []
                try:
                    for url in self._urls:
                        pools.append(await _async_pool(url, self._max_size))
                except BaseException:
                    for pool in pools:
                        await pool.close()
                    raise
                self._async_pools = pools
        return self._async_pools

    async def aclose(self) -> None:
        pools, self._async_pools = self._async_pools or [], None
        self._batchers.clear()
        for pool in pools:
            await pool.close()

    def get_many(self, handles: Sequence[str]) -> dict[str, HandleRecord]:
        keys = list(dict.fromkeys(handle_key(h) for h in handles))
        if not keys:
            return {}
        with self._pool.connection() as conn:
            rows = conn.execute(_GET_MANY, (keys,)).fetchall()
        return {key: decode_record(handle, wire) for key, handle, wire in rows}

    def put_many(
        self,
        records: Iterable[HandleRecord],
        *,
        replace: bool,
        audit: AuditContext | None = None,
    ) -> tuple[int, int]:
        written = offered = 0
        for batch in row_batches(records, _BATCH):
            offered += len(batch)
            with self._pool.connection() as conn, conn.transaction():
                before = self._locked_rows(conn, [row[0] for row in batch])
                written += self._merge(conn, batch, before, replace=replace, audit=audit)
        return written, offered - written

    @staticmethod
    def _locked_rows(
        conn: psycopg.Connection[Any], keys: list[str]
    ) -> dict[str, tuple[str, bytes]]:
        """The stored rows of ``keys``, locked until the transaction ends."""
        return {
            key: (handle, bytes(wire))
            for key, handle, wire in conn.execute(
                "SELECT key, handle, values_wire FROM handles WHERE key = ANY(%s) FOR UPDATE",
                (keys,),
            )
        }

    def _merge(
        self,
        conn: psycopg.Connection[Any],
        batch: list[Row],
        before: dict[str, tuple[str, bytes]],
        *,
        replace: bool,
        audit: AuditContext | None,
    ) -> int:
        """Write ``batch`` in the caller's transaction (``before``: stored rows read
        there, its keys' among them); returns how many rows were written."""
        if not batch:
            return 0
        before = {row[0]: before[row[0]] for row in batch if row[0] in before}
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS idnode_staging (seq BIGSERIAL,"
            ' key TEXT COLLATE "C", handle TEXT, values_wire BYTEA, updated_at BIGINT)'
            " ON COMMIT DELETE ROWS"
        )
        with conn.cursor() as cur:
            cur.execute("TRUNCATE idnode_staging")
            with cur.copy(
                "COPY idnode_staging (key, handle, values_wire, updated_at) FROM STDIN"
            ) as copy:
                for key, handle, values, updated in batch:
                    copy.write_row((key, handle, values.wire, updated))
            cur.execute((_MERGE_REPLACE if replace else _MERGE_SKIP) + " RETURNING key")
            # What was written: skipping, a key another writer created meanwhile is not.
            done = {key for (key,) in cur.fetchall()}
        fresh = [r for r in (batch if replace else first_new(batch, before)) if r[0] in done]
        if audit is not None:
            self._audit_batch(conn, audit, fresh, before)
        _reindex(conn, [(k, values) for k, _, values, _ in fresh], before.keys())
        conn.execute(_NOTIFY, (FLUSH_ALL,))
        return len(done)

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
        # One transaction: the stored records read, compared and written under row
        # locks, so no write to them slips in between. A handle created meanwhile by
        # another writer (no row to lock when read) is kept, as if this load had come
        # first; it is not counted as written.
        records = [(handle_key(r.handle), r) for r in staging.records(span)]
        with self._pool.connection() as conn, conn.transaction():
            before = self._locked_rows(conn, [key for key, _ in records])
            stored = {key: decode_record(handle, wire) for key, (handle, wire) in before.items()}
            leave = set(choose({key: (stored[key], r) for key, r in records if key in stored}))
            writes = [(key, r) for key, r in records if key not in leave]
            if dry_run:
                return len(writes)
            rows = next(row_batches([r for _, r in writes], len(writes) or 1), [])
            present = [row for row in rows if row[0] in before]
            new = [row for row in rows if row[0] not in before]
            return self._merge(conn, present, before, replace=True, audit=audit) + self._merge(
                conn, new, before, replace=False, audit=audit
            )

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


async def _rows(pool: AsyncConnectionPool, keys: list[str]) -> dict[str, tuple[str, bytes]]:
    """(handle, values) of those of ``keys`` that exist, by key."""
    began = time.perf_counter()
    async with pool.connection() as conn:
        cursor = await conn.execute(_GET_MANY, (keys,))
        rows = {key: (handle, wire) for key, handle, wire in await cursor.fetchall()}
    observe_database("read", began)
    return rows


async def _async_pool(url: str, max_size: int) -> AsyncConnectionPool:
    pool = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        kwargs={"autocommit": True, "prepare_threshold": 0},
        open=False,
    )
    try:
        await pool.open(wait=True, timeout=10)
    except (psycopg.Error, PoolTimeout) as exc:
        await pool.close()
        raise StorageError(f"cannot connect to PostgreSQL at {_safe(url)}: {exc}") from exc
    return pool


def _safe(url: str) -> str:
    """The URL without a password, for messages."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


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
