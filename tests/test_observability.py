"""Observability of a served node (issue 25): `/metrics` adds up every worker's
request counts, latencies, database time, writes and queues; logs are JSON lines, one
per request at debug and one per write at info, and never hold a secret; the Grafana
dashboard in docs/ uses only metrics the node exports. A real `idnode serve
--workers 2`, real sockets, real signals."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from idnode.handle.codec import decode_message, encode_message
from idnode.handle.codes import OpCode, ResponseCode
from idnode.handle.messages import Message, ResolutionRequest
from idnode.handle.values import ValueReference
from tests.conftest import add_secret_admin, free_port, make_node, metric_sample, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "docs" / "grafana" / "idnode-dashboard.json"
#: Must never reach a log line: the writer's secret, a secret key it stores, a token
#: in a query string.
SECRET = "correct-horse-4271-battery"
STORED_SECRET = "stored-secret-9913-staple"
QUERY_SECRET = "query-token-5521-lantern"
WRITER = ValueReference("88.100.1/WRITER", 300)
UDP_RESOLUTIONS = 200
HTTP_READS = 30

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="workers are found through /proc"
)


@dataclass
class Served:
    data_dir: Path
    handle_port: int
    http: str
    process: subprocess.Popen[bytes]
    stderr: Path

    def log_lines(self) -> list[str]:
        return self.stderr.read_text(errors="replace").splitlines()

    def metrics(self) -> str:
        # A new connection each time: SO_REUSEPORT may hand it to either worker.
        response = httpx.get(f"{self.http}/metrics", timeout=10)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        return response.text


def _basic(user: str, secret: str) -> dict[str, str]:
    token = base64.b64encode(f"{user.replace(':', '%3A', 1)}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _until(check: object, seconds: float = 15.0) -> None:
    """Workers share their values every second: wait for them to add up."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            check()  # type: ignore[operator]
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
        else:
            return


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("observability")
    node = make_node(tmp / "node")
    add_secret_admin(node, WRITER, SECRET)
    node.close()
    handle, http = free_port(), free_port()
    stderr = tmp / "serve.err"
    command = [
        sys.executable, "-m", "idnode", "serve", "-d", str(tmp / "node"), "--workers", "2",
        "--handle-port", str(handle), "--http-port", str(http),
        "--log-format", "json", "--log-level", "debug",
    ]  # fmt: skip
    with (tmp / "serve.out").open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, start_new_session=True)
    try:
        wait_healthy(http, stderr)
        deadline = time.monotonic() + 60
        while b"idnode serving on" not in (tmp / "serve.out").read_bytes():
            assert time.monotonic() < deadline
            assert process.poll() is None
            time.sleep(0.1)
        yield Served(tmp / "node", handle, f"http://127.0.0.1:{http}", process, stderr)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)


class _Reply(asyncio.DatagramProtocol):
    def __init__(self, answer: asyncio.Future[bytes]) -> None:
        self.answer = answer

    def datagram_received(self, data: bytes, addr: object) -> None:
        if not self.answer.done():
            self.answer.set_result(data)


async def _resolve_over_udp(port: int, count: int) -> list[ResponseCode]:
    """``count`` resolutions, each from a new socket (a new source port: the kernel
    spreads them over both workers)."""
    loop = asyncio.get_running_loop()
    codes = []
    for request_id in range(1, count + 1):
        answer: asyncio.Future[bytes] = loop.create_future()

        transport, _ = await loop.create_datagram_endpoint(
            lambda answer=answer: _Reply(answer),  # type: ignore[misc]
            remote_addr=("127.0.0.1", port),
        )
        request = Message(
            OpCode.RESOLUTION, ResolutionRequest("0.NA/88.100.1"), request_id=request_id
        )
        transport.sendto(encode_message(request))
        try:
            codes.append(decode_message(await asyncio.wait_for(answer, 5)).response_code)
        finally:
            transport.close()
    return codes


