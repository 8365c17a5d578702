"""Several processes updating the same handle at once: no update may be lost."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from idnode.domain import HandleRecord
from idnode.handle.values import HandleValue
from idnode.storage import open_storage

WORKERS = 4
UPDATES = 25
HANDLE = "88.100.1/SHARED"


def _add_values(url: str, worker: int) -> None:
    storage = open_storage(url)
    try:
        for n in range(UPDATES):
            index = 1 + worker * UPDATES + n

            def add(record: HandleRecord | None, index: int = index) -> HandleRecord:
                values = tuple(record.values) if record else ()
                return HandleRecord(HANDLE, (*values, HandleValue(index, "N", b"%d" % index)))

            storage.update(HANDLE, add)
    finally:
        storage.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    pg: str = request.getfixturevalue("postgres_url")
    return pg


def test_concurrent_updates_from_processes_lose_nothing(url: str) -> None:
    open_storage(url).close()  # create the schema before the race starts
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_add_values, args=(url, w)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    storage = open_storage(url)
    record = storage.get(HANDLE)
    storage.close()
    assert record is not None
    assert sorted(v.index for v in record.values) == list(range(1, WORKERS * UPDATES + 1))


def test_concurrent_creates_exactly_one_wins(url: str) -> None:
    storage = open_storage(url)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(WORKERS) as pool:
        outcomes = pool.starmap(_create, [(url, w) for w in range(WORKERS * 2)])
    assert outcomes.count("created") == 1
    assert outcomes.count("exists") == WORKERS * 2 - 1
    assert storage.get("88.100.1/ONCE") is not None
    storage.close()


def _create(url: str, worker: int) -> str:
    from idnode.errors import HandleAlreadyExists

    storage = open_storage(url)

    def create(current: HandleRecord | None) -> HandleRecord:
        if current is not None:
            raise HandleAlreadyExists("88.100.1/ONCE exists")
        return HandleRecord("88.100.1/ONCE", (HandleValue(1, "W", b"%d" % worker),))

    try:
        storage.update("88.100.1/ONCE", create)
    except HandleAlreadyExists:
        return "exists"
    finally:
        storage.close()
    return "created"
