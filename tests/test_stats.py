"""Resolution and registration statistics: counted in memory, summed in the database."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from idnode.cli import app
from idnode.domain import HandleRecord
from idnode.errors import HandleNotFound, InvalidValue, StorageError, ValuesNotFound
from idnode.handle.values import HandleValue
from idnode.handle.valuetypes import SiteInfo
from idnode.service import NodeService
from idnode.stats import (
    HOUR,
    ReportedRow,
    StatsRecorder,
    StatsRow,
    prometheus_text,
    report_from_json,
    report_to_json,
)
from idnode.storage import Storage
from tests.clock import Clock
from tests.conftest import RunningNode

T0 = 1_767_571_200  # an hour boundary


def rec(handle: str) -> HandleRecord:
    return HandleRecord(handle, (HandleValue(1, "URL", b"u"),))


def test_recorder_counts_per_prefix_and_hour() -> None:
    clock = Clock(T0 + 10)
    stats = StatsRecorder(clock)
    stats.resolved("88.100.1")
    stats.resolved("88.100.1")
    stats.not_found("88.100.1")
    clock.now += HOUR
    stats.resolved("88.100.1")
    stats.registered("88.200", 5)
    assert stats.drain() == [
        StatsRow("88.100.1", T0, resolutions=2, not_found=1),
        StatsRow("88.100.1", T0 + HOUR, resolutions=1),
        StatsRow("88.200", T0 + HOUR, registrations=5),
    ]
    assert stats.drain() == []


def test_storage_sums_what_several_processes_add(storage: Storage) -> None:
    storage.add_stats([StatsRow("88.100.1", T0, resolutions=3, not_found=1)])
    storage.add_stats([StatsRow("88.100.1", T0, resolutions=4, registrations=2)])
    storage.add_stats([StatsRow("88.200", T0 + HOUR, resolutions=1)])
    assert storage.stats() == [
        StatsRow("88.100.1", T0, resolutions=7, not_found=1, registrations=2),
        StatsRow("88.200", T0 + HOUR, resolutions=1),
    ]
    assert storage.stats("88.200") == [StatsRow("88.200", T0 + HOUR, resolutions=1)]
    assert storage.stats(since=T0 + HOUR) == [StatsRow("88.200", T0 + HOUR, resolutions=1)]


def test_service_counts_resolutions_and_registrations(storage: Storage) -> None:
    service = NodeService(storage, SiteInfo(servers=()), stats=StatsRecorder(Clock(T0)))
    service.prefixes.home_prefix("88.100.1")
    service.prefixes.put_record(rec("88.100.1/A"))
    result = service.bulk.register_many(
        [rec("88.100.1/A"), rec("88.100.1/B"), rec("88.100.1/C")], replace=False
    )
    assert (result.created, result.unchanged) == (2, 1)
    service.reads.resolve("88.100.1/a")
    service.reads.resolve("88.100.1/B")
    with pytest.raises(HandleNotFound):
        service.reads.resolve("88.100.1/NONE")
    with pytest.raises(ValuesNotFound):
        service.reads.resolve("88.100.1/A", indexes=[9])
    service.statistics.flush()
    assert service.statistics.totals() == [
        StatsRow("88.100.1", T0, resolutions=2, not_found=2, registrations=3)
    ]


def test_counts_survive_a_failed_flush(storage: Storage) -> None:
    class Failing:
        def add_stats(self, rows: object) -> None:
            raise StorageError("database away")

        def __getattr__(self, name: str) -> object:
            return getattr(storage, name)

    stats = StatsRecorder(Clock(T0))
    service = NodeService(Failing(), SiteInfo(servers=()), stats=stats)  # type: ignore[arg-type]
    stats.resolved("88.100.1")
    with pytest.raises(StorageError):
        service.statistics.flush()
    assert stats.drain() == [StatsRow("88.100.1", T0, resolutions=1)]


def test_prometheus_text_sums_hours_and_escapes_labels() -> None:
    text = prometheus_text(
        [
            StatsRow("88.100.1", T0, resolutions=2),
            StatsRow("88.100.1", T0 + HOUR, resolutions=3, registrations=1),
            StatsRow('we"ird', T0, not_found=1),
        ]
    )
    assert "# TYPE idnode_resolutions_total counter" in text
    assert 'idnode_resolutions_total{prefix="88.100.1"} 5' in text
    assert 'idnode_registrations_total{prefix="88.100.1"} 1' in text
    assert 'idnode_not_found_total{prefix="we\\"ird"} 1' in text


def test_prometheus_text_shows_reported_totals_per_source_and_prefix() -> None:
    text = prometheus_text(
        [],
        [
            ReportedRow("plant-a", StatsRow("88.100.1", T0, resolutions=2)),
            ReportedRow("plant-a", StatsRow("88.100.1", T0 + HOUR, resolutions=3)),
            ReportedRow("plant-b", StatsRow("88.100.1", T0, not_found=4)),
        ],
    )
    assert "# TYPE idnode_reported_resolutions_total counter" in text
    assert 'idnode_reported_resolutions_total{source="plant-a",prefix="88.100.1"} 5' in text
    assert 'idnode_reported_not_found_total{source="plant-b",prefix="88.100.1"} 4' in text


def test_reported_rows_replace_those_of_the_same_source_prefix_and_hour(
    storage: Storage,
) -> None:
    first = [
        ReportedRow("a", StatsRow("88.1", T0, 5, 1, 2), "300:0.NA/88.1", 10.0),
        ReportedRow("b", StatsRow("88.1", T0, 7), "300:0.NA/88.1", 10.0),
    ]
    storage.put_reported_stats(first)
    later = [
        ReportedRow("a", StatsRow("88.1", T0, 6, 1, 2), "300:0.NA/88.1", 20.0),
        ReportedRow("a", StatsRow("88.1", T0 + HOUR, 1), "300:0.NA/88.1", 20.0),
    ]
    storage.put_reported_stats(later)
    assert storage.reported_stats() == [*later, first[1]]
    assert storage.reported_stats(since=T0 + HOUR) == [later[1]]


def test_a_report_document_round_trips_and_bad_ones_are_named() -> None:
    rows = [
        ReportedRow("a", StatsRow("88.1", T0, 5, 1, 2)),
        ReportedRow("b", StatsRow("88.1.7", T0 + HOUR, registrations=9)),
    ]
    document = json.loads(json.dumps(report_to_json(rows)))
    assert document["rows"][0]["notFound"] == 1
    assert report_from_json(document) == rows
    with pytest.raises(InvalidValue, match=r"rows\[1\]\.resolutions must be"):
        report_from_json(
            {"rows": [document["rows"][0], document["rows"][1] | {"resolutions": "9"}]}
        )
    with pytest.raises(InvalidValue, match=r"rows\[0\] is not an object"):
        report_from_json({"rows": [[]]})
    with pytest.raises(InvalidValue, match="at most"):
        report_from_json({"rows": [document["rows"][0]] * 10_001})


def _resolutions(metrics: str) -> int:
    for line in metrics.splitlines():
        if line.startswith('idnode_resolutions_total{prefix="88.100.1"}'):
            return int(line.rsplit(" ", 1)[1])
    return 0


def test_server_counts_reach_metrics_and_cli(running_node: RunningNode, demo_dir: Path) -> None:
    url = f"{running_node.http}/metrics"
    before = _resolutions(httpx.get(url, timeout=5).text)
    for _ in range(3):
        httpx.get(f"{running_node.http}/api/handles/88.100.1/PUMP-0001", timeout=5)
    deadline = time.monotonic() + 10
    while _resolutions(httpx.get(url, timeout=5).text) < before + 3:
        assert time.monotonic() < deadline, "counts were not flushed"
        time.sleep(0.1)
    metrics = httpx.get(url, timeout=5)
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "# TYPE idnode_resolutions_total counter" in metrics.text

    result = CliRunner().invoke(app, ["stats", "-d", str(demo_dir), "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert sum(r["resolutions"] for r in rows if r["prefix"] == "88.100.1") >= before + 3