@pytest.fixture(scope="module")
def traffic(served: Served) -> Served:
    """Resolutions over UDP and HTTP, two writes (one refused), and one of each kind
    of failure, made once for the tests of this module."""
    codes = asyncio.run(_resolve_over_udp(served.handle_port, UDP_RESOLUTIONS))
    assert codes == [ResponseCode.SUCCESS] * UDP_RESOLUTIONS
    with httpx.Client(base_url=served.http, timeout=10) as http:
        for n in range(HTTP_READS):
            # A query string may carry a token (IDIS clients send one): never logged.
            params = {"token": QUERY_SECRET} if n == 0 else {}
            assert http.get("/api/handles/0.NA/88.100.1", params=params).status_code == 200
        assert http.get("/api/handles/88.100.1/NOPE").status_code == 404
        values = {
            "values": [
                {"index": 1, "type": "URL", "data": "https://example.com/p/1"},
                {"index": 300, "type": "HS_SECKEY", "data": STORED_SECRET, "permissions": "1100"},
            ]
        }
        auth = _basic(f"{WRITER.index}:{WRITER.handle}", SECRET)
        put = http.put("/api/handles/88.100.1/LOGGED", json=values, headers=auth)
        assert put.status_code == 201, put.text
        wrong = _basic(f"{WRITER.index}:{WRITER.handle}", SECRET + "-wrong")
        assert http.put("/api/handles/88.100.1/NOT", json=values, headers=wrong).status_code in (
            401,
            403,
        )
        refused = http.put(
            "/api/handles/88.100.1/LOGGED?overwrite=false", json=values, headers=auth
        )
        assert refused.status_code == 409
    return served


def test_metrics_add_up_every_workers_requests(traffic: Served) -> None:
    def counted() -> None:
        text = traffic.metrics()
        udp = metric_sample(
            text,
            "idnode_request_duration_seconds_count",
            protocol="udp",
            operation="resolution",
            code="success",
        )
        assert udp == UDP_RESOLUTIONS
        route = "GET /api/handles/{handle:text}"
        http = {"protocol": "http", "operation": route}
        assert metric_sample(text, "idnode_request_duration_seconds_count", **http, code="200") == (
            HTTP_READS
        )
        assert metric_sample(text, "idnode_request_duration_seconds_count", **http, code="404") == 1
        # The +Inf bucket of a histogram is its count; the sum is time spent.
        assert (
            metric_sample(
                text,
                "idnode_request_duration_seconds_bucket",
                protocol="udp",
                operation="resolution",
                code="success",
                le="+Inf",
            )
            == UDP_RESOLUTIONS
        )
        assert (
            0
            < metric_sample(
                text,
                "idnode_request_duration_seconds_sum",
                protocol="udp",
                operation="resolution",
                code="success",
            )
            < UDP_RESOLUTIONS * 1.0
        )
        assert metric_sample(text, "idnode_writes_total", operation="create", outcome="ok") == 1
        assert (
            metric_sample(
                text, "idnode_writes_total", operation="create", outcome="handle_already_exists"
            )
            == 1
        )
        assert metric_sample(text, "idnode_database_duration_seconds_count", kind="write") >= 2
        assert metric_sample(text, "idnode_database_duration_seconds_count", kind="read") > 0
        assert metric_sample(text, "idnode_workers", version=_version()) == 2
        for queue in ("database_reads", "database_writes", "udp_pending", "tcp_connections"):
            assert f'idnode_queue_depth{{queue="{queue}"}}' in text
        assert metric_sample(text, "idnode_dropped_requests_total", reason="rate_limited") == 0

    _until(counted)
    # Both workers answered requests, so the sum above is really a sum of two.
    pids = {json.loads(line)["pid"] for line in _events(traffic, "request", protocol="udp")}
    assert len(pids) == 2


def test_a_line_per_request_at_debug_and_a_line_per_write_at_info(traffic: Served) -> None:
    lines = traffic.log_lines()
    for line in lines:  # every line is one JSON object, uvicorn's own lines too
        record = json.loads(line)
        assert {"time", "level", "logger", "message", "pid"} <= record.keys()
    udp = _events(traffic, "request", protocol="udp")
    assert len(udp) == UDP_RESOLUTIONS
    one = json.loads(udp[0])
    assert one["operation"] == "resolution"
    assert one["code"] == "success"
    assert one["handle"] == "0.NA/88.100.1"
    assert one["client"].startswith("127.0.0.1:")
    assert one["level"] == "debug"
    writes = [json.loads(line) for line in _events(traffic, "write")]
    made = [w for w in writes if w["handle"] == "88.100.1/LOGGED" and w["outcome"] == "ok"]
    assert len(made) == 1
    assert made[0]["level"] == "info"
    assert made[0]["operation"] == "create"
    assert made[0]["actor"] == f"{WRITER.index}:{WRITER.handle}"
    assert made[0]["origin"].startswith("http 127.0.0.1")
    assert made[0]["indexes"] == [1, 300]
    refused = [w for w in writes if w["outcome"] == "handle_already_exists"]
    assert len(refused) == 1


