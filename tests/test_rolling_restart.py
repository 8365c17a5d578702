"""`idnode serve --workers 2` under its supervisor (issue 25): a rolling restart on
SIGHUP answers every UDP and TCP resolution sent across it, a killed worker is
replaced, a configuration that does not load is not applied. Real processes, real
signals, real sockets; the load is a client with 32 requests in flight and no retries,
so a request the server lost shows as unanswered."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from idnode.handle.codec import decode_message, encode_message
from idnode.handle.codes import OpCode, ResponseCode
from idnode.handle.messages import Message, ResolutionRequest
from tests.conftest import free_port, make_node, serve_process, wait_healthy

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc to find the workers"
)

HANDLE = "0.NA/88.100.1"
IN_FLIGHT = 32
#: A request not answered within this is lost: the client never retries.
ANSWER_WITHIN = 3.0


@dataclass
class Node:
    data_dir: Path
    handle_port: int
    http_port: int
    process: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def workers(self) -> set[int]:
        """The worker processes (not spawn's resource tracker, which runs no idnode)."""
        found = set()
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                try:
                    command = Path(f"/proc/{child}/cmdline").read_bytes()
                except FileNotFoundError:
                    continue
                if b"resource_tracker" not in command:
                    found.add(int(child))
        return found

    def wait_for_log(self, text: str, seconds: float = 60.0, *, count: int = 1) -> None:
        deadline = time.monotonic() + seconds
        while self.log_text().count(text) < count:
            assert self.process.poll() is None, self.log_text()
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.log_text()}"
            time.sleep(0.1)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    data_dir = tmp_path / "node"
    make_node(data_dir).close()
    handle, http = free_port(), free_port()
    log = tmp_path / "serve.log"
    options = ("--workers", "2", "--handle-port", str(handle), "--http-port", str(http))
    process = serve_process(data_dir, *options, log=log, new_session=True)
    running = Node(data_dir, handle, http, process, log)
    try:
        wait_healthy(http, log)
        running.wait_for_log("idnode serving on")  # every worker is ready
        yield running
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@dataclass
class Load:
    """Counts of a load run: every request sent is answered, or counted lost."""

    sent: int = 0
    answered: int = 0
    lost: list[int] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _request(request_id: int) -> bytes:
    return encode_message(
        Message(OpCode.RESOLUTION, ResolutionRequest(HANDLE), request_id=request_id)
    )


