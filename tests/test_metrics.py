"""idnode.metrics on its own: what the exposition says of recorded values, how the
workers' snapshots add up (the dead ones' counters kept, their gauges not), and the
record cache counting its lookups. The values are the process's, shared by every test
here: each test reads differences, or values under labels only it uses."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from idnode import metrics
from idnode.domain import HandleRecord
from idnode.handle.values import HandleValue
from idnode.storage.cache import CachingStorage
from idnode.storage.sqlite import SQLiteStorage
from tests.conftest import metric_sample


def _value(text: str, sample: str) -> float:
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    return float(found[1]) if found else 0.0


def test_a_histogram_is_exposed_cumulative_with_its_sum_and_count() -> None:
    for seconds in (0.00005, 0.0003, 0.0003, 0.02, 30.0):
        metrics.observe_request("udp", "test_histogram", "success", seconds)
    text = metrics.exposition().decode()
    labels = {"protocol": "udp", "operation": "test_histogram", "code": "success"}
    name = "idnode_request_duration_seconds"

    def bucket(le: str) -> float:
        return metric_sample(text, f"{name}_bucket", **labels, le=le)

    assert bucket("0.0001") == 1
    assert bucket("0.00025") == 1
    assert bucket("0.0005") == 3
    assert bucket("0.025") == 4
    assert bucket("10.0") == 4
    assert bucket("+Inf") == 5
    assert metric_sample(text, f"{name}_count", **labels) == 5
    assert metric_sample(text, f"{name}_sum", **labels) == pytest.approx(30.02065)


def test_series_that_exist_before_anything_happens() -> None:
    text = metrics.exposition().decode()
    for sample in (
        'idnode_dropped_requests_total{reason="rate_limited"}',
        'idnode_dropped_requests_total{reason="overloaded"}',
        'idnode_cache_lookups_total{result="hit"}',
        'idnode_database_duration_seconds_count{kind="write"}',
    ):
        assert re.search(rf"^{re.escape(sample)} ", text, re.MULTILINE), sample


def _dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _snapshot(pid: int, writes: float, depth: float, **layout: object) -> dict[str, object]:
    return {
        "pid": pid,
        "layout": metrics._LAYOUT | layout,
        "metrics": {
            "idnode_writes_total": [["test-sum", "ok", writes]],
            "idnode_queue_depth": [["test_queue", depth]],
        },
    }


def _exposed(text: str) -> tuple[float, float]:
    return (
        metric_sample(text, "idnode_writes_total", operation="test-sum", outcome="ok"),
        metric_sample(text, "idnode_queue_depth", queue="test_queue"),
    )


def test_workers_snapshots_add_up_and_a_dead_workers_gauges_do_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "_shared", None)
    metrics.share_through(tmp_path)
    before = _exposed(metrics.exposition().decode())  # this process's own file
    metrics.record_write("test-sum", "ok")
    metrics.set_queue_depth("test_queue", 3)
    dead = _dead_pid()
    (tmp_path / f"{dead}-1.json").write_text(json.dumps(_snapshot(dead, 2.0, 5)))
    # Another release's numbers (other buckets), and a file that is not a snapshot:
    # left out, neither fatal.
    other = _snapshot(dead, 100.0, 100, buckets=[1.0])
    (tmp_path / f"{dead}-2.json").write_text(json.dumps(other))
    (tmp_path / "3-3.json").write_text("not a snapshot")
    assert _exposed(metrics.exposition().decode()) == (before[0] + 3, 3)
    # The supervisor folds the dead worker's file into retired.json: the sums stay,
    # its gauges were not counted anyway, and the file goes at the next fold.
    metrics.forget_process(tmp_path, dead)
    assert _exposed(metrics.exposition().decode()) == (before[0] + 3, 3)
    retired = json.loads((tmp_path / metrics.RETIRED).read_text())
    assert retired["folded"] == [f"{dead}-1.json"]
    assert "idnode_queue_depth" not in retired["metrics"]
    assert (tmp_path / f"{dead}-1.json").exists()  # a scrape may still be reading it
    metrics.forget_process(tmp_path, _dead_pid())
    assert not (tmp_path / f"{dead}-1.json").exists()
    assert _exposed(metrics.exposition().decode()) == (before[0] + 3, 3)


def test_a_process_given_an_old_pid_writes_a_file_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "_shared", None)
    metrics.share_through(tmp_path)
    metrics.save_snapshot()
    first = {path.name for path in tmp_path.glob("*.json")}
    metrics.share_through(tmp_path)  # as a new process with the same pid would
    metrics.save_snapshot()
    assert len({path.name for path in tmp_path.glob("*.json")} - first) == 1


def test_saves_and_scrapes_at_once_never_see_a_smaller_sum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The background save, scrapes of several Prometheus servers and the final save
    may all run at once in one worker."""
    monkeypatch.setattr(metrics, "_shared", None)
    metrics.share_through(tmp_path)
    seen: list[float] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def count() -> None:
        while not stop.wait(0.0005):
            metrics.record_write("test-race", "ok")

    def scrape() -> None:
        try:
            for _ in range(40):
                text = metrics.exposition().decode()
                seen.append(
                    metric_sample(text, "idnode_writes_total", operation="test-race", outcome="ok")
                )
                metrics.save_snapshot()
        except BaseException as exc:
            failures.append(exc)

    metrics.record_write("test-race", "ok")
    counter = threading.Thread(target=count)
    counter.start()
    scrapers = [threading.Thread(target=scrape) for _ in range(3)]
    for thread in scrapers:
        thread.start()
    for thread in scrapers:
        thread.join()
    stop.set()
    counter.join()
    assert failures == []
    assert len(seen) == 120
    assert 0 not in seen  # each scrape found this process's file, whole
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_the_record_cache_counts_hits_and_misses(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "db.sqlite")
    try:
        cache = CachingStorage(storage, max_entries=10)
        cache.set_listening(True)
        storage.put(HandleRecord("88.1/A", (HandleValue(1, "URL", b"https://e.com"),)))

        def counts() -> tuple[float, float]:
            text = metrics.exposition().decode()
            return (
                _value(text, 'idnode_cache_lookups_total{result="hit"}'),
                _value(text, 'idnode_cache_lookups_total{result="miss"}'),
            )

        hits, misses = counts()
        assert cache.get("88.1/A") is not None  # a miss, kept
        assert cache.get("88.1/A") is not None  # a hit
        assert cache.get("88.1/A") is not None  # a hit
        assert counts() == (hits + 2, misses + 1)
    finally:
        storage.close()


def test_database_time_is_recorded_for_reads_and_writes(tmp_path: Path) -> None:
    def count(kind: str) -> float:
        text = metrics.exposition().decode()
        return _value(text, f'idnode_database_duration_seconds_count{{kind="{kind}"}}')

    storage = SQLiteStorage(tmp_path / "db.sqlite")
    try:
        reads, writes = count("read"), count("write")
        storage.put(HandleRecord("88.1/B", (HandleValue(1, "URL", b"https://e.com"),)))
        assert storage.get("88.1/B") is not None
        assert count("write") == writes + 1
        assert count("read") == reads + 1
    finally:
        storage.close()