def test_no_log_line_holds_a_secret(traffic: Served) -> None:
    text = traffic.stderr.read_text(errors="replace")
    encoded = base64.b64encode(f"{WRITER.index}:{WRITER.handle}:{SECRET}".encode()).decode()
    for secret in (SECRET, STORED_SECRET, QUERY_SECRET, encoded, "Authorization", "Basic "):
        assert secret not in text


def test_counters_never_go_back_across_a_rolling_restart(traffic: Served) -> None:
    labels = {"protocol": "udp", "operation": "resolution", "code": "success"}

    def all_counted() -> None:
        counted = metric_sample(
            traffic.metrics(), "idnode_request_duration_seconds_count", **labels
        )
        assert counted == UDP_RESOLUTIONS

    _until(all_counted)
    # Scrape all along, as Prometheus would, from before the signal to after the
    # restart, while resolutions go on: whichever worker answers, old or new, no
    # counter reads less than at the scrape before.
    seen: list[tuple[float, float]] = []
    stop = threading.Event()

    def scrape() -> None:
        while not stop.is_set():
            text = traffic.metrics()
            udp = metric_sample(text, "idnode_request_duration_seconds_count", **labels)
            scrapes = metric_sample(
                text,
                "idnode_request_duration_seconds_count",
                protocol="http",
                operation="GET /metrics",
                code="200",
            )
            seen.append((udp, scrapes))
            time.sleep(0.05)

    scraper = threading.Thread(target=scrape)
    scraper.start()
    sent = 0
    try:
        time.sleep(0.5)
        os.kill(traffic.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + 60
        while "rolling restart done" not in traffic.stderr.read_text(errors="replace"):
            assert time.monotonic() < deadline
            codes = asyncio.run(_resolve_over_udp(traffic.handle_port, 5))
            assert codes == [ResponseCode.SUCCESS] * 5
            sent += 5
        time.sleep(1.5)
    finally:
        stop.set()
        scraper.join()
    assert len(seen) > 20
    for name, series in (("udp", [u for u, _ in seen]), ("scrapes", [m for _, m in seen])):
        assert series == sorted(series), name

    def kept() -> None:
        text = traffic.metrics()
        assert metric_sample(text, "idnode_request_duration_seconds_count", **labels) == (
            UDP_RESOLUTIONS + sent
        )
        # The replaced workers no longer count as serving.
        assert metric_sample(text, "idnode_workers", version=_version()) == 2

    _until(kept)
    # The replaced workers' files were folded into one.
    assert (traffic.data_dir / "metrics" / "retired.json").exists()


def test_the_grafana_dashboard_uses_only_metrics_the_node_exports(traffic: Served) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exported = set(re.findall(r"^# TYPE (\w+) (\w+)$", traffic.metrics(), re.MULTILINE))
    names = {name for name, _ in exported}
    histograms = {name for name, kind in exported if kind == "histogram"}
    counters = {name + "_total" for name, kind in exported if kind == "counter"}
    usable = names | counters
    usable |= {f"{h}_{suffix}" for h in histograms for suffix in ("bucket", "sum", "count")}
    expressions = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    assert len(expressions) >= 10
    used = {name for expr in expressions for name in re.findall(r"\bidnode_\w+", expr)}
    assert used, "the dashboard queries nothing of idnode"
    assert used <= usable, sorted(used - usable)
    # Every panel reads from the dashboard's data source variable and has a query.
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"]


def _events(served: Served, event: str, **fields: str) -> list[str]:
    found = []
    for line in served.log_lines():
        record = json.loads(line)
        if record.get("event") == event and all(record.get(k) == v for k, v in fields.items()):
            found.append(line)
    return found


def _version() -> str:
    from idnode import __version__

    return __version__
