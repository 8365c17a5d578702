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


def test_a_bulk_load_keeps_a_record_created_while_it_decides(postgres_url: str) -> None:
    """PostgreSQL's put_staged reads, chooses and writes in one transaction: a handle
    another writer creates after the load read (issue 20) is kept, not overwritten,
    and not counted or indexed as the load's."""
    from idnode.domain import SearchQuery
    from idnode.storage.postgres import PostgresStorage

    loader, other = PostgresStorage(postgres_url), PostgresStorage(postgres_url)
    try:
        loader.put(HandleRecord("88.1/OLD", (HandleValue(1, "URL", b"stored"),)))

        def choose(existing: dict[str, tuple[HandleRecord, HandleRecord]]) -> list[str]:
            # Another writer, between this load's read and its write.
            other.put(HandleRecord("88.1/RACE", (HandleValue(1, "URL", b"theirs"),)))
            return []

        with loader.staging() as staging:
            span = staging.add(
                [
                    HandleRecord("88.1/OLD", (HandleValue(1, "URL", b"loaded"),)),
                    HandleRecord("88.1/RACE", (HandleValue(1, "URL", b"loaded"),)),
                    HandleRecord("88.1/NEW", (HandleValue(1, "URL", b"loaded"),)),
                ]
            )
            assert loader.put_staged(staging, span, choose) == 2
        race = loader.get("88.1/RACE")
        assert race is not None
        assert race.values[0].data == b"theirs"
        assert loader.search(SearchQuery(text="loaded")) == ["88.1/NEW", "88.1/OLD"]
        assert loader.search(SearchQuery(text="theirs")) == ["88.1/RACE"]
    finally:
        loader.close()
        other.close()
