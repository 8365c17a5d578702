"""Shared fixtures: storage backends, a node on real sockets, service requirements."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, settings

from idnode.config import Config
from idnode.demo import demo_records
from idnode.domain import HandleRecord
from idnode.handle.values import HandleValue, Permission, ValueReference
from idnode.handle.valuetypes import AdminPermission, AdminValue
from idnode.keys import load_private_key
from idnode.node import Node, init_node
from idnode.server.runner import BoundPorts, serve
from idnode.storage import SQLiteStorage, Storage

# Example generation and timing vary with the machine; CI machines are slow and shared.
# Correctness properties still run in full, only the timing checks are off.
settings.register_profile(
    "idnode", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=200
)
settings.load_profile("idnode")

POSTGRES_URL = os.environ.get("IDNODE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_admin(sql: str) -> None:
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(sql)
    except psycopg.OperationalError as exc:
        require_service("PostgreSQL", f"cannot connect to {POSTGRES_URL}: {exc}")


@pytest.fixture
def postgres_url(tmp_path: Path) -> Iterator[str]:
    """A URL whose connections use a fresh schema of their own: tests never share tables."""
    name = f"idnode_test_{tmp_path.name.lower()}"
    _postgres_admin(f'DROP SCHEMA IF EXISTS "{name}" CASCADE; CREATE SCHEMA "{name}"')
    sep = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{name}"
    _postgres_admin(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _postgres(request: pytest.FixtureRequest, tmp: Path) -> Storage:
    from idnode.storage.postgres import PostgresStorage

    url: str = request.getfixturevalue("postgres_url")
    return PostgresStorage(url)


# One factory per backend; every contract test runs against each.
STORAGE_FACTORIES: dict[str, Callable[[pytest.FixtureRequest, Path], Storage]] = {
    "sqlite": lambda request, tmp: SQLiteStorage(tmp / "contract.db"),
    "postgresql": _postgres,
}


def require_service(name: str, reason: str) -> None:
    """Skip when a server is missing, unless CI said it must be there."""
    if os.environ.get("IDNODE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{name} is required (IDNODE_REQUIRE_SERVICES=1) but {reason}")
    pytest.skip(f"{name} not available: {reason}")


@pytest.fixture(params=sorted(STORAGE_FACTORIES))
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    backend = STORAGE_FACTORIES[request.param](request, tmp_path)
    yield backend
    backend.close()


def make_node(data_dir: Path, **settings: object) -> Node:
    config = Config(data_dir=data_dir, handle_port=0, http_port=0).replace(**settings)
    return init_node(config, "88.100.1", {"handle_port": 0, "http_port": 0} | settings)


def idnode(
    *args: str, secret: str | None = None, password: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m idnode ARGS`` as a user runs it: a process of its own, no terminal
    to prompt on, and none of idnode's secrets from the caller's environment but the
    ones given (``$IDNODE_SECRET``, ``$IDNODE_PASSWORD``)."""
    env = {k: v for k, v in os.environ.items() if k not in ("IDNODE_SECRET", "IDNODE_PASSWORD")}
    if secret is not None:
        env["IDNODE_SECRET"] = secret
    if password is not None:
        env["IDNODE_PASSWORD"] = password
    return subprocess.run(
        [sys.executable, "-m", "idnode", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def silent() -> Iterator[tuple[tuple[str, int], socket.socket]]:
    """A server that neither answers nor refuses (a host gone, a hung process, a
    firewall that drops): a UDP socket nobody reads and a TCP listener that never
    accepts, on one port; its address and the UDP socket (to see what reached it)."""
    # The UDP port the kernel picks may be taken for TCP (a connection of an earlier
    # test in TIME_WAIT, say): pick again until one is free for both.
    for _ in range(50):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket()
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            tcp.bind(("127.0.0.1", port))
        except OSError:
            udp.close()
            tcp.close()
            continue
        with udp, tcp:
            tcp.listen()
            yield ("127.0.0.1", port), udp
        return
    raise RuntimeError("no port free for both UDP and TCP in 50 tries")


def free_port() -> int:
    """A port free on 127.0.0.1 now for both TCP and UDP (for servers that need fixed
    ports: a Handle server binds both on its port)."""
    for _ in range(50):
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free for both TCP and UDP in 50 tries")


def serve_process(
    data_dir: Path, *options: str, log: Path, new_session: bool = False
) -> subprocess.Popen[bytes]:
    """``idnode serve -d DATA_DIR OPTIONS`` as a process of its own, its output
    appended to ``log`` (a pipe nobody reads would fill and stall the server);
    ``new_session``: in a process group of its own, to signal with its workers."""
    command = [sys.executable, "-m", "idnode", "serve", "-d", str(data_dir), *options]
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=out, start_new_session=new_session)


def wait_healthy(http_port: int, log: Path, seconds: float = 30.0) -> None:
    """Until a node started as a process answers ``/healthz``; fails with its ``log``
    when it has not within ``seconds``."""
    import httpx

    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=1).is_success:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, log.read_text(errors="replace")
        time.sleep(0.1)


