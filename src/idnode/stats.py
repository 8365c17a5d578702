"""Counting resolutions and registrations per prefix and hour.

Every worker counts in memory (a dictionary increment on the hot path) and adds its
counts to the database now and then (:meth:`NodeService.flush_stats`), where rows are
summed per prefix and hour, so the figures of all workers and machines sharing a
database add up. What a worker has not flushed yet is lost if it is killed; a clean
shutdown flushes.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["HOUR", "StatsRecorder", "StatsRow", "prometheus_text"]

HOUR = 3600


@dataclass(frozen=True, slots=True)
class StatsRow:
    prefix: str
    hour: int  # Unix time of the start of the hour, UTC
    resolutions: int = 0
    not_found: int = 0
    registrations: int = 0


class StatsRecorder:
    """In-memory counts since the last drain. Not thread-safe: one per event loop."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._counts: Counter[tuple[str, int, str]] = Counter()

    def _hour(self) -> int:
        now = int(self._clock())
        return now - now % HOUR

    def resolved(self, prefix: str) -> None:
        self._counts[prefix, self._hour(), "resolutions"] += 1

    def not_found(self, prefix: str) -> None:
        self._counts[prefix, self._hour(), "not_found"] += 1

    def registered(self, prefix: str, count: int = 1) -> None:
        self._counts[prefix, self._hour(), "registrations"] += count

    def restore(self, rows: list[StatsRow]) -> None:
        """Put back drained rows that could not be stored, to try again later."""
        for row in rows:
            for kind in ("resolutions", "not_found", "registrations"):
                if n := getattr(row, kind):
                    self._counts[row.prefix, row.hour, kind] += n

    def drain(self) -> list[StatsRow]:
        """The counts so far, as rows, and start counting afresh."""
        counts, self._counts = self._counts, Counter()
        merged: dict[tuple[str, int], dict[str, int]] = {}
        for (prefix, hour, kind), n in counts.items():
            merged.setdefault((prefix, hour), {})[kind] = n
        return [StatsRow(prefix, hour, **kinds) for (prefix, hour), kinds in sorted(merged.items())]


_METRICS = (
    ("resolutions", "idnode_resolutions_total", "Handles resolved with at least one value."),
    ("not_found", "idnode_not_found_total", "Resolutions of unknown handles or values."),
    ("registrations", "idnode_registrations_total", "Records created or replaced."),
)


def prometheus_text(rows: list[StatsRow]) -> str:
    """Totals per prefix in the Prometheus text format (counters, labelled by prefix)."""
    totals: dict[str, dict[str, int]] = {}
    for row in rows:
        sums = totals.setdefault(row.prefix, dict.fromkeys([k for k, _, _ in _METRICS], 0))
        for kind, _, _ in _METRICS:
            sums[kind] += getattr(row, kind)
    lines = []
    for kind, name, help_text in _METRICS:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        for prefix, sums in sorted(totals.items()):
            label = prefix.replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'{name}{{prefix="{label}"}} {sums[kind]}')
    return "\n".join(lines) + "\n"
