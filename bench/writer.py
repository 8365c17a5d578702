"""A writer beside the resolution benchmark (``bench/resolve.py --writes RATE``):
another process, with its own connection to the node's database, changing the URL of
a random identifier RATE times a second, as an enterprise's systems would while the
node answers. Every write goes to disk before the next (the node's own settings), so
a kept answer outdated by it must not be sent again: the load generators count any
answer that is not SUCCESS, and tests/test_answer_cache.py checks the bytes."""

from __future__ import annotations

import dataclasses
import multiprocessing
import random
import time
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path

from bench.dataset import handle_for
from idnode.config import load_config
from idnode.domain import HandleRecord
from idnode.node import open_node

__all__ = ["Writer"]


def _write(data_dir: str, count: int, rate: float, stop: Event, done: Synchronized[int]) -> None:
    node = open_node(load_config(Path(data_dir)))
    rng = random.Random(7)
    began = time.monotonic()
    try:
        while not stop.is_set():
            due = began + done.value / rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(min(wait, 0.05))
                continue
            handle = handle_for(rng.randrange(count))
            record = node.storage.get(handle)
            if record is None:
                continue
            url = f"https://pumps.example.com/id/{handle}?v={done.value}".encode()
            values = tuple(
                dataclasses.replace(v, data=url) if v.index == 1 else v for v in record.values
            )
            node.service.prefixes.put_record(HandleRecord(record.handle, values))
            with done.get_lock():
                done.value += 1
    finally:
        node.close()


class Writer:
    """The writer process, from :meth:`start` to :meth:`stop`; :attr:`rate` is
    what it achieved."""

    def __init__(self, data_dir: Path, count: int, rate: float) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._done: Synchronized[int] = context.Value("q", 0)
        self._process = context.Process(
            target=_write, args=(str(data_dir), count, rate, self._stop, self._done)
        )
        self._began = 0.0
        self.rate = 0.0

    def start(self) -> None:
        self._began = time.monotonic()
        self._process.start()

    def stop(self) -> None:
        self._stop.set()
        self._process.join(30)
        elapsed = time.monotonic() - self._began
        self.rate = self._done.value / elapsed if elapsed > 0 else 0.0
