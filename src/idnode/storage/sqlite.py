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
    reported_params,
    reported_row,
    row_batches,
    select_audit_params,
    session_of_row,
    session_params,
    stats_params,
)
from idnode.storage.migrations import SEARCH_INDEX_VERSION, pending
from idnode.storage.search import SearchQuery, reindexed
from idnode.storage.staging import Staging

__all__ = ["SQLiteStorage"]

_BATCH = 5000
_ADD_STATS = ADD_STATS.format(p="?")
_SELECT_STATS = SELECT_STATS.format(p="?")
_PUT_REPORTED = PUT_REPORTED_STATS.format(p="?")
_SELECT_REPORTED = SELECT_REPORTED_STATS.format(p="?")
_INSERT_AUDIT = INSERT_AUDIT.format(p="?")
_SELECT_AUDIT = SELECT_AUDIT.format(p="?")
_SESSIONS = SessionSQL.using("?")
_MMAP_BYTES = 1 << 30
_WRITER_CACHE_KIB = 64 * 1024


class SQLiteStorage:
    """The embedded default backend. ``path`` is created with its schema if missing."""

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
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self._transaction() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
            )
            current = conn.execute(
                "SELECT coalesce(max(version), 0) FROM schema_migrations"
            ).fetchone()[0]
            for migration in pending(current, f"database {self.path}"):
                for statement in migration.sqlite:
                    conn.execute(statement)
                if migration.version == SEARCH_INDEX_VERSION:
                    self._index_everything(conn)
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                    (migration.version, migration.name, int(time.time())),
                )

    def _index_everything(self, conn: sqlite3.Connection) -> None:
        rows = conn.execute("SELECT key, handle, values_wire FROM handles ORDER BY key")
        while batch := rows.fetchmany(_BATCH):
            _reindex(conn, [(key, decode_record(h, w).values) for key, h, w in batch])

    def add_stats(self, rows: Sequence[StatsRow]) -> None:
        if not rows:
            return
        with self._transaction() as conn:
            conn.executemany(_ADD_STATS, [stats_params(r) for r in rows])

    def stats(self, prefix: str | None = None, since: int = 0) -> list[StatsRow]:
        key = None if prefix is None else handle_key(prefix)
        rows = self._reader.execute(_SELECT_STATS, (since, key, key)).fetchall()
        return [StatsRow(*row) for row in rows]

    def put_reported_stats(self, rows: Sequence[ReportedRow]) -> None:
        if not rows:
            return
        with self._transaction() as conn:
            conn.executemany(_PUT_REPORTED, [reported_params(r) for r in rows])

    def reported_stats(self, since: int = 0) -> list[ReportedRow]:
        return [reported_row(r) for r in self._reader.execute(_SELECT_REPORTED, (since,))]

    def put_session(self, session: StoredSession) -> None:
        with self._transaction() as conn:
            conn.execute(_SESSIONS.put, session_params(session))

    def get_session(self, session_id: str) -> StoredSession | None:
        return session_of_row(self._reader.execute(_SESSIONS.get, (session_id,)).fetchone())

    def advance_session(
        self, session_id: str, expected: tuple[int, int], new: tuple[int, int]
    ) -> bool:
        with self._transaction() as conn:
            params = advance_params(session_id, expected, new)
            return conn.execute(_SESSIONS.advance, params).rowcount == 1

    def delete_session(self, session_id: str) -> bool:
        with self._transaction() as conn:
            return conn.execute(_SESSIONS.delete, (session_id,)).rowcount > 0

    def purge_sessions(self, now: float) -> int:
        with self._transaction() as conn:
            return int(conn.execute(_SESSIONS.purge, (now,)).rowcount)

    def schema_version(self) -> int:
        row = self._reader.execute("SELECT max(version) FROM schema_migrations").fetchone()
        return int(row[0])

    def get(self, handle: str) -> HandleRecord | None:
        row = self._reader.execute(
            "SELECT handle, values_wire FROM handles WHERE key = ?", (handle_key(handle),)
        ).fetchone()
        return None if row is None else decode_record(row[0], row[1])

    def search(self, query: SearchQuery) -> list[str]:
        conn = self._reader
        return search.run(query, "sqlite", lambda sql, params: conn.execute(sql, params).fetchall())

    def get_many(self, handles: Sequence[str]) -> dict[str, HandleRecord]:
        keys = list(dict.fromkeys(handle_key(h) for h in handles))
        rows = self._rows(self._reader, keys)
        return {key: decode_record(handle, wire) for key, (handle, wire) in rows.items()}

    def create(self, record: HandleRecord) -> None:
        key = handle_key(record.handle)
        with self._transaction() as conn:
            try:
                conn.execute(
                    "INSERT INTO handles VALUES (?, ?, ?, ?)",
                    (key, record.handle, encode_values(record), int(time.time())),
                )
            except sqlite3.IntegrityError as exc:
                raise HandleAlreadyExists(f"handle {record.handle} already exists") from exc
            _reindex(conn, [(key, record.values)])

    def put(self, record: HandleRecord) -> None:
        key = handle_key(record.handle)
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO handles VALUES (?, ?, ?, ?)",
                (key, record.handle, encode_values(record), int(time.time())),
            )
            _reindex(conn, [(key, record.values)])

    def delete(self, handle: str) -> bool:
        key = handle_key(handle)
        with self._transaction() as conn:
            cur = conn.execute("DELETE FROM handles WHERE key = ?", (key,))
            _reindex(conn, [(key, None)])
            return cur.rowcount > 0

    def update(
        self, handle: str, change: RecordChange, audit: AuditContext | None = None
    ) -> HandleRecord | None:
        key = handle_key(handle)
        # BEGIN IMMEDIATE holds the database's write lock from the read on, across
        # processes too, so no other writer can slip in between read and write.
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT handle, values_wire FROM handles WHERE key = ?", (key,)
            ).fetchone()
            new = change(None if row is None else decode_record(row[0], row[1]))
            after = None
            if new is None:
                conn.execute("DELETE FROM handles WHERE key = ?", (key,))
            else:
                check_same_key(key, new)
                after = encode_values(new)
                conn.execute(
                    "INSERT OR REPLACE INTO handles VALUES (?, ?, ?, ?)",
                    (key, new.handle, after, int(time.time())),
                )
            _reindex(conn, [(key, None if new is None else new.values)])
            if audit is not None:
                conn.execute(_INSERT_AUDIT, audit_params(audit, key, handle, row, new, after))
            return new

    def audit_log(self, query: AuditQuery = ALL_WRITES) -> list[AuditEntry]:
        params = select_audit_params(query)
        return [audit_entry(row) for row in self._reader.execute(_SELECT_AUDIT, params)]

    def list_handles(self, prefix: str, offset: int = 0, limit: int | None = None) -> list[str]:
        rows = self._reader.execute(
            "SELECT handle FROM handles WHERE key >= ? AND key < ? ORDER BY key LIMIT ? OFFSET ?",
            (*prefix_range(prefix), -1 if limit is None else limit, offset),
        ).fetchall()
        return [r[0] for r in rows]

    def put_many(
        self,
        records: Iterable[HandleRecord],
        *,
        replace: bool,
        audit: AuditContext | None = None,
    ) -> tuple[int, int]:
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        sql = f"{verb} INTO handles VALUES (?, ?, ?, ?)"
        written = offered = 0
        for batch in row_batches(records, _BATCH):
            offered += len(batch)
            with self._transaction() as conn:
                before = self._rows(conn, [row[0] for row in batch])
                fresh = batch if replace else first_new(batch, before)
                if audit is not None:
                    conn.executemany(_INSERT_AUDIT, bulk_audit_rows(audit, fresh, before))
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

    def count(self, prefix: str | None = None) -> int:
        if prefix is None:
            row = self._reader.execute("SELECT count(*) FROM handles").fetchone()
        else:
            row = self._reader.execute(
                "SELECT count(*) FROM handles WHERE key >= ? AND key < ?", prefix_range(prefix)
            ).fetchone()
        return int(row[0])

    def home_prefix(self, prefix: str) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO prefixes VALUES (?, ?)", (handle_key(prefix), prefix)
            )

    def unhome_prefix(self, prefix: str) -> bool:
        with self._transaction() as conn:
            cur = conn.execute("DELETE FROM prefixes WHERE key = ?", (handle_key(prefix),))
            return cur.rowcount > 0

    def homed_prefixes(self) -> list[str]:
        rows = self._reader.execute("SELECT prefix FROM prefixes ORDER BY key").fetchall()
        return [r[0] for r in rows]

    def is_homed(self, prefix: str) -> bool:
        row = self._reader.execute(
            "SELECT 1 FROM prefixes WHERE key = ?", (handle_key(prefix),)
        ).fetchone()
        return row is not None

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
