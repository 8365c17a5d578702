"""Reads asked for during one turn of an event loop, made as one query.

Under load a PostgreSQL node's resolutions miss its cache many at a time, each one a
round trip and a statement of its own. A :class:`KeyBatcher` collects the keys asked
for until the loop has handled everything ready, then fetches them with one query;
each asker gets its own row. Nobody waits for a batch to fill: a key asked for alone
is fetched at the next turn of the loop, as it would have been.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["KeyBatcher"]

_T = TypeVar("_T")


class KeyBatcher(Generic[_T]):
    """``fetch(keys)`` returns the rows of those keys that exist, by key; at most
    ``max_batch`` keys go into one query."""

    def __init__(
        self, fetch: Callable[[list[str]], Awaitable[dict[str, _T]]], max_batch: int = 256
    ) -> None:
        self._fetch = fetch
        self._max = max_batch
        self._waiting: dict[str, list[asyncio.Future[_T | None]]] = {}
        self._flush_due = False
        self._running: set[asyncio.Task[None]] = set()

    async def get(self, key: str) -> _T | None:
        """The row of ``key``, None if there is none."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[_T | None] = loop.create_future()
        self._waiting.setdefault(key, []).append(answer)
        if len(self._waiting) >= self._max:
            self._flush()
        elif not self._flush_due:
            self._flush_due = True
            loop.call_soon(self._flush)
        return await answer

    def _flush(self) -> None:
        self._flush_due = False
        if not self._waiting:
            return
        waiting, self._waiting = self._waiting, {}
        task = asyncio.ensure_future(self._answer(waiting))
        self._running.add(task)  # kept, so that it is not collected while it runs
        task.add_done_callback(self._running.discard)

    async def _answer(self, waiting: dict[str, list[asyncio.Future[_T | None]]]) -> None:
        try:
            rows = await self._fetch(list(waiting))
        except Exception as exc:
            for answers in waiting.values():
                for answer in answers:
                    if not answer.done():
                        answer.set_exception(exc)
            return
        except BaseException:  # cancelled (the server stops): so are its askers
            for answers in waiting.values():
                for answer in answers:
                    answer.cancel()
            raise
        for key, answers in waiting.items():
            row = rows.get(key)
            for answer in answers:
                if not answer.done():  # an asker may have given up (cancelled)
                    answer.set_result(row)
