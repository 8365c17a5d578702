"""Starting `idnode serve` for benchmarks and tests, and finding its workers in /proc."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

__all__ = ["children", "cmdline", "free_port", "spawned_workers", "start_server"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data_dir: Path, workers: int) -> tuple[subprocess.Popen[bytes], int, int]:
    """`idnode serve` on free ports, once its HTTP port answers: (process, handle, http)."""
    handle_port, http_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "idnode",
            "serve",
            "--data-dir",
            str(data_dir),
            "--workers",
            str(workers),
            "--handle-port",
            str(handle_port),
            "--http-port",
            str(http_port),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=1)
        except httpx.TransportError:
            time.sleep(0.2)
        else:
            return proc, handle_port, http_port
    proc.kill()
    proc.wait()
    raise RuntimeError(f"idnode serve did not answer on port {http_port} within 60 s")


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def spawned_workers(pid: int) -> list[int]:
    """The multiprocessing workers `idnode serve --workers N` started."""
    return [child for child in children(pid) if b"spawn_main" in cmdline(child)]