class _Replies(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiting: dict[int, asyncio.Future[Message]] = {}

    def datagram_received(self, data: bytes, addr: object) -> None:
        reply = decode_message(data)
        future = self.waiting.pop(reply.request_id, None)
        if future is not None and not future.done():
            future.set_result(reply)


async def _udp_load(port: int, load: Load, until: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    transport, replies = await loop.create_datagram_endpoint(
        _Replies, remote_addr=("127.0.0.1", port)
    )
    counter = iter(range(1, 2**31))

    async def one_after_another() -> None:
        while not until.is_set():
            request_id = next(counter)
            future = loop.create_future()
            replies.waiting[request_id] = future
            transport.sendto(_request(request_id))
            load.sent += 1
            try:
                reply = await asyncio.wait_for(future, ANSWER_WITHIN)
            except TimeoutError:
                replies.waiting.pop(request_id, None)
                load.lost.append(request_id)
                continue
            if reply.response_code == ResponseCode.SUCCESS:
                load.answered += 1
            else:
                load.failed.append(f"udp {request_id}: {reply.response_code!r}")

    try:
        await asyncio.gather(*(one_after_another() for _ in range(IN_FLIGHT)))
    finally:
        transport.close()


async def _tcp_load(port: int, load: Load, until: asyncio.Event) -> None:
    """Resolutions over TCP, a new connection each, as Handle clients make them."""
    request_id = 0
    while not until.is_set():
        request_id += 1
        load.sent += 1
        writer = None
        try:
            async with asyncio.timeout(ANSWER_WITHIN):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(_request(request_id))
                envelope = await reader.readexactly(20)
                body = await reader.readexactly(int.from_bytes(envelope[16:20], "big"))
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
            load.failed.append(f"tcp {request_id}: {exc!r}")
            continue
        finally:  # a connection a killed worker dropped mid-answer is closed too
            if writer is not None:
                writer.close()
        reply = decode_message(envelope + body)
        if reply.response_code == ResponseCode.SUCCESS:
            load.answered += 1
        else:
            load.failed.append(f"tcp {request_id}: {reply.response_code!r}")


def _under_load(node: Node, during: object, *, settle: float = 1.0) -> tuple[Load, Load]:
    """UDP and TCP load from before ``during()`` (called in a thread) until
    ``settle`` seconds after it returned."""
    udp, tcp = Load(), Load()

    async def run() -> None:
        until = asyncio.Event()
        loads = asyncio.gather(
            _udp_load(node.handle_port, udp, until), _tcp_load(node.handle_port, tcp, until)
        )
        await asyncio.sleep(settle)
        await asyncio.to_thread(during)  # type: ignore[arg-type]
        await asyncio.sleep(settle)
        until.set()
        await loads

    asyncio.run(run())
    return udp, tcp


def test_a_rolling_restart_answers_every_request_sent_across_it(node: Node) -> None:
    before = node.workers()
    assert len(before) == 2, node.log_text()

    def restart() -> None:
        os.kill(node.process.pid, signal.SIGHUP)
        node.wait_for_log("rolling restart done")

    udp, tcp = _under_load(node, restart)
    after = node.workers()
    assert len(after) == 2, node.log_text()
    assert not after & before, (before, after)
    assert udp.lost == [], len(udp.lost)
    assert udp.failed == [], udp.failed[:5]
    assert tcp.failed == [], tcp.failed[:5]
    # Enough traffic crossed the restart for a loss to show: each old worker had
    # requests of its own in flight when it was told to stop.
    print(f"udp {udp.sent} sent, tcp {tcp.sent} sent")
    assert udp.answered == udp.sent > 1000
    assert tcp.answered == tcp.sent > 50
    assert node.log_text().count("replaced by pid") == 2


def test_a_killed_worker_is_replaced_and_the_node_goes_on(node: Node) -> None:
    victim = min(node.workers())

    def kill() -> None:
        os.kill(victim, signal.SIGKILL)
        node.wait_for_log("starting another")
        deadline = time.monotonic() + 60
        while len(node.workers()) < 2:
            assert time.monotonic() < deadline, node.log_text()
            time.sleep(0.1)
        wait_healthy(node.http_port, node.log)

    # Requests hashed to the dead worker's sockets wait there for the new one; with
    # no retries, those sent while it was away for longer than ANSWER_WITHIN would be
    # lost: the load shows how many, the test does not hide them.
    udp, _ = _under_load(node, kill)
    assert victim not in node.workers()
    assert f"(pid {victim}) exited with -9; starting another" in node.log_text()
    assert udp.answered > 0
    assert udp.failed == []


def test_a_configuration_that_does_not_load_is_not_applied(node: Node) -> None:
    config_file = node.data_dir / "idnode.toml"
    good = config_file.read_text()
    before = node.workers()
    config_file.write_text(good + "\nworkers = \n")  # not TOML
    os.kill(node.process.pid, signal.SIGHUP)
    node.wait_for_log("not restarting: the configuration does not load")
    assert node.workers() == before
    wait_healthy(node.http_port, node.log)
    # Settings bound to the sockets wait for a full restart; the others apply.
    config_file.write_text(good + '\nhost = "127.0.0.2"\n')
    os.kill(node.process.pid, signal.SIGHUP)
    node.wait_for_log("rolling restart done")
    assert "host change only with a full restart; keeping host=127.0.0.1" in node.log_text()
    assert len(node.workers()) == 2
    wait_healthy(node.http_port, node.log)


def test_sigterm_stops_every_worker_and_exits_cleanly(node: Node) -> None:
    workers = node.workers()
    os.kill(node.process.pid, signal.SIGTERM)
    assert node.process.wait(timeout=30) == 0, node.log_text()
    assert "stopping the workers (SIGTERM)" in node.log_text()
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
