"""What a running node measures about itself, for ``/metrics``: request rates and
latencies by protocol, operation and outcome, database time, the record cache, work
waiting, requests dropped, workers by version.

These live in the process; the per-prefix counts of resolutions and registrations
(:mod:`idnode.stats`) live in the database, shared by every process and machine.

Why not prometheus_client's own metrics: recording is on the hot path of every
request, and its multiprocess mode (values in memory-mapped files, under a lock) cost
1.6 µs per histogram observation here, 4 µs per resolution with the database read
timed too: 14% of the UDP throughput of ``make bench``, measured. Here a value is a
plain number in a dictionary, behind a lock per metric (about 0.5 µs), and
prometheus_client only formats them.

Several workers: each writes a snapshot of its values to ``<pid>-<start>.json`` in a shared
directory every second, when it answers ``/metrics`` and when it stops
(:func:`share_through`, set by the worker under a supervisor), and whichever worker
answers ``/metrics`` adds every snapshot up: the others' are at most a second old.
Counters and histograms of workers that ended stay in the
sum (the supervisor folds them into ``retired.json``), so a total never goes back
when a worker is replaced; gauges count only workers alive. A worker killed outright
loses at most its last second. A release whose buckets or labels differ starts its
sums afresh (files of the other layout are left out): Prometheus sees one reset.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

__all__ = [
    "CONTENT_TYPE",
    "QUEUES",
    "RETIRED",
    "exposition",
    "forget_process",
    "observe_database",
    "observe_request",
    "record_cache",
    "record_dropped",
    "record_write",
    "save_snapshot",
    "set_queue_depth",
    "share_through",
    "worker_started",
]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

log = logging.getLogger("idnode.metrics")

#: From a local resolution (a tenth of a millisecond) to a recursive one that waits on
#: slow servers (seconds).
_LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip


class _Metric:
    kind: str

    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = tuple(labels)
        self.lock = threading.Lock()
        self.values: dict[tuple[str, ...], Any] = {}

    def snapshot(self) -> list[list[Any]]:
        with self.lock:
            return [[*key, value] for key, value in self.values.items()]


class _Counter(_Metric):
    kind = "counter"

    def inc(self, key: tuple[str, ...], amount: float = 1.0) -> None:
        with self.lock:
            self.values[key] = self.values.get(key, 0.0) + amount


class _Gauge(_Metric):
    """A value per process; the exposition sums those of processes alive."""

    kind = "gauge"

    def set(self, key: tuple[str, ...], value: float) -> None:
        with self.lock:
            self.values[key] = value


class _Histogram(_Metric):
    """Per label set: a count per bucket (not cumulative; the last is +Inf), then the sum."""

    kind = "histogram"

    def __init__(
        self, name: str, documentation: str, labels: Sequence[str], bounds: Sequence[float]
    ) -> None:
        super().__init__(name, documentation, labels)
        self.bounds = tuple(bounds)

    def observe(self, key: tuple[str, ...], seconds: float) -> None:
        with self.lock:
            counts = self.values.get(key)
            if counts is None:
                counts = self.values[key] = [0] * (len(self.bounds) + 1) + [0.0]
            counts[bisect.bisect_left(self.bounds, seconds)] += 1
            counts[-1] += seconds

    def zero(self, key: tuple[str, ...]) -> None:
        with self.lock:
            self.values.setdefault(key, [0] * (len(self.bounds) + 1) + [0.0])


_REQUESTS = _Histogram(
    "idnode_request_duration_seconds",
    "Requests by protocol (udp, tcp, http), operation (Handle opcode name, or the HTTP"
    " method and route) and code (Handle response code name, or HTTP status), and the"
    " time from reading each to handing its answer to the kernel.",
    ["protocol", "operation", "code"],
    _LATENCY_BUCKETS,
)
_DATABASE = _Histogram(
    "idnode_database_duration_seconds",
    "Database reads (one query) and write transactions (waiting for the lock included).",
    ["kind"],
    _LATENCY_BUCKETS,
)
_CACHE = _Counter(
    "idnode_cache_lookups_total",
    "Lookups in the record cache (PostgreSQL nodes; SQLite reads memory-mapped pages).",
    ["result"],
)
_WRITES = _Counter(
    "idnode_writes_total",
    "Record writes by operation (as in the audit log) and outcome (ok, or the error).",
    ["operation", "outcome"],
)
_DROPPED = _Counter(
    "idnode_dropped_requests_total",
    "UDP requests dropped unanswered: rate_limited (udp_rate_limit), overloaded"
    " (too many waiting, or replies not leaving fast enough).",
    ["reason"],
)
_QUEUES = _Gauge(
    "idnode_queue_depth",
    "Work waiting or in progress, sampled every second, summed over the workers.",
    ["queue"],
)
_WORKERS = _Gauge(
    "idnode_workers",
    "Worker processes serving, by the idnode version they run (two versions show"
    " during a rolling restart to a new one).",
    ["version"],
)
_ALL: Final = (_REQUESTS, _DATABASE, _CACHE, _WRITES, _DROPPED, _QUEUES, _WORKERS)

#: What ``idnode_queue_depth`` reports.
QUEUES: Final = (
    "database_reads",  # service calls on the reader threads, running or waiting
    "database_writes",  # on the writer
    "udp_pending",  # UDP requests waiting on a write or another server
    "tcp_connections",  # Handle TCP connections open
)

# Series that exist before anything happens, at 0: a dashboard shows "none" rather
# than "no data", and an alert on them works from the start.
for _reason in ("rate_limited", "overloaded"):
    _DROPPED.inc((_reason,), 0)
for _result in ("hit", "miss"):
    _CACHE.inc((_result,), 0)
for _kind in ("read", "write"):
    _DATABASE.zero((_kind,))

_shared: Path | None = None


def observe_request(protocol: str, operation: str, code: str, seconds: float) -> None:
    _REQUESTS.observe((protocol, operation, code), seconds)


def observe_database(kind: str, began: float) -> None:
    """A database read or write that began at ``began`` (``time.perf_counter()``)."""
    _DATABASE.observe((kind,), time.perf_counter() - began)


def record_cache(hit: bool) -> None:
    _CACHE.inc(("hit" if hit else "miss",))


def record_write(operation: str, outcome: str) -> None:
    _WRITES.inc((operation, outcome))


def record_dropped(reason: str) -> None:
    _DROPPED.inc((reason,))


def set_queue_depth(queue: str, depth: int) -> None:
    _QUEUES.set((queue,), depth)


def worker_started(version: str) -> None:
    _WORKERS.set((version,), 1)


# -- several workers ---------------------------------------------------------------

#: What a snapshot's numbers mean: a file of another layout (written by another
#: release, whose buckets or labels differ) is not added in.
_LAYOUT: Final = {
    "format": 1,
    "buckets": list(_LATENCY_BUCKETS),
    "labels": {m.name: list(m.labels) for m in _ALL},
}
#: The counters and histograms of workers that ended, summed by the supervisor.
RETIRED: Final = "retired.json"
_save_lock = threading.Lock()
_own_file: str | None = None


def share_through(directory: Path) -> None:
    """Share this process's values with the other workers through ``directory``
    (see the module): call :func:`save_snapshot` every second from then on."""
    global _shared, _own_file  # noqa: PLW0603 - one setting per process, like the values
    _shared = directory
    # The start time as well as the pid: a new process given an old one's pid must
    # not overwrite (and so take back) what the old one counted.
    _own_file = f"{os.getpid()}-{time.time_ns()}.json"


def save_snapshot() -> None:
    """This process's values into its file of the shared directory, whole or not at
    all (a reader never sees half a file), one save at a time."""
    if _shared is None or _own_file is None:
        return
    with _save_lock:
        data = {"pid": os.getpid(), "layout": _LAYOUT}
        data["metrics"] = {m.name: m.snapshot() for m in _ALL}
        _write_whole(_shared / _own_file, data)


def forget_process(directory: Path, pid: int) -> None:
    """Fold the files of a worker that ended into ``retired.json``: its counters and
    histograms stay in the sums, its gauges stop counting, and the directory does not
    grow with every restart. Called by the supervisor, the one writer of that file.

    A folded file is listed as such (readers skip it) and deleted at the next call:
    a scrape that read the list before this one still finds it."""
    retired = _read(directory / RETIRED)
    if retired is None or retired.get("layout") != _LAYOUT:
        retired = {"layout": _LAYOUT, "folded": [], "metrics": {}}
    for name in retired["folded"]:
        (directory / name).unlink(missing_ok=True)
    folded = []
    for path in sorted(directory.glob(f"{pid}-*.json")):
        data = _read(path)
        if data is None or data.get("layout") != _LAYOUT:
            continue  # another release's numbers: left out, as readers leave them out
        for metric in _ALL:
            if metric.kind == "gauge":
                continue
            rows = retired["metrics"].setdefault(metric.name, [])
            merged = _merged(metric, [rows, data["metrics"].get(metric.name, [])])
            rows[:] = [[*key, value] for key, value in merged.items()]
        folded.append(path.name)
    retired["folded"] = folded
    _write_whole(directory / RETIRED, retired)


def _merged(metric: _Metric, sources: list[list[list[Any]]]) -> dict[tuple[str, ...], Any]:
    """``metric``'s rows of several snapshots, summed by label values."""
    width = len(metric.labels)
    merged: dict[tuple[str, ...], Any] = {}
    for rows in sources:
        for row in rows:
            key = tuple(row[:width])
            merged[key] = _add(merged.get(key), row[width])
    return merged


