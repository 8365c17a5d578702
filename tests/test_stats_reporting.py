"""Nodes reporting their statistics up the hierarchy: enterprise 88.100.1 reports to
secondary 88.100, which passes its own and its children's totals on to top-level 88.

Real servers on loopback, each with its own SQLite database; the children prove their
administrator keys, which the parents learnt from ``idnode prefix delegate --admin-key``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from idnode.cli import app
from idnode.client import HandleClient
from idnode.config import Config, load_config
from idnode.demo import demo_records
from idnode.node import init_node, open_node
from idnode.reporting import ReportFailed, post_report, send_report
from idnode.stats import HOUR, ReportedRow, StatsRow
from tests.conftest import RunningNode

runner = CliRunner()


@dataclass
class Chain:
    tmp: Path
    nodes: dict[str, RunningNode]

    def start(self, name: str, role: str, prefix: str, **settings: object) -> RunningNode:
        settings = {"handle_port": 0, "http_port": 0, "role": role, "node_name": name} | settings
        config = Config(data_dir=self.tmp / name).replace(**settings)
        node = init_node(config, prefix, settings)
        if name == "enterprise":
            node.service.bulk.register_many(demo_records(5), replace=True)
        node.close()
        # As `idnode serve` would: the settings init wrote (admin_handle among them).
        served = load_config(self.tmp / name, environ={}).replace(stats_flush_seconds=0.1)
        self.nodes[name] = RunningNode(served)
        return self.nodes[name]

    def delegate(self, parent: str, prefix: str, child: str) -> None:
        result = runner.invoke(
            app,
            [
                "prefix", "delegate", prefix, "-d", str(self.tmp / parent),
                "--site", f"127.0.0.1:{self.nodes[child].ports.handle}",
                "--admin-key", str(self.tmp / child / "admin_pub.pem"),
            ],
        )  # fmt: skip
        assert result.exit_code == 0, result.output

    def config(self, name: str) -> Config:
        return self.nodes[name].config

    def reported(self, name: str) -> list[ReportedRow]:
        node = open_node(self.config(name))
        try:
            return node.service.statistics.reported()
        finally:
            node.close()


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    c = Chain(tmp_path, {})
    try:
        top = c.start("top", "top-level", "88")
        secondary = c.start("secondary", "secondary", "88.100", parent_url=top.http)
        c.start("enterprise", "enterprise", "88.100.1", parent_url=secondary.http)
        c.delegate("top", "88.100", "secondary")
        c.delegate("secondary", "88.100.1", "enterprise")
        yield c
    finally:
        for node in c.nodes.values():
            node.stop()


def _resolve_some(chain: Chain) -> None:
    """Three resolutions and one unknown handle at the enterprise node, then wait for
    the server to flush its counts to its database."""
    client = HandleClient("127.0.0.1", chain.nodes["enterprise"].ports.handle)
    for suffix in ("PUMP-0001", "PUMP-0002", "PUMP-0001", "NO-SUCH-PUMP"):
        client.resolve(f"88.100.1/{suffix}")

    def flushed() -> bool:
        node = open_node(chain.config("enterprise"))
        try:
            rows = node.service.statistics.totals("88.100.1")
        finally:
            node.close()
        return sum(r.resolutions + r.not_found for r in rows) == 4

    _until(flushed, "the enterprise node to flush its counts")


def _reported_totals(rows: list[ReportedRow], source: str, prefix: str) -> tuple[int, int]:
    mine = [r.stats for r in rows if r.source == source and r.stats.prefix == prefix]
    return sum(r.resolutions for r in mine), sum(r.not_found for r in mine)


def test_totals_travel_up_the_hierarchy_and_resending_counts_nothing_twice(
    chain: Chain,
) -> None:
    _resolve_some(chain)
    result = runner.invoke(app, ["report-stats", "-d", str(chain.tmp / "enterprise")])
    assert result.exit_code == 0, result.output
    assert f"to {chain.nodes['secondary'].http}" in result.output
    assert _reported_totals(chain.reported("secondary"), "enterprise", "88.100.1") == (3, 1)

    # The parent's /metrics and /api/stats show them per source and prefix.
    metrics = httpx.get(chain.nodes["secondary"].http + "/metrics").text
    assert 'idnode_reported_resolutions_total{source="enterprise",prefix="88.100.1"} 3' in metrics
    assert 'idnode_reported_not_found_total{source="enterprise",prefix="88.100.1"} 1' in metrics
    body = httpx.get(chain.nodes["secondary"].http + "/api/stats").json()
    assert {(r["source"], r["prefix"]) for r in body["reported"]} == {("enterprise", "88.100.1")}

    # A report carries totals: sending it again replaces, it does not add.
    again = runner.invoke(app, ["report-stats", "-d", str(chain.tmp / "enterprise")])
    assert again.exit_code == 0, again.output
    assert _reported_totals(chain.reported("secondary"), "enterprise", "88.100.1") == (3, 1)

    # The secondary passes its children's totals on, under their own names.
    up = runner.invoke(app, ["report-stats", "-d", str(chain.tmp / "secondary")])
    assert up.exit_code == 0, up.output
    assert _reported_totals(chain.reported("top"), "enterprise", "88.100.1") == (3, 1)

    shown = runner.invoke(app, ["stats", "-d", str(chain.tmp / "top"), "--reported", "--json"])
    assert shown.exit_code == 0, shown.output
    assert '"source": "enterprise"' in shown.output


def test_a_serving_node_reports_by_itself(chain: Chain) -> None:
    # Restart the enterprise node reporting every 0.2 s.
    chain.nodes["enterprise"].stop()
    config = chain.config("enterprise").replace(stats_report_seconds=0.2)
    chain.nodes["enterprise"] = RunningNode(config)
    _resolve_some(chain)
    _until(
        lambda: _reported_totals(chain.reported("secondary"), "enterprise", "88.100.1") == (3, 1),
        "the enterprise node's own report",
    )


def test_a_node_may_report_only_for_prefixes_delegated_to_it(chain: Chain) -> None:
    hour = int(time.time()) // HOUR * HOUR
    enterprise = chain.config("enterprise")
    theirs = [
        ReportedRow("enterprise", StatsRow("88.100.1", hour, resolutions=5)),
        ReportedRow("enterprise", StatsRow("88.100.2", hour, resolutions=7)),
    ]
    with pytest.raises(ReportFailed, match=r"may not report statistics for 88\.100\.2.*403"):
        send_report(enterprise, theirs)
    assert chain.reported("secondary") == []  # all or nothing

    # Its parent's own prefix is not the enterprise's either.
    with pytest.raises(ReportFailed, match="403"):
        send_report(enterprise, [ReportedRow("enterprise", StatsRow("88.100", hour))])
    # Nor may the secondary report for its parent's prefix at the top-level node.
    with pytest.raises(ReportFailed, match="may not report statistics for 88 "):
        send_report(chain.config("secondary"), [ReportedRow("s", StatsRow("88", hour))])
    # Sub-prefixes of its own are.
    assert send_report(enterprise, [ReportedRow("e", StatsRow("88.100.1.7", hour))]) == 1


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"rows": "many"}, 400, 'a statistics report is {"rows": [...]}'),
        ({"rows": [{"source": "x", "prefix": "88.100.1", "hour": 7}]}, 400, "start of an hour"),
        ({"rows": [{"source": "x", "prefix": "88.100.1", "hour": -3600}]}, 400, "non-negative"),
        ({"rows": [{"source": "", "prefix": "88.100.1", "hour": 0}]}, 400, "source must be"),
        ({"rows": [{"source": "x", "prefix": "88.100.1", "hour": 0, "notFound": 1.5}]}, 400,
         "notFound must be"),
    ],
)  # fmt: skip
def test_malformed_reports_get_precise_problems(
    chain: Chain, body: object, status: int, message: str
) -> None:
    anonymous = httpx.post(chain.nodes["secondary"].http + "/api/stats/reports", json=body)
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    with pytest.raises(ReportFailed) as failed:
        post_report(chain.config("enterprise"), body)
    assert f"(HTTP {status})" in failed.value.message
    assert message in failed.value.message
    assert chain.reported("secondary") == []


def test_reporting_needs_a_parent_and_a_reachable_one(chain: Chain, tmp_path: Path) -> None:
    result = runner.invoke(app, ["report-stats", "-d", str(chain.tmp / "top")])
    assert result.exit_code == 1
    assert "set parent_url" in result.output
    gone = runner.invoke(
        app, ["report-stats", "-d", str(chain.tmp / "enterprise"), "--parent", "http://127.0.0.1:9"]
    )
    assert gone.exit_code == 1
    assert "cannot reach the parent node at http://127.0.0.1:9" in gone.output
