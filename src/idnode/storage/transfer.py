"""Copying a node's data between storage backends, verified by counts and checksums.

The checksum covers every record in key order (case-folded key, handle as registered,
values in wire layout), the homed prefixes, the password accounts and every row of the
EPCIS event store, so two stores with the same checksum answer every resolution and
every event query identically.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from idnode.domain import HandleRecord
from idnode.errors import StorageError
from idnode.handle.encoded import EncodedValues
from idnode.names import handle_key
from idnode.storage.base import Storage
from idnode.storage.events import TABLES

__all__ = ["Fingerprint", "copy_storage", "fingerprint"]


@dataclass(frozen=True)
class Fingerprint:
    records: int
    prefixes: int
    sha256: str
    events: int = 0


def fingerprint(storage: Storage) -> Fingerprint:
    digest = hashlib.sha256()
    records = 0
    for record in storage.iter_records():
        records += 1
        for part in (
            handle_key(record.handle).encode(),
            record.handle.encode(),
            EncodedValues.of(record.values).wire,
        ):
            digest.update(len(part).to_bytes(4, "big") + part)
    prefixes = sorted(handle_key(p) for p in storage.homed_prefixes())
    for prefix in prefixes:
        digest.update(b"P" + prefix.encode() + b"\0")
    for account in storage.accounts():
        who = account.identity
        line = f"{account.name}\0{who.index}:{who.handle}\0{account.password}\0"
        digest.update(b"A" + line.encode())
    events = 0
    for table in TABLES:
        for row in storage.events.rows(table):
            events += table == "epcis_events"
            digest.update(table.encode() + b"\0" + repr(row).encode())
    return Fingerprint(records, len(prefixes), digest.hexdigest(), events)


def copy_storage(
    source: Storage, target: Storage, progress: Callable[[int], None] | None = None
) -> Fingerprint:
    """Copy everything from ``source`` into the empty ``target`` and verify the copy.

    Raises StorageError if the target is not empty or the copy does not match.
    """
    if target.count() or target.homed_prefixes() or target.events.last_seq():
        raise StorageError("the target database is not empty; migrate into an empty one")

    def counted() -> Iterator[HandleRecord]:
        for n, record in enumerate(source.iter_records(), 1):
            if progress is not None:
                progress(n)
            yield record

    target.put_many(counted(), replace=False)
    for prefix in source.homed_prefixes():
        target.home_prefix(prefix)
    for account in source.accounts():
        target.put_account(account)
    for table in TABLES:  # EPCIS events, their index, captures, queries, subscriptions
        batch: list[tuple[object, ...]] = []
        for row in source.events.rows(table):
            batch.append(row)
            if len(batch) == 5000:
                target.events.load(table, batch)
                batch = []
        target.events.load(table, batch)
    want, got = fingerprint(source), fingerprint(target)
    if want != got:
        raise StorageError(f"copy does not match the source: source {want}, target {got}")
    return got
