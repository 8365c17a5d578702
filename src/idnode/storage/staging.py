"""A bulk load's waiting room: records checked and set aside, then written span by span.

Bulk registration checks a whole file before it writes any of it. The checked records
wait here, in a scratch SQLite file of their own, numbered in the order they were
checked and, for a backend that asks for it, with their search-index rows already
worked out. The backend then writes one span of numbers per transaction: SQLite by
``INSERT ... SELECT`` from this file attached, so no record passes through Python a
second time; other backends read the records back.

With ``parallel``, a second process does the staging (taking each record apart for the
index, inserting) while the caller goes on reading and checking the file: on two cores
the checking pass then costs about what reading and checking alone cost.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import idnode
from idnode.domain import HandleRecord
from idnode.errors import StorageError
from idnode.handle.encoded import EncodedValues
from idnode.names import handle_key
from idnode.scratch import ScratchDirectory
from idnode.storage.search import indexed

__all__ = ["Staging"]

_SCHEMA = (
    # key UNIQUE: a handle staged twice would be written twice over, its first index
    # rows left behind; a load must name each handle once.
    """CREATE TABLE records (
        n      INTEGER PRIMARY KEY,
        key    TEXT NOT NULL UNIQUE,
        handle TEXT NOT NULL,
        wire   BLOB NOT NULL
    )""",
    """CREATE TABLE fields (
        n      INTEGER NOT NULL,
        name   TEXT NOT NULL,
        text   TEXT NOT NULL,
        number REAL,
        PRIMARY KEY (n, name, text)
    ) WITHOUT ROWID""",
    "CREATE TABLE docs (n INTEGER PRIMARY KEY, body TEXT NOT NULL)",
)
_CACHE_KIB = 64 * 1024
_BATCH_HEAD = struct.Struct(">QI")  # number of the first record, how many
_LENGTHS = struct.Struct(">II")  # of a record's handle and values, in bytes
_FRAME = struct.Struct(">I")  # length of a batch sent to the staging process


class Staging:
    """Records numbered from 1 in the order added, in a scratch file deleted on close.

    ``index``: also keep each record's search-index rows (field rows and document), for
    a backend that copies them into its own index. ``directory``: where the scratch file
    goes (default: the system's temporary directory); it takes about as much room as
    the records will in the database. A staging killed with its process is removed by
    the next one made (:mod:`idnode.scratch`).
    """

    def __init__(
        self, *, index: bool, parallel: bool = False, directory: str | Path | None = None
    ) -> None:
        self.index = index
        # Removed on close; if this process is killed, by the next staging instead.
        self._dir = ScratchDirectory("idnode-staging-", directory)
        self.path = self._dir.path / "staged.db"
        self._next = 1
        self._finished = False
        self._child: subprocess.Popen[bytes] | None = None
        self._writer: _Writer | None = None
        try:
            if parallel:
                self._child = _start_child(self.path, index)
            else:
                self._writer = _Writer(self.path, index)
        except BaseException:
            self.close()
            raise

    def add(self, records: Sequence[HandleRecord]) -> range:
        """Stage ``records`` (each handle once per load); returns their numbers."""
        if self._finished:
            raise StorageError("records added to a staging area already finished")
        span = range(self._next, self._next + len(records))
        self._next = span.stop
        if self._child is not None:
            assert self._child.stdin is not None
            message = _pack(span.start, records)
            try:
                self._child.stdin.write(_FRAME.pack(len(message)) + message)
            except OSError:
                self._fail()
        else:
            assert self._writer is not None
            self._writer.add(span.start, [(r.handle, EncodedValues.of(r.values)) for r in records])
        return span

    def finish(self) -> None:
        """Wait until every record added can be read (from this file, by anyone)."""
        if self._finished:
            return
        self._finished = True
        if self._child is not None:
            assert self._child.stdin is not None
            try:
                self._child.stdin.close()
            except OSError:
                self._fail()
            if self._child.wait() != 0:
                self._fail()
        else:
            assert self._writer is not None
            self._writer.finish()

    def records(self, span: range) -> list[HandleRecord]:
        """The records numbered ``span``, as staged (for backends that read them back)."""
        self.finish()
        with contextlib.closing(_connect(self.path)) as conn:
            rows = conn.execute(
                "SELECT handle, wire FROM records WHERE n >= ? AND n < ? ORDER BY n",
                (span.start, span.stop),
            ).fetchall()
        return [HandleRecord(handle, EncodedValues(wire)) for handle, wire in rows]

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._child is not None:
            if self._child.poll() is None:
                self._child.kill()
            self._child.wait()
            for stream in (self._child.stdin, self._child.stderr):
                if stream is not None:
                    stream.close()
        self._dir.cleanup()

    def __enter__(self) -> Staging:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _fail(self) -> None:
        """The staging process has stopped: say why, as far as it told."""
        assert self._child is not None
        assert self._child.stderr is not None
        code = self._child.wait()
        told = self._child.stderr.read().decode(errors="replace").strip()
        raise StorageError(
            f"staging records failed: {told or 'the staging process ended'} (exit code {code})"
        )


def _start_child(path: Path, index: bool) -> subprocess.Popen[bytes]:
    """This module run as a program (not multiprocessing, whose children import the
    caller's main module again: a script without a main guard would start over)."""
    env = dict(os.environ)
    source = str(Path(idnode.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source, env.get("PYTHONPATH")) if p)
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", __name__, str(path), "index" if index else "records"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    # Scratch data: nothing to recover after a crash, which restarts the load anyway.
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute(f"PRAGMA cache_size={-_CACHE_KIB}")
    return conn


class _Writer:
    """Inserts staged records, in one transaction committed by :meth:`finish`."""

    def __init__(self, path: Path, index: bool) -> None:
        self._conn = _connect(path)
        self._index = index
        for statement in _SCHEMA:
            self._conn.execute(statement)
        self._conn.execute("BEGIN")

    def add(self, first: int, records: Sequence[tuple[str, EncodedValues]]) -> None:
        rows = []
        fields = []
        docs = []
        for n, (handle, values) in enumerate(records, first):
            rows.append((n, handle_key(handle), handle, values.wire))
            if self._index:
                found, doc = indexed(values)
                fields += [(n, *row) for row in found]
                docs.append((n, doc))
        try:
            self._conn.executemany("INSERT INTO records VALUES (?, ?, ?, ?)", rows)
        except sqlite3.IntegrityError:
            raise StorageError("a handle is given twice in one bulk load") from None
        self._conn.executemany("INSERT OR IGNORE INTO fields VALUES (?, ?, ?, ?)", fields)
        self._conn.executemany("INSERT INTO docs VALUES (?, ?)", docs)

    def finish(self) -> None:
        self._conn.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()


def _pack(first: int, records: Sequence[HandleRecord]) -> bytes:
    parts = [_BATCH_HEAD.pack(first, len(records))]
    for record in records:
        handle = record.handle.encode("utf-8")
        wire = EncodedValues.of(record.values).wire
        parts += (_LENGTHS.pack(len(handle), len(wire)), handle, wire)
    return b"".join(parts)


def _unpack(message: bytes) -> tuple[int, list[tuple[str, EncodedValues]]]:
    first, count = _BATCH_HEAD.unpack_from(message)
    pos = _BATCH_HEAD.size
    records = []
    for _ in range(count):
        handle_size, wire_size = _LENGTHS.unpack_from(message, pos)
        pos += _LENGTHS.size
        handle = message[pos : pos + handle_size].decode("utf-8")
        pos += handle_size
        records.append((handle, EncodedValues(message[pos : pos + wire_size])))
        pos += wire_size
    return first, records


def _read_frame(stream: BinaryIO) -> bytes | None:
    """The next batch, None at the end of the input."""
    head = stream.read(_FRAME.size)
    if not head:
        return None
    (size,) = _FRAME.unpack(head)
    message = stream.read(size)
    if len(message) != size:
        raise StorageError("the staging input ends inside a batch")
    return message


def main(argv: Sequence[str]) -> int:
    """The staging process: length-framed batches on standard input until its end;
    exit code 0 once every record is committed, else 1 with the reason on stderr."""
    path, what = argv
    try:
        writer = _Writer(Path(path), what == "index")
        while (message := _read_frame(sys.stdin.buffer)) is not None:
            writer.add(*_unpack(message))
        writer.finish()
        writer.close()
    except Exception as exc:  # told to the parent, which raises it
        sys.stderr.write(getattr(exc, "message", None) or repr(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
