"""`idnode serve` as processes: one per data directory, workers that end with their
parent (issue 20 item 3). Real processes, real signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from idnode.config import Config
from tests.conftest import RunningNode, free_port, make_node, serve_process

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc to find the workers"
)


def _serve(data_dir: Path, handle: int, http: int) -> subprocess.Popen[bytes]:
    options = ("--workers", "2", "--handle-port", str(handle), "--http-port", str(http))
    log = data_dir / f"serve-{handle}.log"
    return serve_process(data_dir, *options, log=log, new_session=True)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie no one has reaped yet is dead


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _wait_until(predicate: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    make_node(tmp_path / "node").close()
    return tmp_path / "node"


def test_workers_end_with_a_killed_parent_and_a_second_serve_is_refused(data_dir: Path) -> None:
    handle, http = free_port(), free_port()
    first = _serve(data_dir, handle, http)
    workers: list[int] = []
    try:
        assert _wait_until(lambda: _healthy(http), 30), _log(data_dir, handle)
        workers = [c for c in _children(first.pid) if _alive(c)]
        assert len(workers) >= 2  # (spawn also starts a resource tracker)
        # A second serve on the same directory is refused while the first runs, even
        # on other ports.
        other = free_port()
        second = _serve(data_dir, other, free_port())
        try:
            assert second.wait(timeout=30) != 0
        finally:
            if second.poll() is None:  # it started beside the first: stop it
                os.killpg(second.pid, signal.SIGKILL)
                second.wait(timeout=10)
        assert "another `idnode serve` is running" in _log(data_dir, other)
        # kill -9 of the parent: its workers go too, and stop answering.
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        assert _wait_until(lambda: not any(_alive(w) for w in workers), 10), workers
        assert _wait_until(lambda: not _healthy(http), 5)
        # Now a new serve starts on that directory.
        third = _serve(data_dir, handle, http)
        try:
            assert _wait_until(lambda: _healthy(http), 30)
        finally:
            os.killpg(third.pid, signal.SIGTERM)
            third.wait(timeout=20)
    finally:
        with_children = [first.pid, *workers]
        for pid in with_children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _log(data_dir: Path, handle: int) -> str:
    return (data_dir / f"serve-{handle}.log").read_text(errors="replace")


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_serve_on_a_directory_that_is_not_a_node_says_so(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "idnode", "serve", "-d", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "is not an idnode data directory" in result.stderr
    assert not (tmp_path / "missing").exists()


def test_a_connection_accepted_just_before_a_stop_is_answered(tmp_path: Path) -> None:
    """A client connects, the worker is told to stop, then the request arrives: it is
    answered (uvicorn alone would close the still-silent connection at once)."""
    node = make_node(tmp_path / "node")
    node.close()
    served = RunningNode(Config(data_dir=tmp_path / "node", handle_port=0, http_port=0))
    try:
        with socket.create_connection(("127.0.0.1", served.ports.http), timeout=10) as conn:
            time.sleep(0.2)  # accepted by the worker's loop
            stopping = threading.Thread(target=served.stop)
            stopping.start()
            time.sleep(0.15)  # the stop has begun; the request is "still on the way"
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: node\r\n\r\n")
            answer = b""
            while chunk := conn.recv(4096):
                answer += chunk
            stopping.join(30)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert b'"status":"ok"' in answer
    finally:
        served.stop()
