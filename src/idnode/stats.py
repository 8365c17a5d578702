"""Counting resolutions and registrations per prefix and hour.

Every worker counts in memory (a dictionary increment on the hot path) and adds its
counts to the database now and then (:meth:`NodeService.flush_stats`), where rows are
summed per prefix and hour, so the figures of all workers and machines sharing a
database add up. What a worker has not flushed yet is lost if it is killed; a clean
shutdown flushes.

A node can report its totals to its parent (:mod:`idnode.reporting`), which keeps them
per source node as :class:`ReportedRow`; a report carries the hour's totals so far, so
sending the same hours again replaces rather than adds.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from idnode.errors import InvalidValue

__all__ = [
    "HOUR",
    "ReportedRow",
    "StatsRecorder",
    "StatsRow",
    "hours_since",
    "prometheus_text",
    "report_from_json",
    "report_to_json",
    "row_to_json",
]

HOUR = 3600


@dataclass(frozen=True, slots=True)
class StatsRow:
    prefix: str
    hour: int  # Unix time of the start of the hour, UTC
    resolutions: int = 0
    not_found: int = 0
    registrations: int = 0


@dataclass(frozen=True, slots=True)
class ReportedRow:
    """An hour's totals for a prefix as the node ``source`` counted them, reported to
    this node by the identity ``reported_by`` at ``received`` (Unix time)."""

    source: str
    stats: StatsRow
    reported_by: str = ""
    received: float = 0.0


def hours_since(hours: int, now: float) -> int:
    """The start of the hour ``hours - 1`` hours before ``now``'s: the ``hours`` most
    recent hours, the current one included; 0 (all time) when ``hours`` is 0."""
    if hours <= 0:
        return 0
    current = int(now) - int(now) % HOUR
    return current - (hours - 1) * HOUR


class StatsRecorder:
    """In-memory counts since the last drain, one per process. A lock, because a bulk
    registration counts from its own thread while the event loop drains."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._counts: Counter[tuple[str, int, str]] = Counter()
        self._lock = threading.Lock()

    def _hour(self) -> int:
        now = int(self._clock())
        return now - now % HOUR

    def resolved(self, prefix: str) -> None:
        self._add(prefix, "resolutions", 1)

    def not_found(self, prefix: str) -> None:
        self._add(prefix, "not_found", 1)

    def registered(self, prefix: str, count: int = 1) -> None:
        self._add(prefix, "registrations", count)

    def _add(self, prefix: str, kind: str, count: int, hour: int | None = None) -> None:
        key = (prefix, self._hour() if hour is None else hour, kind)
        with self._lock:
            self._counts[key] += count

    def restore(self, rows: list[StatsRow]) -> None:
        """Put back drained rows that could not be stored, to try again later."""
        for row in rows:
            for kind in ("resolutions", "not_found", "registrations"):
                if n := getattr(row, kind):
                    self._add(row.prefix, kind, n, row.hour)

    def drain(self) -> list[StatsRow]:
        """The counts so far, as rows, and start counting afresh."""
        with self._lock:
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


def prometheus_text(rows: Sequence[StatsRow], reported: Sequence[ReportedRow] = ()) -> str:
    """Totals in the Prometheus text format: this node's per prefix, and those other
    nodes reported per source and prefix (``idnode_reported_*``)."""
    own = _totals(((row.prefix,), row) for row in rows)
    others = _totals(((r.source, r.stats.prefix), r.stats) for r in reported)
    lines = []
    for kind, name, help_text in _METRICS:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        lines += [f'{name}{{prefix="{_label(p)}"}} {sums[kind]}' for (p,), sums in own]
    for kind, name, help_text in _METRICS:
        reported_name = name.replace("idnode_", "idnode_reported_", 1)
        lines += [
            f"# HELP {reported_name} {help_text} Reported by the node named in source.",
            f"# TYPE {reported_name} counter",
        ]
        lines += [
            f'{reported_name}{{source="{_label(s)}",prefix="{_label(p)}"}} {sums[kind]}'
            for (s, p), sums in others
        ]
    return "\n".join(lines) + "\n"


# A report on the wire: {"rows": [{"source", "prefix", "hour", "resolutions",
# "notFound", "registrations"}, ...]}, the counts being the hour's totals so far.
_COUNT_FIELDS = (
    ("resolutions", "resolutions"),
    ("not_found", "notFound"),
    ("registrations", "registrations"),
)
MAX_REPORT_ROWS = 10_000
MAX_SOURCE_LENGTH = 255


def row_to_json(row: StatsRow) -> dict[str, Any]:
    """An hour's totals for a prefix in the API's shape (``notFound``, not ``not_found``)."""
    return {"prefix": row.prefix, "hour": row.hour} | {
        name: getattr(row, attr) for attr, name in _COUNT_FIELDS
    }


def report_to_json(rows: Iterable[ReportedRow]) -> dict[str, Any]:
    return {"rows": [{"source": r.source} | row_to_json(r.stats) for r in rows]}


def report_from_json(body: Any) -> list[ReportedRow]:
    """The rows of a report; InvalidValue naming the first thing wrong with it."""
    rows = body.get("rows") if isinstance(body, dict) else None
    if not isinstance(rows, list):
        raise InvalidValue('a statistics report is {"rows": [...]}')
    if len(rows) > MAX_REPORT_ROWS:
        raise InvalidValue(f"a report holds at most {MAX_REPORT_ROWS} rows, got {len(rows)}")
    return [_row_from_json(row, n) for n, row in enumerate(rows)]


def _row_from_json(row: Any, n: int) -> ReportedRow:
    if not isinstance(row, dict):
        raise InvalidValue(f"rows[{n}] is not an object")
    source, prefix = row.get("source"), row.get("prefix")
    if not isinstance(source, str) or not 0 < len(source) <= MAX_SOURCE_LENGTH:
        raise InvalidValue(
            f"rows[{n}].source must be a name of 1 to {MAX_SOURCE_LENGTH} characters"
        )
    if not isinstance(prefix, str) or not prefix:
        raise InvalidValue(f"rows[{n}].prefix must be a prefix")
    fields: list[tuple[str, str, Any]] = [("hour", "hour", row.get("hour"))]
    fields += [(attr, name, row.get(name, 0)) for attr, name in _COUNT_FIELDS]
    for _, name, number in fields:
        if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < 2**63:
            raise InvalidValue(f"rows[{n}].{name} must be a non-negative integer")
    if row["hour"] % HOUR:
        raise InvalidValue(f"rows[{n}].hour must be the start of an hour (a multiple of 3600)")
    return ReportedRow(source, StatsRow(prefix, **{attr: int(v) for attr, _, v in fields}))


def _totals(
    keyed: Iterable[tuple[tuple[str, ...], StatsRow]],
) -> list[tuple[tuple[str, ...], dict[str, int]]]:
    totals: dict[tuple[str, ...], dict[str, int]] = {}
    for key, row in keyed:
        sums = totals.setdefault(key, dict.fromkeys([k for k, _, _ in _METRICS], 0))
        for kind, _, _ in _METRICS:
            sums[kind] += getattr(row, kind)
    return sorted(totals.items())


def _label(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
