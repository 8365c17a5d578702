"""The service layer: what a node does, whichever front end asked.

The Handle UDP/TCP servers, the HTTP API and the CLI all call these methods and turn
their results or :mod:`idnode.errors` exceptions into their own wire formats. Nothing
else talks to storage.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from idnode.errors import HandleNotFound, NotResponsible, ValuesNotFound
from idnode.handle.encoded import EncodedValues
from idnode.handle.valuetypes import SiteInfo
from idnode.names import handle_key, split_handle, validate_prefix
from idnode.stats import StatsRecorder, StatsRow
from idnode.storage.base import HandleRecord, Storage

__all__ = ["ANONYMOUS", "Caller", "NodeService"]

# Prefix handles (0.NA/<prefix>) live with the prefix they describe.
NA_PREFIX = "0.NA"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking. Until authentication lands every caller is anonymous."""

    authenticated: bool = False


ANONYMOUS = Caller()


class NodeService:
    """Resolution and record management over one storage backend.

    ``clock`` returns monotonic seconds; tests pass their own to step time.
    """

    # How long the set of homed prefixes is trusted before it is read again, so that a
    # prefix homed by another process (another worker, the CLI) is served without a
    # restart.
    HOMED_REFRESH_SECONDS = 5.0

    def __init__(
        self,
        storage: Storage,
        site: SiteInfo,
        clock: Callable[[], float] = time.monotonic,
        stats: StatsRecorder | None = None,
    ) -> None:
        self._storage = storage
        self._site = site
        self._clock = clock
        self._stats = stats or StatsRecorder()
        self._homed: frozenset[str] = frozenset()
        self._homed_read_at = float("-inf")

    # -- reads ---------------------------------------------------------------

    def resolve(
        self,
        handle: str,
        *,
        indexes: Sequence[int] = (),
        types: Sequence[str] = (),
        caller: Caller = ANONYMOUS,
    ) -> HandleRecord:
        """The handle's values the caller may read, filtered by index and type.

        A value is kept when its index is listed or its type matches a listed type
        (a type ending in "." selects its subtypes); no lists means all values.
        Raises InvalidHandle, NotResponsible, HandleNotFound or ValuesNotFound.
        """
        prefix, suffix = split_handle(handle)
        prefix_key = handle_key(prefix)
        if not self._is_responsible(prefix_key, suffix):
            raise NotResponsible(f"prefix {prefix} is not homed at this node")
        record = self._storage.get(handle)
        if record is None:
            self._stats.not_found(prefix_key)
            raise HandleNotFound(f"handle {handle} not found")
        values = EncodedValues.of(record.values).select(
            public_only=not caller.authenticated, indexes=frozenset(indexes), types=types
        )
        if not values:
            self._stats.not_found(prefix_key)
            raise ValuesNotFound(f"handle {handle} has no values matching the request")
        self._stats.resolved(prefix_key)
        return HandleRecord(record.handle, values)

    def site_info(self) -> SiteInfo:
        return self._site

    def homed_prefixes(self) -> list[str]:
        return self._storage.homed_prefixes()

    def count(self, prefix: str | None = None) -> int:
        return self._storage.count(prefix)

    def export_records(self, prefix: str | None = None) -> Iterator[HandleRecord]:
        return self._storage.iter_records(prefix)

    # -- writes (local administration; protocol writes arrive with issue 3) ---

    def home_prefix(self, prefix: str) -> None:
        validate_prefix(prefix)
        self._storage.home_prefix(prefix)
        self._homed_read_at = float("-inf")

    def put_record(self, record: HandleRecord) -> None:
        prefix, _ = split_handle(record.handle)
        self._storage.put(record)
        self._stats.registered(handle_key(prefix))

    def import_records(self, records: Iterable[HandleRecord], *, replace: bool) -> tuple[int, int]:
        """Store many records; returns (written, skipped). Handles are validated first."""
        offered: Counter[str] = Counter()

        def checked() -> Iterator[HandleRecord]:
            for record in records:
                prefix, _ = split_handle(record.handle)
                offered[handle_key(prefix)] += 1
                yield record

        written, skipped = self._storage.put_many(checked(), replace=replace)
        # Storage reports only totals: exact per prefix unless skipped records span
        # several prefixes, where the written count is shared out in proportion.
        total = sum(offered.values())
        for prefix_key, n in offered.items():
            self._stats.registered(prefix_key, n if not skipped else round(written * n / total))
        return written, skipped

    # -- statistics -------------------------------------------------------------

    def flush_stats(self) -> None:
        """Add this process's counts since the last flush to the shared totals."""
        rows = self._stats.drain()
        try:
            self._storage.add_stats(rows)
        except BaseException:
            self._stats.restore(rows)
            raise

    def stats(self, prefix: str | None = None, since: int = 0) -> list[StatsRow]:
        """Totals per prefix and hour, as flushed by every process on this database."""
        return self._storage.stats(prefix, since)

    # -- helpers -------------------------------------------------------------

    def _is_responsible(self, key: str, suffix: str) -> bool:
        now = self._clock()
        if now - self._homed_read_at > self.HOMED_REFRESH_SECONDS:
            self._homed = frozenset(handle_key(p) for p in self._storage.homed_prefixes())
            self._homed_read_at = now
        if key == NA_PREFIX:
            return handle_key(suffix) in self._homed or key in self._homed
        return key in self._homed
