"""Keys asked for in one turn of the event loop are fetched with one query."""

from __future__ import annotations

import asyncio

from idnode.errors import StorageError
from idnode.storage.batch import KeyBatcher

ROWS = {f"K{n}": f"row {n}" for n in range(10)}


class Fetcher:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail

    async def __call__(self, keys: list[str]) -> dict[str, str]:
        self.calls.append(keys)
        await asyncio.sleep(0)  # a round trip: the loop goes on meanwhile
        if self.fail:
            raise StorageError("the database went away")
        return {k: ROWS[k] for k in keys if k in ROWS}


def test_keys_asked_together_are_fetched_together() -> None:
    fetch = Fetcher()

    async def ask() -> list[str | None]:
        batcher = KeyBatcher(fetch)
        return await asyncio.gather(*(batcher.get(k) for k in ["K1", "K2", "NONE", "K1"]))

    assert asyncio.run(ask()) == ["row 1", "row 2", None, "row 1"]
    assert fetch.calls == [["K1", "K2", "NONE"]]  # one query, each key once


def test_a_key_asked_alone_is_not_kept_waiting_and_batches_follow_each_other() -> None:
    fetch = Fetcher()

    async def ask() -> tuple[str | None, str | None]:
        batcher = KeyBatcher(fetch)
        first = await batcher.get("K3")
        return first, await batcher.get("K4")

    assert asyncio.run(ask()) == ("row 3", "row 4")
    assert fetch.calls == [["K3"], ["K4"]]


def test_a_full_batch_goes_at_once() -> None:
    fetch = Fetcher()

    async def ask() -> list[str | None]:
        batcher = KeyBatcher(fetch, max_batch=4)
        return await asyncio.gather(*(batcher.get(f"K{n}") for n in range(10)))

    assert asyncio.run(ask()) == [f"row {n}" for n in range(10)]
    assert [len(keys) for keys in fetch.calls] == [4, 4, 2]


def test_a_failed_query_fails_every_asker() -> None:
    fetch = Fetcher(fail=True)

    async def ask() -> list[str | BaseException | None]:
        batcher = KeyBatcher(fetch)
        asked = [batcher.get("K1"), batcher.get("K2")]
        return list(await asyncio.gather(*asked, return_exceptions=True))

    answers = asyncio.run(ask())
    assert [type(a) for a in answers] == [StorageError, StorageError]
    assert fetch.calls == [["K1", "K2"]]
