"""Bulk registration: many records checked and set aside, then written span by span.

A front end (``idnode import``, ``POST /api/bulk``) reads its source once through
:meth:`BulkWrites.stage_many`, which checks each record and sets it aside in a staging
area, and writes only if nothing was rejected, through :meth:`BulkWrites.write_staged`.
Writing again what is stored already changes nothing, so a registration can be run
again after a crash.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from idnode import edits
from idnode.domain import HandleRecord
from idnode.handle.encoded import EncodedValues
from idnode.handle.values import HandleValue
from idnode.handle.valuetypes import AdminPermission
from idnode.metrics import record_write
from idnode.names import NA_PREFIX, handle_key, split_handle
from idnode.service.core import Caller, ServiceCore
from idnode.storage.staging import Staging

log = logging.getLogger("idnode.writes")

__all__ = ["BulkResult", "BulkWrites", "StagedLoad"]


@dataclass
class BulkResult:
    """What a bulk registration did (or, checked only, would do) with its records."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0  #: stored already with the same values (timestamps aside)
    skipped: int = 0  #: stored already with other values, and not to be replaced
    elsewhere: int = 0  #: another server's share of this site

    @property
    def total(self) -> int:
        return self.created + self.updated + self.unchanged + self.skipped + self.elsewhere


_RESULT_COUNTS = ("created", "updated", "unchanged", "skipped", "elsewhere")


@dataclass
class StagedLoad:
    """Records set aside by :meth:`BulkWrites.stage_many`, waiting to be written:
    their spans in the staging area, each with how many of its records are under
    each prefix (by key), for the statistics."""

    staging: Staging
    spans: list[tuple[range, Counter[str]]] = dataclasses.field(default_factory=list)
    elsewhere: int = 0  #: another server's share of this site, not staged

    def close(self) -> None:
        self.staging.close()

    def __enter__(self) -> StagedLoad:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class BulkWrites:
    BATCH = 5000

    def __init__(self, core: ServiceCore) -> None:
        self._core = core

    def register_many(
        self,
        records: Iterable[HandleRecord],
        *,
        replace: bool,
        caller: Caller | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> BulkResult:
        """Create or update many records: :meth:`stage_many`, then
        :meth:`write_staged`, for records checked already."""
        with self.stage_many(records, replace=replace, caller=caller) as load:
            return self.write_staged(load, replace=replace, caller=caller, progress=progress)

    def stage_many(
        self,
        records: Iterable[HandleRecord],
        *,
        replace: bool,
        caller: Caller | None = None,
        parallel: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> StagedLoad:
        """Set records aside for :meth:`write_staged`, so that a front end can check
        all of them before any is written, and read its source only once.

        Each record must be under a prefix homed here (NotResponsible stops the load
        otherwise: nobody could resolve it). With a ``caller`` (the HTTP API) the
        prefix's administrators must grant it ADD_HANDLE (and DELETE_HANDLE to replace);
        without one it is the node's operator. Records of another server of this site
        are counted, not kept. ``parallel``: a second process stages the records
        while this one goes on reading (for large loads on more than one core).
        """
        core = self._core
        load = StagedLoad(core.storage.staging(parallel=parallel))
        try:
            allowed: set[str] = set()
            now = core.now()
            for batch in _batches(records, self.BATCH):
                kept = []
                prefixes: Counter[str] = Counter()
                for record in batch:
                    if not core.in_share(record.handle):
                        load.elsewhere += 1
                        continue
                    prefixes[self._allowed(record.handle, caller, replace, allowed)] += 1
                    values = record.values
                    stamped = (
                        values.timestamps_set()
                        if isinstance(values, EncodedValues)
                        else all(v.timestamp for v in values)
                    )
                    if not stamped:
                        values = edits.stamped_if_unset(values, now)
                    kept.append(HandleRecord(record.handle, values))
                if kept:
                    load.spans.append((load.staging.add(kept), prefixes))
                if progress is not None:
                    progress(len(batch))
            load.staging.finish()
        except BaseException:
            load.close()
            raise
        return load

    def write_staged(
        self,
        load: StagedLoad,
        *,
        replace: bool,
        caller: Caller | None = None,
        dry_run: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> BulkResult:
        """Write staged records, a span per transaction; with ``dry_run`` only say
        what would be written.

        A record stored already with the same values (timestamps aside) is left as it
        is, so running the same registration again, or again after a crash, writes only
        what is missing: no duplicates, no gaps. Other existing records are replaced
        only with ``replace``. With a ``caller`` every write is audited.
        """
        core = self._core
        result = BulkResult(elsewhere=load.elsewhere)
        audit = None if caller is None else core.audit(caller, "bulk")
        left: list[str] = []

        def choose(existing: dict[str, tuple[HandleRecord, HandleRecord]]) -> list[str]:
            left.clear()
            for key, (stored, staged) in existing.items():
                if _same_values(stored.values, staged.values):
                    result.unchanged += 1
                elif not replace:
                    result.skipped += 1
                else:
                    result.updated += 1
                    continue
                left.append(key)
            return left

        for span, prefixes in load.spans:
            before = result.updated
            written = core.storage.put_staged(
                load.staging, span, choose, audit=audit, dry_run=dry_run
            )
            result.created += written - (result.updated - before)
            if not dry_run:
                registered = prefixes.copy()
                registered.subtract(key.partition("/")[0] for key in left)
                for prefix_key, count in registered.items():
                    if count > 0:
                        core.stats.registered(prefix_key, count)
            if progress is not None:
                progress(len(span))
        if not dry_run:
            # One line per bulk registration, not per record: a million rows would
            # drown the log.
            record_write("bulk", "ok")
            fields = {"event": "write", "operation": "bulk", "outcome": "ok"}
            if caller is not None:
                fields |= {"actor": caller.actor, "origin": caller.origin}
            fields |= {name: getattr(result, name) for name in _RESULT_COUNTS}
            log.info(
                "bulk write by %s: %d created, %d updated, %d unchanged, %d skipped",
                "the operator" if caller is None else caller.actor,
                result.created,
                result.updated,
                result.unchanged,
                result.skipped,
                extra={"fields": fields},
            )
        return result

    def _allowed(self, handle: str, caller: Caller | None, replace: bool, allowed: set[str]) -> str:
        """The handle's prefix key, once the caller may register handles under it."""
        core = self._core
        prefix, _ = split_handle(handle)
        key = handle_key(prefix)
        if key in allowed and key != NA_PREFIX:  # a prefix handle's home is by its suffix
            return key
        core.writable_handle(handle)
        if caller is not None:
            needed = AdminPermission.ADD_HANDLE
            if replace:
                needed |= AdminPermission.DELETE_HANDLE
            what = f"register handles under {prefix}"
            core.authorizer.require(caller.identity, needed, core.prefix_admins(prefix), what)
        allowed.add(key)
        return key


def _batches(records: Iterable[HandleRecord], size: int) -> Iterator[list[HandleRecord]]:
    batch: list[HandleRecord] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _same_values(a: Sequence[HandleValue], b: Sequence[HandleValue]) -> bool:
    if isinstance(a, EncodedValues) and isinstance(b, EncodedValues):
        return a.content() == b.content()
    return len(a) == len(b) and sorted(map(edits.content, a)) == sorted(map(edits.content, b))
