"""The service on an event loop: what may wait runs elsewhere, so the loop never does.

Every service operation is synchronous and may wait: on the database (a write waits
for the lock and for the disk; on PostgreSQL every read is a round trip), or on
other servers (a recursive resolution, an identity held elsewhere). A server's event
loop answers UDP, TCP and HTTP at once, so it calls them through :class:`OffLoop`
(as datasette's ``execute_fn`` and ``execute_write_fn`` do):

- :meth:`OffLoop.read` runs an operation on a pool of reader threads;
- :meth:`OffLoop.write` runs it on the writer: one thread per process where the
  backend writes through one connection (SQLite, whose writes are serialised by its
  lock anyway), so that a write waiting for the lock holds no reader back; a pool
  where the backend takes concurrent writers (PostgreSQL);
- :meth:`OffLoop.resolve` answers a resolution inline when it is local and the
  storage reads from this machine (SQLite: memory-mapped pages, a few microseconds;
  a thread hop would cost more than the read); on PostgreSQL it reads the record with
  :meth:`Storage.get_async <idnode.storage.base.Storage.get_async>` (the cache, else
  psycopg's asynchronous connection: the loop waits on the socket, not in a thread)
  when that is all it needs, on a reader otherwise; and through the resolver's
  asyncio driver when the handle is held elsewhere.

A thread hop is not free: handing a call to a thread and getting its result back cost
about 200 µs on the machine of docs/performance.md (two thread wake-ups), so the reads
a server makes on every request are not made that way.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from idnode.domain import HandleRecord
from idnode.service import ANONYMOUS, Caller, NodeService

__all__ = ["READER_THREADS", "OffLoop"]

_P = ParamSpec("_P")
_T = TypeVar("_T")

#: Reader threads per process: enough to keep PostgreSQL round trips overlapping and
#: a few slow reads (a search, an export) from holding up the rest.
READER_THREADS = 8


class OffLoop:
    def __init__(self, service: NodeService, *, readers: int = READER_THREADS) -> None:
        self.service = service
        self._storage = storage = service.core.storage
        #: Whether a local read may run on the loop itself (see the module docstring).
        self.inline_reads = not storage.reads_over_network
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="idnode-read")
        self._writers = (
            ThreadPoolExecutor(1, thread_name_prefix="idnode-write")
            if storage.single_writer
            else self._readers
        )
        #: Calls handed to the threads and not returned yet, running or queued (both
        #: counted on the loop's thread: plain integers suffice).
        self.reads_in_progress = 0
        self.writes_in_progress = 0

    async def read(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """``fn(*args, **kwargs)`` on a reader thread."""
        loop = asyncio.get_running_loop()
        self.reads_in_progress += 1
        try:
            return await loop.run_in_executor(self._readers, functools.partial(fn, *args, **kwargs))
        finally:
            self.reads_in_progress -= 1

    async def write(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """``fn(*args, **kwargs)`` on the writer."""
        loop = asyncio.get_running_loop()
        self.writes_in_progress += 1
        try:
            return await loop.run_in_executor(self._writers, functools.partial(fn, *args, **kwargs))
        finally:
            self.writes_in_progress -= 1

    def resolves_at_once(self, handle: str, *, public_only: bool = True) -> bool:
        """Whether :meth:`resolve` of ``handle`` would answer without waiting: the
        storage reads locally, or the record is in the cache (and, public values
        asked for, it is all the resolution reads)."""
        if self.inline_reads:
            return True
        reads = self.service.reads
        return public_only and reads.held_here(handle) and self._storage.reads_at_once(handle)

    async def resolve(
        self,
        handle: str,
        *,
        indexes: Sequence[int] = (),
        types: Sequence[str] = (),
        caller: Caller = ANONYMOUS,
        public_only: bool = True,
        recursive: bool = False,
    ) -> HandleRecord:
        """:meth:`Reads.resolve <idnode.service.reads.Reads.resolve>`, waiting only
        where it must (see the module docstring)."""
        reads = self.service.reads
        if reads.upstream_resolves(handle, recursive=recursive):
            return await reads.resolve_upstream_async(handle, indexes, types)
        if self.resolves_at_once(handle, public_only=public_only):
            return reads.resolve(
                handle, indexes=indexes, types=types, caller=caller, public_only=public_only
            )
        if public_only and reads.held_here(handle):
            # The common case: the record's public values (whoever asks); once it is
            # read, nothing else is. One not found (a referral to look for) goes the
            # long way.
            record = await self._storage.get_async(handle)
            if record is not None:
                return reads.resolve_read(record, indexes=indexes, types=types)
        return await self.read(
            reads.resolve,
            handle,
            indexes=indexes,
            types=types,
            caller=caller,
            public_only=public_only,
            recursive=recursive,
        )

    async def aclose(self) -> None:
        """Let running operations finish, start no new ones, and release what the
        storage opened on this event loop."""
        await asyncio.to_thread(self._writers.shutdown, wait=True)
        await asyncio.to_thread(self._readers.shutdown, wait=True)
        await self._storage.aclose()
