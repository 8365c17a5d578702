"""Statistics: this node's counts per prefix and hour, and other nodes' reports.

Each process counts in memory and adds its counts to the shared totals now and then
(:meth:`Statistics.flush`); a node reports its totals, and its children's, to its
parent, which stores them per source node.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from idnode.errors import AuthenticationNeeded
from idnode.handle.valuetypes import AdminPermission
from idnode.names import NA_PREFIX, handle_key, prefix_chain, validate_prefix
from idnode.service.core import Caller, ServiceCore
from idnode.stats import ReportedRow, StatsRow

__all__ = ["Statistics"]


class Statistics:
    def __init__(self, core: ServiceCore) -> None:
        self._core = core

    def flush(self) -> None:
        """Add this process's counts since the last flush to the shared totals."""
        recorder = self._core.stats
        rows = recorder.drain()
        try:
            self._core.storage.add_stats(rows)
        except BaseException:
            recorder.restore(rows)
            raise

    def totals(self, prefix: str | None = None, since: int = 0) -> list[StatsRow]:
        """Totals per prefix and hour, as flushed by every process on this database."""
        return self._core.storage.stats(prefix, since)

    def reported(self, since: int = 0) -> list[ReportedRow]:
        """What other nodes reported here, per source node, prefix and hour."""
        return self._core.storage.reported_stats(since)

    def accept_report(self, rows: Sequence[ReportedRow], caller: Caller) -> int:
        """Store another node's report of totals; returns how many rows were stored.

        A node may report for the prefixes delegated to it and those below them: the
        caller needs ADD_HANDLE from the administrators of the nearest prefix handle
        held here (whoever may register handles under a prefix may report its counts).
        One row the caller may not report refuses the whole report, so a report is
        stored entirely or not at all.
        """
        core = self._core
        if caller.identity is None:
            raise AuthenticationNeeded("reporting statistics needs an authenticated identity")
        for prefix in sorted({row.stats.prefix for row in rows}):
            validate_prefix(prefix)
            core.authorizer.require(
                caller.identity,
                AdminPermission.ADD_HANDLE,
                core.delegation_admins(prefix),
                f"report statistics for {prefix}",
            )
        received = core.wall_clock()
        stored = [
            ReportedRow(
                row.source,
                dataclasses.replace(row.stats, prefix=handle_key(row.stats.prefix)),
                caller.actor,
                received,
            )
            for row in rows
        ]
        core.storage.put_reported_stats(stored)
        return len(stored)

    def report(self, source: str, since: int = 0) -> list[ReportedRow]:
        """The rows this node reports to its parent, from hour ``since`` on: its own
        totals for the prefixes it homes and those below them (named ``source``), and
        what its own children reported here, so totals travel up the hierarchy."""
        storage = self._core.storage
        homed = self._core.homed_keys(fresh=True) - {NA_PREFIX}
        own = [
            ReportedRow(source, row)
            for row in storage.stats(since=since)
            if any(p in homed for p in prefix_chain(row.prefix))
        ]
        forwarded = [ReportedRow(r.source, r.stats) for r in storage.reported_stats(since)]
        return own + forwarded
