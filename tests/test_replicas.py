"""Reads from a real streaming replica, and read-your-change routing after notifications."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from idnode.domain import HandleRecord
from idnode.errors import ConfigError
from idnode.handle.values import HandleValue
from idnode.storage import open_storage
from idnode.storage.cache import CachingStorage
from tests import pgcluster
from tests.conftest import require_service


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[str, str, str]]:
    reason = pgcluster.missing_reason()
    if reason is not None:
        require_service("PostgreSQL server tools", reason)
    # Not under pytest's temporary directory: that one is private to our user, and the
    # servers run as the postgres user.
    workdir = Path(tempfile.mkdtemp(prefix="idnode-pgcluster-"))
    try:
        with pgcluster.primary_with_standby(workdir) as urls:
            yield urls
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def rec(handle: str, data: bytes) -> HandleRecord:
    return HandleRecord(handle, (HandleValue(1, "URL", data),))


def _replay(standby: str, run: bool) -> None:
    with psycopg.connect(standby, autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_resume()" if run else "SELECT pg_wal_replay_pause()")


def _wait_for(predicate: object, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return True
        except psycopg.errors.UndefinedTable:
            pass  # the replica has not replayed the schema yet
        time.sleep(0.05)
    return False


def test_reads_go_to_the_replica(cluster: tuple[str, str, str]) -> None:
    primary, standby, admin = cluster
    store = open_storage(primary, replicas=[standby])
    try:
        store.put(rec("88.100.1/R1", b"v1"))
        assert _wait_for(lambda: store.get("88.100.1/R1") is not None)  # replayed
        _replay(admin, run=False)
        store.put(rec("88.100.1/R1", b"v2"))
        # The primary has v2; the paused replica, which serves the reads, still has v1.
        assert store.get("88.100.1/R1") == rec("88.100.1/R1", b"v1")
        _replay(admin, run=True)
        assert _wait_for(lambda: store.get("88.100.1/R1") == rec("88.100.1/R1", b"v2"))
    finally:
        _replay(admin, run=True)
        store.close()


def test_a_change_heard_is_read_from_the_primary_until_replicas_catch_up(
    cluster: tuple[str, str, str],
) -> None:
    from idnode.storage.postgres import PostgresStorage

    primary, standby, admin = cluster
    backend = PostgresStorage(primary, replicas=[standby], replica_lag=30.0)
    cache = CachingStorage(backend, max_entries=100)
    backend.listen(cache)
    writer = open_storage(primary)
    try:
        writer.put(rec("88.100.1/R2", b"v1"))
        assert _wait_for(lambda: cache.get("88.100.1/R2") == rec("88.100.1/R2", b"v1"))
        _replay(admin, run=False)
        writer.put(rec("88.100.1/R2", b"v2"))  # elsewhere; the replica will not see it
        assert _wait_for(lambda: cache.get("88.100.1/R2") == rec("88.100.1/R2", b"v2"))
        # ... and the value now cached is the new one, not the replica's old one.
        assert cache.get("88.100.1/R2") == rec("88.100.1/R2", b"v2")
    finally:
        _replay(admin, run=True)
        writer.close()
        cache.close()


def test_replicas_need_postgresql(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="read replicas need a PostgreSQL"):
        open_storage(f"sqlite:///{tmp_path / 'x.db'}", replicas=["postgresql://x"])
