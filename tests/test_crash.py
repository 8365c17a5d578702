"""kill -9 during acknowledged writes (issue 20): every write a client was told
succeeded is there after a restart, and the database passes its integrity check.

A real `idnode serve` process, real HTTP writes from several threads, SIGKILL at a
moment the test does not choose, repeated; then the node is opened again and read.
"""

from __future__ import annotations

import base64
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from idnode.config import Config
from idnode.handle.values import ValueReference
from idnode.node import open_node
from tests.conftest import add_secret_admin, free_port, make_node, serve_process, wait_healthy

ADMIN = ValueReference("88.100.1/CRASH-ADMIN", 300)
SECRET = "crash-s3cret"
ROUNDS = 3
WRITERS = 4

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")


def _start(data_dir: Path, http: int) -> subprocess.Popen[bytes]:
    process = serve_process(
        data_dir,
        "--handle-port",
        str(free_port()),
        "--http-port",
        str(http),
        log=data_dir / "serve.log",
    )
    try:
        wait_healthy(http, data_dir / "serve.log")
    except AssertionError:
        process.kill()
        raise
    return process


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    node = make_node(data_dir)
    add_secret_admin(node, ADMIN, SECRET)
    node.close()
    user = f"{ADMIN.index}%3A{ADMIN.handle}"
    auth = {"Authorization": "Basic " + base64.b64encode(f"{user}:{SECRET}".encode()).decode()}
    acknowledged: list[str] = []
    lock = threading.Lock()

    for round_ in range(ROUNDS):
        http = free_port()
        process = _start(data_dir, http)
        stop = threading.Event()

        def write(
            writer: int, round_: int = round_, http: int = http, stop: threading.Event = stop
        ) -> None:
            n = 0
            with httpx.Client(base_url=f"http://127.0.0.1:{http}", timeout=5) as client:
                while not stop.is_set():
                    handle = f"88.100.1/CRASH-{round_}-{writer}-{n}"
                    body = {"values": [{"index": 1, "type": "URL", "data": f"https://e/{n}"}]}
                    try:
                        r = client.put(f"/api/handles/{handle}", json=body, headers=auth)
                    except httpx.HTTPError:
                        return  # the server is gone: this write was never acknowledged
                    if r.status_code == 201:
                        with lock:
                            acknowledged.append(handle)
                    n += 1

        threads = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
        for t in threads:
            t.start()
        time.sleep(0.8 + 0.3 * round_)  # writes in flight when the signal comes
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        stop.set()
        for t in threads:
            t.join(timeout=10)

    assert len(acknowledged) > 50  # the test did write under load
    database = data_dir / "idnode.db"
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    reopened = open_node(Config(data_dir=data_dir))
    try:
        missing = [h for h in acknowledged if not reopened.service.reads.exists(h)]
    finally:
        reopened.close()
    assert missing == []