def rsa_key(path: Path) -> rsa.RSAPrivateKey:
    """The RSA key in ``path`` (nodes made by the tests have RSA keys)."""
    key = load_private_key(path)
    assert isinstance(key, rsa.RSAPrivateKey), f"{path} does not hold an RSA key"
    return key


def add_secret_admin(node: Node, identity: ValueReference, secret: str) -> None:
    """Make ``identity`` an administrator of 88.100.1 (every permission, through an
    HS_ADMIN value of its prefix handle) that proves itself with ``secret``: what HTTP
    Basic needs."""
    prefix_handle = node.storage.get("0.NA/88.100.1")
    assert prefix_handle is not None
    grant = HandleValue(101, "HS_ADMIN", AdminValue(AdminPermission.ALL, identity).to_bytes())
    node.service.prefixes.put_record(
        HandleRecord(prefix_handle.handle, (*prefix_handle.values, grant))
    )
    permissions = Permission.ADMIN_READ | Permission.ADMIN_WRITE
    key = HandleValue(identity.index, "HS_SECKEY", secret.encode(), permissions=permissions)
    node.service.prefixes.put_record(HandleRecord(identity.handle, (key,)))


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised node with 300 demo pumps, shared read-only by the server tests."""
    path = tmp_path_factory.mktemp("demo-node")
    node = make_node(path)
    node.service.bulk.register_many(demo_records(300), replace=True)
    # Records the server tests need beyond the demo: a redirect a browser must not
    # follow, and a record too large for one UDP packet.
    node.service.prefixes.put_record(
        HandleRecord("88.100.1/EVIL", (HandleValue(1, "URL", b"javascript:alert(1)"),))
    )
    node.service.prefixes.put_record(
        HandleRecord(
            "88.100.1/BIG",
            tuple(HandleValue(i, "NOTE", b"x" * 100) for i in range(1, 21)),
        )
    )
    node.close()
    return path


class RunningNode:
    """A node served by :func:`idnode.server.runner.serve` in a thread of the test process."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._bound: list[BoundPorts] = []
        ready = threading.Event()

        def started(ports: BoundPorts) -> None:
            self._bound.append(ports)
            ready.set()

        self._thread = threading.Thread(
            target=lambda: self._loop.run_until_complete(
                serve(config, started=started, stop=self._stop)
            ),
            daemon=True,
        )
        self._thread.start()
        if not ready.wait(15):
            self.stop()
            raise RuntimeError("server did not start")

    @property
    def ports(self) -> BoundPorts:
        return self._bound[0]

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.ports.http}"

    def stop(self) -> None:
        """Stop serving and wait until serve() has returned."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(15)
        assert not self._thread.is_alive(), "serve() did not return"
        if not self._loop.is_closed():
            self._loop.close()


@contextmanager
def running(config: Config) -> Iterator[RunningNode]:
    node = RunningNode(config)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def running_node(demo_dir: Path) -> Iterator[RunningNode]:
    """The demo node served on real UDP, TCP and HTTP sockets in a background thread."""
    # Shared by many tests from one address, some failing to authenticate on purpose
    # (schemathesis sends made-up credentials): no allowance to run out of.
    config = Config(
        data_dir=demo_dir,
        handle_port=0,
        http_port=0,
        stats_flush_seconds=0.2,
        http_auth_failures=1_000_000,
    )
    with running(config) as node:
        yield node


def metric_sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name`` with exactly ``labels`` in a Prometheus text
    exposition; 0 if there is none."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        found = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)", line)
        if found is None or found[1] != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', found[2] or ""))
        if got == labels:
            return float(found[3])
    return 0.0
