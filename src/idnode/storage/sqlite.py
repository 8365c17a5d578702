"""SQLite storage: one file, WAL journal, every commit synced before it returns.

Writes go through one connection in ``BEGIN IMMEDIATE`` transactions, serialised by a
lock (several processes may share the file; SQLite's own lock and ``busy_timeout``
serialise them). Reads use one connection per thread, so a server's event loop never
waits behind a bulk import's transaction: WAL lets readers see the last commit.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from idnode.domain import AuditContext, HandleRecord
from idnode.errors import StorageError
from idnode.handle.values import HandleValue
from idnode.metrics import observe_database
from idnode.names import handle_key
from idnode.storage.base import StagedChoice
from idnode.storage.search import reindexed
from idnode.storage.sql import (
    SQLITE,
    SQLStorage,
    Statements,
    decode_record,
    first_new,
    prefix_range,
    row_batches,
)
from idnode.storage.staging import Staging

__all__ = ["SQLiteStorage", "copy_sqlite"]

_BATCH = 5000
_MMAP_BYTES = 1 << 30
_WRITER_CACHE_KIB = 64 * 1024


class SQLiteStorage(SQLStorage):
    """The embedded default backend. ``path`` is created with its schema if missing."""

    dialect = SQLITE
    sql = Statements.for_dialect(SQLITE)
    reads_over_network = False
    single_writer = True

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        try:
            self._writer = self._connect()
            self._writer.execute("PRAGMA journal_mode=WAL")
            # Bulk writes insert into the search index's B-trees all over; with the
            # default 2 MB page cache most of those inserts read pages back from disk.
            # Pages are allocated as they are used, so small writes cost nothing more.
            self._writer.execute(f"PRAGMA cache_size={-_WRITER_CACHE_KIB}")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot open database {self.path}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        # FULL (not NORMAL) so a commit survives power loss, not only a process crash.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    @property
    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only=1")
            # Reads map the file instead of copying pages through read() calls: a
            # resolution touches a few B-tree pages, and the copies were half its cost.
            conn.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")
            self._local.conn = conn
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        began = time.perf_counter()
        try:
            with self._write_lock:
                conn = self._writer
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
        finally:  # a refused write took its time too
            observe_database("write", began)

    def describe(self) -> str:
        return f"database {self.path}"

    def _fetch(
        self,
        sql: str,
        params: Sequence[object],
        *,
        key: str | None = None,
        primary: bool = False,
    ) -> list[Any]:
        # Every reader sees the last commit (WAL), so key and primary change nothing.
        began = time.perf_counter()
        rows = self._reader.execute(sql, params).fetchall()
        observe_database("read", began)
        return rows

    def _writing(self) -> Any:
        return self._transaction()

    def _reindex(
        self,
        conn: sqlite3.Connection,
        rows: Sequence[tuple[str, Sequence[HandleValue] | None]],
        existed: Collection[str] | None = None,
    ) -> None:
        _reindex(conn, rows, existed)

    def _index_everything(self, conn: sqlite3.Connection) -> None:
        rows = conn.execute("SELECT key, handle, values_wire FROM handles ORDER BY key")
        while batch := rows.fetchmany(_BATCH):
            _reindex(conn, [(key, decode_record(h, w).values) for key, h, w in batch])

    def get(self, handle: str) -> HandleRecord | None:
        # The hot path of every resolution: one statement on this thread's reader.
        began = time.perf_counter()
        row = self._reader.execute(self.sql.get, (handle_key(handle),)).fetchone()
        observe_database("read", began)
        return None if row is None else decode_record(row[0], row[1])

    def stored(self, handle: str) -> tuple[str, bytes] | None:
        # On the hot path of the answer cache: as get(), without decoding.
        began = time.perf_counter()
        row = self._reader.execute(self.sql.get, (handle_key(handle),)).fetchone()
        observe_database("read", began)
        return None if row is None else (row[0], row[1])

    def reads_at_once(self, handle: str) -> bool:
        return True

    async def get_async(self, handle: str) -> HandleRecord | None:
        # A local read of a few memory-mapped pages: nothing to wait for asynchronously.
        return self.get(handle)

    async def aclose(self) -> None:
        pass

    def get_many(self, handles: Sequence[str]) -> dict[str, HandleRecord]:
        keys = list(dict.fromkeys(handle_key(h) for h in handles))
        rows = self._rows(self._reader, keys)
        return {key: decode_record(handle, wire) for key, (handle, wire) in rows.items()}

    def put_many(
        self,
        records: Iterable[HandleRecord],
        *,
        replace: bool,
        audit: AuditContext | None = None,
    ) -> tuple[int, int]:
        sql = self.sql.upsert if replace else _INSERT_NEW
        written = offered = 0
        for batch in row_batches(records, _BATCH):
            offered += len(batch)
            with self._transaction() as conn:
                before = self._rows(conn, [row[0] for row in batch])
                fresh = batch if replace else first_new(batch, before)
                if audit is not None:
                    self._audit_batch(conn, audit, fresh, before)
                changes = conn.total_changes
                conn.executemany(sql, [(k, h, values.wire, t) for k, h, values, t in batch])
                written += conn.total_changes - changes
                _reindex(conn, [(key, values) for key, _, values, _ in fresh], before.keys())
        return written, offered - written

    @staticmethod
    def _rows(conn: sqlite3.Connection, keys: list[str]) -> dict[str, tuple[str, bytes]]:
        found: dict[str, tuple[str, bytes]] = {}
        # SQLite allows 32766 parameters per statement from 3.32 on; 500 suits any.
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            query = f"SELECT key, handle, values_wire FROM handles WHERE key IN ({marks})"  # noqa: S608
            found |= {key: (handle, wire) for key, handle, wire in conn.execute(query, chunk)}
        return found

    def staging(self, *, parallel: bool = False) -> Staging:
        return Staging(index=True, parallel=parallel)

    def put_staged(
        self,
        staging: Staging,
        span: range,
        choose: StagedChoice,
        *,
        audit: AuditContext | None = None,
        dry_run: bool = False,
    ) -> int:
        # Everything by INSERT ... SELECT from the staging file: records, index rows
        # and documents come as they were staged, and Python sees only the records
        # whose handles exist.
        if not staging.index:
            raise StorageError("SQLite loads staged records with their index rows")
        staging.finish()
        where = {"first": span.start, "stop": span.stop}
        with self._write_lock:
            conn = self._writer
            conn.execute("ATTACH DATABASE ? AS staged", (str(staging.path),))
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    written = self._put_staged(conn, where, choose, audit, dry_run)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            finally:
                conn.execute("DETACH DATABASE staged")
        return written

    @staticmethod
    def _put_staged(
        conn: sqlite3.Connection,
        where: dict[str, int],
        choose: StagedChoice,
        audit: AuditContext | None,
        dry_run: bool,
    ) -> int:
        existing = {
            key: (decode_record(old_handle, old_wire), decode_record(handle, wire))
            for key, handle, wire, old_handle, old_wire in conn.execute(_STAGED_EXISTING, where)
        }
        leave = set(choose(existing))
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS staged_leave (key TEXT PRIMARY KEY)")
        conn.execute("DELETE FROM temp.staged_leave")
        conn.executemany("INSERT INTO temp.staged_leave VALUES (?)", [(k,) for k in leave])
        if dry_run:
            (count,) = conn.execute(_STAGED_COUNT, where).fetchone()
            return int(count)
        if audit is not None:
            who = {"actor": audit.actor, "origin": audit.origin, "operation": audit.operation}
            conn.execute(_STAGED_AUDIT, {**where, **who, "at": time.time()})
        _unindex(conn, [key for key in existing if key not in leave])
        written = conn.execute(_STAGED_RECORDS, {**where, "now": int(time.time())}).rowcount
        conn.execute(_STAGED_FIELDS, where)
        # Documents numbered after the last one, in the order of the span.
        numbered = {**where, "base": _last_docid(conn) + 1 - where["first"]}
        conn.execute(_STAGED_DOCS, numbered)
        conn.execute(_STAGED_TEXT, numbered)
        return written

    def iter_records(self, prefix: str | None = None) -> Iterator[HandleRecord]:
        # A connection of its own: the cursor stays open while the caller consumes it.
        conn = self._connect()
        try:
            if prefix is None:
                cur = conn.execute("SELECT handle, values_wire FROM handles ORDER BY key")
            else:
                cur = conn.execute(
                    "SELECT handle, values_wire FROM handles WHERE key >= ? AND key < ?"
                    " ORDER BY key",
                    prefix_range(prefix),
                )
            for handle, blob in cur:
                yield decode_record(handle, blob)
        finally:
            conn.close()

    def close(self) -> None:
        self._writer.close()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()


def _reindex(
    conn: sqlite3.Connection,
    rows: Sequence[tuple[str, Sequence[HandleValue] | None]],
    existed: Collection[str] | None = None,
) -> None:
    """Replace the search index rows of records written (values) or deleted (None).
    ``existed``: the keys that had records before (None: any may have); only theirs
    have index rows to remove, which spares a bulk load of new records the lookups."""
    keys, fields, docs = reindexed(rows)
    _unindex(conn, [k for k in keys if existed is None or k in existed])
    conn.executemany("INSERT OR IGNORE INTO fields VALUES (?, ?, ?, ?)", fields)
    # Documents numbered here rather than looked up after insertion: a lookup per
    # document made the word index most of a bulk load's time.
    last = _last_docid(conn)
    conn.executemany(
        "INSERT INTO fields_docs VALUES (?, ?)", [(last + n, k) for n, (k, _) in enumerate(docs, 1)]
    )
    conn.executemany(
        "INSERT INTO fields_text (rowid, body) VALUES (?, ?)",
        [(last + n, body) for n, (_, body) in enumerate(docs, 1)],
    )


def _unindex(conn: sqlite3.Connection, keys: Sequence[str]) -> None:
    gone = [(k,) for k in keys]
    conn.executemany("DELETE FROM fields WHERE key = ?", gone)
    conn.executemany(
        "DELETE FROM fields_text WHERE rowid = (SELECT docid FROM fields_docs WHERE key = ?)",
        gone,
    )
    conn.executemany("DELETE FROM fields_docs WHERE key = ?", gone)


def _last_docid(conn: sqlite3.Connection) -> int:
    (last,) = conn.execute("SELECT coalesce(max(docid), 0) FROM fields_docs").fetchone()
    return int(last)


_INSERT_NEW = "INSERT INTO handles VALUES (?, ?, ?, ?) ON CONFLICT (key) DO NOTHING"
# put_staged's statements. The records of a span are those numbered [first, stop),
# less those in temp.staged_leave; "s" is always the staged record.
_STAGED_EXISTING = (
    "SELECT s.key, s.handle, s.wire, h.handle, h.values_wire FROM staged.records s"
    " JOIN handles h ON h.key = s.key WHERE s.n >= :first AND s.n < :stop"
)
_STAGED_COUNT = (
    "SELECT count(*) FROM staged.records s WHERE s.n >= :first AND s.n < :stop"
    " AND s.key NOT IN (SELECT key FROM temp.staged_leave)"
)
_STAGED_AUDIT = (
    "INSERT INTO audit (at, actor, origin, operation, key, handle, before, after)"
    " SELECT :at, :actor, :origin, :operation, s.key, coalesce(h.handle, s.handle),"
    " h.values_wire, s.wire FROM staged.records s LEFT JOIN handles h ON h.key = s.key"
    " WHERE s.n >= :first AND s.n < :stop AND s.key NOT IN (SELECT key FROM temp.staged_leave)"
)
_STAGED_RECORDS = (
    "INSERT OR REPLACE INTO handles SELECT s.key, s.handle, s.wire, :now"
    " FROM staged.records s WHERE s.n >= :first AND s.n < :stop"
    " AND s.key NOT IN (SELECT key FROM temp.staged_leave)"
)
_STAGED_FIELDS = (
    "INSERT OR IGNORE INTO fields SELECT s.key, f.name, f.text, f.number"
    " FROM staged.fields f JOIN staged.records s ON s.n = f.n"
    " WHERE f.n >= :first AND f.n < :stop AND s.key NOT IN (SELECT key FROM temp.staged_leave)"
)
_STAGED_DOCS = (
    "INSERT INTO fields_docs SELECT :base + s.n, s.key FROM staged.records s"
    " WHERE s.n >= :first AND s.n < :stop AND s.key NOT IN (SELECT key FROM temp.staged_leave)"
)
_STAGED_TEXT = (
    "INSERT INTO fields_text (rowid, body) SELECT :base + d.n, d.body"
    " FROM staged.docs d JOIN staged.records s ON s.n = d.n"
    " WHERE d.n >= :first AND d.n < :stop AND s.key NOT IN (SELECT key FROM temp.staged_leave)"
)


def copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of the whole database at ``source``, every table, at
    ``target``: SQLite's online backup in one step, one read snapshot while writers
    go on (WAL). Opened read-only and not as a node's: nothing is migrated."""
    if not source.is_file():
        raise StorageError(f"no database at {source}")
    try:
        reader = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open {source}: {exc}") from exc
    writer = sqlite3.connect(target)
    try:
        reader.backup(writer)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot copy {source} to {target}: {exc}") from exc
    finally:
        writer.close()
        reader.close()