def _write_whole(path: Path, data: dict[str, Any]) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# -- exposition --------------------------------------------------------------------


def exposition() -> bytes:
    """Every metric in the Prometheus text format: this process's values or, with a
    shared directory, every worker's snapshot, this one's saved first.

    Snapshots only, not this process's live values beside the others' snapshots: each
    snapshot only grows, so a sum of snapshots never goes back from one scrape to
    the next, whichever worker answers each (live values of the one plus a second-old
    snapshot of the other could sum to less than the reverse a moment before, which
    Prometheus would take for a counter reset)."""
    if _shared is None:
        sources = [{m.name: m.snapshot() for m in _ALL}]
    else:
        try:
            save_snapshot()
        except OSError as exc:  # the disk is full: the last snapshot answers
            log.warning("could not save this worker's metrics: %s", exc)
        sources = _snapshots(_shared)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(sources))
    return generate_latest(registry)


def _snapshots(directory: Path) -> list[dict[str, list[list[Any]]]]:
    """The retired workers' sums, then every worker's file not folded into them."""
    found = []
    retired = _read(directory / RETIRED)
    folded: set[str] = set()
    if retired is not None and retired.get("layout") == _LAYOUT:
        folded = set(retired.get("folded", []))
        found.append(retired["metrics"])
    for path in directory.glob("[0-9]*-*.json"):
        if path.name in folded:
            continue
        data = _read(path)
        if data is None or data.get("layout") != _LAYOUT:
            continue  # another release's, or not one of ours
        metrics = data["metrics"]
        if not _alive(int(data["pid"])):
            metrics = {name: rows for name, rows in metrics.items() if name not in _GAUGES}
        found.append(metrics)
    return found


