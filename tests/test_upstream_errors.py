"""A recursive node whose upstream servers fail answers as a gateway does (issue 21):
502 when they refuse, 504 when they are silent, naming the servers it tried. Real
sockets: one port nobody listens on, one that listens and never answers."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from idnode.config import Config
from idnode.node import init_node
from tests.conftest import free_port, running


def _recursive(tmp_path: Path, root: str) -> Config:
    settings: dict[str, object] = {
        "handle_port": 0,
        "http_port": 0,
        "role": "recursive",
        "root_servers": root,
    }
    config = Config(data_dir=tmp_path).replace(**settings)
    init_node(config, None, settings).close()
    return config


def test_upstream_refusing_gives_502_naming_the_server(tmp_path: Path) -> None:
    closed = free_port()
    with running(_recursive(tmp_path, f"127.0.0.1:{closed}")) as node:
        reply = httpx.get(f"{node.http}/api/handles/88.999/NOWHERE", timeout=30)
    assert reply.status_code == 502
    assert reply.headers["content-type"].startswith("application/problem+json")
    problem = reply.json()
    assert problem["status"] == 502
    assert f"127.0.0.1:{closed}" in problem["detail"]


def test_upstream_silent_gives_504_naming_the_server(
    tmp_path: Path, silent: tuple[tuple[str, int], socket.socket]
) -> None:
    silent_port = silent[0][1]
    with running(_recursive(tmp_path, f"127.0.0.1:{silent_port}")) as node:
        reply = httpx.get(f"{node.http}/api/handles/88.999/NOWHERE", timeout=30)
    assert reply.status_code == 504
    problem = reply.json()
    assert f"answer from 127.0.0.1:{silent_port} in " in problem["detail"]
