"""The per-process record cache and its invalidation through PostgreSQL notifications."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from idnode.domain import HandleRecord
from idnode.handle.values import HandleValue
from idnode.storage import SQLiteStorage, Storage
from idnode.storage.cache import FLUSH_ALL, CachingStorage
from tests.clock import Clock


def rec(handle: str, data: bytes) -> HandleRecord:
    return HandleRecord(handle, (HandleValue(1, "URL", data),))


@pytest.fixture
def inner(tmp_path: Path) -> Iterator[SQLiteStorage]:
    store = SQLiteStorage(tmp_path / "c.db")
    yield store
    store.close()


def cache_over(inner: Storage, clock: Clock | None = None, **kw: float) -> CachingStorage:
    cache = CachingStorage(
        inner,
        max_entries=int(kw.get("max_entries", 100)),
        max_age=kw.get("max_age", 60.0),
        clock=clock or Clock(),
    )
    cache.set_listening(True)
    return cache


def test_repeat_reads_are_served_from_memory(inner: SQLiteStorage) -> None:
    inner.put(rec("1/A", b"v1"))
    cache = cache_over(inner)
    assert cache.get("1/a") == rec("1/A", b"v1")
    inner.put(rec("1/A", b"v2"))  # behind the cache's back, no notification
    assert cache.get("1/A") == rec("1/A", b"v1")
    assert (cache.hits, cache.misses) == (1, 1)
    cache.invalidate("1/A")
    assert cache.get("1/A") == rec("1/A", b"v2")


def test_reads_on_an_event_loop_share_the_cache(inner: SQLiteStorage) -> None:
    inner.put(rec("1/A", b"v1"))
    cache = cache_over(inner)
    assert asyncio.run(cache.get_async("1/a")) == rec("1/A", b"v1")  # a miss, kept
    inner.put(rec("1/A", b"v2"))  # behind the cache's back
    assert cache.get("1/A") == rec("1/A", b"v1")  # the async read filled the cache
    assert asyncio.run(cache.get_async("1/A")) == rec("1/A", b"v1")
    assert (cache.hits, cache.misses) == (2, 1)
    cache.invalidate("1/A")
    assert asyncio.run(cache.get_async("1/A")) == rec("1/A", b"v2")


def test_not_found_is_cached_too(inner: SQLiteStorage) -> None:
    cache = cache_over(inner)
    assert cache.get("1/NONE") is None
    inner.put(rec("1/NONE", b"now"))
    assert cache.get("1/NONE") is None
    cache.invalidate(FLUSH_ALL)
    assert cache.get("1/NONE") == rec("1/NONE", b"now")


def test_writes_through_the_cache_evict_at_once(inner: SQLiteStorage) -> None:
    cache = cache_over(inner)
    cache.put(rec("1/A", b"v1"))
    assert cache.get("1/A") == rec("1/A", b"v1")
    cache.put(rec("1/A", b"v2"))
    assert cache.get("1/A") == rec("1/A", b"v2")
    cache.update("1/A", lambda record: None)
    assert cache.get("1/A") is None


def test_size_is_bounded_least_recently_used_first(inner: SQLiteStorage) -> None:
    cache = cache_over(inner, max_entries=3)
    for n in range(5):
        cache.get(f"1/{n}")
    assert len(cache) == 3
    cache.get("1/2")  # still cached: a hit
    assert cache.hits == 1


def test_entries_expire(inner: SQLiteStorage) -> None:
    clock = Clock()
    inner.put(rec("1/A", b"v1"))
    cache = cache_over(inner, clock, max_age=10.0)
    cache.get("1/A")
    inner.put(rec("1/A", b"v2"))
    clock.now = 11.0
    assert cache.get("1/A") == rec("1/A", b"v2")


def test_nothing_is_cached_while_not_listening(inner: SQLiteStorage) -> None:
    cache = cache_over(inner)
    cache.set_listening(False)
    cache.get("1/A")
    assert len(cache) == 0


def test_a_read_overtaken_by_an_invalidation_is_not_cached(inner: SQLiteStorage) -> None:
    inner.put(rec("1/A", b"old"))

    class RacingBackend:
        """Its first read returns the old value while a write elsewhere is announced."""

        raced = False

        def get(self, handle: str) -> HandleRecord | None:
            record = inner.get(handle)
            if not self.raced:
                self.raced = True
                inner.put(rec("1/A", b"new"))
                cache.invalidate("1/A")
            return record

    cache = cache_over(cast(Storage, RacingBackend()))
    assert cache.get("1/A") == rec("1/A", b"old")  # that read was already under way
    assert len(cache) == 0  # ... but it is not kept
    assert cache.get("1/A") == rec("1/A", b"new")
    assert len(cache) == 1


def _wait_for(predicate: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_a_write_in_another_process_evicts_through_postgres(postgres_url: str) -> None:
    from idnode.storage.postgres import PostgresStorage

    backend = PostgresStorage(postgres_url)
    cache = CachingStorage(backend, max_entries=100)
    backend.listen(cache)
    try:
        cache.put(rec("88.100.1/A", b"v1"))
        assert _wait_for(lambda: cache.get("88.100.1/A") is not None and len(cache) == 1)
        hits = cache.hits
        assert cache.reads_at_once("88.100.1/A")  # a server may answer it on its loop
        assert cache.get("88.100.1/A") == rec("88.100.1/A", b"v1")
        assert cache.hits == hits + 1  # served from memory
        assert not cache.reads_at_once("88.100.1/OTHER")  # that one is a round trip

        writer = (
            "import sys\n"
            "from idnode.storage import open_storage\n"
            "from idnode.domain import HandleRecord\n"
            "from idnode.handle.values import HandleValue\n"
            "s = open_storage(sys.argv[1])\n"
            "s.put(HandleRecord('88.100.1/A', (HandleValue(1, 'URL', b'v2'),)))\n"
            "s.close()\n"
        )
        subprocess.run([sys.executable, "-c", writer, postgres_url], check=True, timeout=60)
        assert _wait_for(lambda: cache.get("88.100.1/A") == rec("88.100.1/A", b"v2"))
    finally:
        cache.close()