_GAUGES: Final = frozenset(m.name for m in _ALL if m.kind == "gauge")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Collector:
    def __init__(self, sources: list[dict[str, list[list[Any]]]]) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        for metric in _ALL:
            rows = [source.get(metric.name, []) for source in self._sources]
            yield _family(metric, _merged(metric, rows))


def _add(total: Any, value: Any) -> Any:
    if total is None:
        return list(value) if isinstance(value, list) else value
    if isinstance(value, list):
        return [a + b for a, b in zip(total, value, strict=True)]
    return total + value


def _family(metric: _Metric, merged: dict[tuple[str, ...], Any]) -> Metric:
    family: Metric
    labels = list(metric.labels)
    if isinstance(metric, _Histogram):
        family = HistogramMetricFamily(metric.name, metric.documentation, labels=labels)
        bounds = [*(_le(b) for b in metric.bounds), "+Inf"]
        for key, counts in sorted(merged.items()):
            cumulative, buckets = 0, []
            for bound, count in zip(bounds, counts[:-1], strict=True):
                cumulative += count
                buckets.append((bound, float(cumulative)))
            family.add_metric(list(key), buckets, counts[-1])
        return family
    make: Callable[..., Metric] = (
        CounterMetricFamily if isinstance(metric, _Counter) else GaugeMetricFamily
    )
    family = make(metric.name, metric.documentation, labels=labels)
    for key, value in sorted(merged.items()):
        family.add_metric(list(key), value)  # type: ignore[attr-defined]
    return family


def _le(bound: float) -> str:
    return repr(float(bound))
