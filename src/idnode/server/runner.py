"""Run a node: Handle over UDP and TCP and HTTP in one event loop per worker process.

With ``workers > 1`` each worker process opens its own database connections and binds
the same ports with SO_REUSEPORT, and the kernel spreads connections and datagrams
over them; the parent only starts, watches and stops the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Callable, Generator
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import uvicorn

from idnode import __version__, logs
from idnode.config import CONFIG_FILE, Config
from idnode.epcisapi.push import push_subscriptions_every
from idnode.errors import ConfigError, IdnodeError
from idnode.metrics import save_snapshot, set_queue_depth, worker_started
from idnode.node import Node, open_node, server_signer
from idnode.reporting import REPORT_HOURS, report_rows, send_report
from idnode.server import lifetime
from idnode.server.dispatch import Dispatcher
from idnode.server.http import create_app
from idnode.server.http_protocol import with_header_timeout
from idnode.server.ratelimit import RateLimiter
from idnode.server.tls import uvicorn_tls_settings
from idnode.server.transports import HandleTCPProtocol, HandleUDPProtocol, TCPLimits
from idnode.service.offloop import OffLoop

__all__ = [
    "DRAIN_SECONDS",
    "BoundPorts",
    "Sockets",
    "bind_sockets",
    "configure_logging",
    "run_worker",
    "serve",
    "serve_forever",
]

log = logging.getLogger("idnode.server")

#: How long a stopping worker goes on answering what it has read (systemd's
#: TimeoutStopSec in deploy/idnode.service leaves room for it).
DRAIN_SECONDS = 10.0
#: How long a stopping worker waits, no longer accepting, for connections it has just
#: accepted to send their request, before uvicorn's shutdown closes those still silent.
ACCEPT_GRACE = 0.3


class _HTTPServer(uvicorn.Server):
    """uvicorn without its own signal handling: serve() stops all three servers together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None]:
        yield


@dataclass(frozen=True)
class BoundPorts:
    handle: int
    http: int


@dataclass
class Sockets:
    """A worker's three sockets. Bound by the supervisor of several workers, they
    outlive any one worker: see :mod:`idnode.server.supervisor`."""

    udp: socket.socket
    tcp: socket.socket
    http: socket.socket

    def close(self) -> None:
        for s in (self.udp, self.tcp, self.http):
            s.close()


def _socket(host: str, port: int, kind: socket.SocketKind, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        proto = "TCP" if kind == socket.SOCK_STREAM else "UDP"
        raise ConfigError(f"cannot bind {proto} {host}:{port}: {exc.strerror}") from exc
    sock.setblocking(False)
    return sock


def bind_sockets(config: Config, *, reuse_port: bool) -> Sockets:
    """Bind the three sockets; a Handle port of 0 picks one port free for TCP and UDP."""
    tcp = _socket(config.host, config.handle_port, socket.SOCK_STREAM, reuse_port)
    try:
        udp = _socket(config.host, tcp.getsockname()[1], socket.SOCK_DGRAM, reuse_port)
        try:
            http = _socket(config.host, config.http_port, socket.SOCK_STREAM, reuse_port)
        except BaseException:
            udp.close()
            raise
    except BaseException:
        tcp.close()
        raise
    tcp.listen(1024)
    http.listen(1024)
    return Sockets(udp, tcp, http)


async def serve(
    config: Config,
    *,
    reuse_port: bool = False,
    sockets: Sockets | None = None,
    started: Callable[[BoundPorts], None] | None = None,
    stop: asyncio.Event | None = None,
    report: bool = True,
) -> None:
    """Serve until ``stop`` is set or SIGINT/SIGTERM arrives, then drain: read no
    more requests, answer those read (for at most ``DRAIN_SECONDS``), and return.

    ``sockets``: bound ones to serve on (a worker's, from its supervisor), else bound
    here. ``report``: send statistics to the parent node (when ``parent_url`` is set);
    of several workers, one does.
    """
    tls = uvicorn_tls_settings(config)  # refuse missing files before binding anything
    if sockets is None:
        sockets = bind_sockets(config, reuse_port=reuse_port)
    # With port 0 the kernel chose; the published HS_SITE must name the real port.
    try:
        node = open_node(config.replace(handle_port=sockets.tcp.getsockname()[1]))
    except BaseException:
        sockets.close()
        raise
    # Everything of the service that may wait runs off the loop, through ``off``.
    off = OffLoop(node.service)
    try:
        await _serve_node(node, off, sockets, config, tls, started, stop, report)
    finally:
        try:
            await off.aclose()
        finally:
            sockets.close()
            node.close()


async def _serve_node(
    node: Node,
    off: OffLoop,
    sockets: Sockets,
    config: Config,
    tls: dict[str, Any],
    started: Callable[[BoundPorts], None] | None,
    stop: asyncio.Event | None,
    report: bool,
) -> None:
    loop = asyncio.get_running_loop()
    dispatcher = Dispatcher(
        node.service,
        udp_max_response=config.udp_max_response,
        signer=server_signer(config),
        offloop=off,
        anonymous_reads=config.anonymous_reads,
        session_cipher=config.session_cipher,
        session_setups_per_minute=config.session_setups_per_minute,
        challenges_per_minute=config.challenges_per_minute,
        answer_cache_bytes=config.answer_cache_mb << 20,
    )
    limits = TCPLimits(
        config.tcp_max_connections,
        config.tcp_idle_timeout,
        max_per_address=config.tcp_max_per_address,
        request_timeout=config.tcp_request_timeout,
    )
    rate = config.effective_udp_rate_limit
    limiter = RateLimiter(rate) if rate > 0 else None
    # Replies to datagrams read before a drain go out through this one: the
    # transport's own is closed then, so that it reads nothing more.
    spare = sockets.udp.dup()
    udp = HandleUDPProtocol(dispatcher, limiter)
    try:
        udp_transport, _ = await loop.create_datagram_endpoint(lambda: udp, sock=sockets.udp)
    except BaseException:
        spare.close()
        raise
    try:
        tcp_server = await loop.create_server(
            lambda: HandleTCPProtocol(dispatcher, limits), sock=sockets.tcp
        )
    except BaseException:
        udp_transport.close()
        spare.close()
        raise
    uvicorn_settings: dict[str, Any] = {
        "http": with_header_timeout(config.http_header_timeout)
    } | tls
    http_server = _HTTPServer(
        uvicorn.Config(
            create_app(
                off,
                config.gs1_prefix,
                auth_failures_per_minute=config.http_auth_failures,
                answer_cache_bytes=config.answer_cache_mb << 20,
                console_idle_seconds=config.console_idle_minutes * 60.0,
                role=config.role,
                parent_url=config.parent_url,
            ),
            lifespan="off",
            access_log=False,
            log_level=config.log_level.lower(),
            # Its loggers go to ours (idnode.logs): one format, text or JSON lines.
            log_config=None,
            server_header=False,
            # X-Forwarded-* from anyone would let clients forge their address.
            proxy_headers=False,
            timeout_graceful_shutdown=int(DRAIN_SECONDS),
            **uvicorn_settings,
        )
    )
    stop = stop or asyncio.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    http_task = asyncio.create_task(http_server.serve(sockets=[sockets.http]))
    background = [
        asyncio.create_task(_flush_stats_every(off, config.stats_flush_seconds)),
        asyncio.create_task(_refresh_homed_every(off)),
        asyncio.create_task(_sample_queues_every_second(off, udp, limits)),
        # EPCIS subscriptions: each worker delivers what is due, leased in the database.
        asyncio.create_task(push_subscriptions_every(off)),
    ]
    if report and config.parent_url:
        background.append(asyncio.create_task(_report_stats_every(node, off)))
    worker_started(__version__)
    ports = BoundPorts(sockets.tcp.getsockname()[1], sockets.http.getsockname()[1])
    if started is not None:
        while not http_server.started and not http_task.done():
            await asyncio.sleep(0.01)
        started(ports)
    try:
        stop_task = asyncio.create_task(stop.wait())
        await asyncio.wait({http_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        stop_task.cancel()
    finally:
        for task in background:
            task.cancel()
        await _drain(http_server, http_task, tcp_server, limits, udp, spare)
        with suppress(OSError):
            save_snapshot()  # what this worker counted to the end


async def _drain(
    http_server: _HTTPServer,
    http_task: asyncio.Task[None],
    tcp_server: asyncio.Server,
    limits: TCPLimits,
    udp: HandleUDPProtocol,
    spare: socket.socket,
) -> None:
    """Stop reading requests and answer those read, for at most ``DRAIN_SECONDS``.

    Closing this process's sockets closes none of them for the kernel when a
    supervisor holds them too: what arrives meanwhile waits for the other worker of
    the slot (see :mod:`idnode.server.supervisor`)."""
    # uvicorn's shutdown closes at once a connection whose request has not arrived:
    # one accepted a moment before, its request still on the way, would be dropped
    # unanswered. So stop accepting first, and give those a moment to send it.
    for listening in http_server.servers:
        listening.close()
    tcp_server.close()
    limits.drain()
    udp.stop_reading(spare)
    await asyncio.sleep(ACCEPT_GRACE)
    http_server.should_exit = True  # uvicorn drains its own connections
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            await asyncio.gather(udp.drained(), limits.drained())
    except TimeoutError:
        log.warning("stopping with requests unanswered after %.0f s", DRAIN_SECONDS)
    finally:
        limits.close_all()
        # From Python 3.12 wait_closed() also waits for every connection to end.
        await tcp_server.wait_closed()
        with suppress(Exception):
            await http_task
        spare.close()


def run_worker(
    config: Config,
    *,
    sockets: Sockets | None = None,
    reuse_port: bool = False,
    started: Callable[[BoundPorts], None] | None = None,
    report: bool = True,
) -> None:
    """Serve on an event loop of its own (uvloop's where installed) until stopped."""
    main = serve(config, sockets=sockets, reuse_port=reuse_port, started=started, report=report)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        asyncio.run(main)
    else:
        uvloop.run(main)


async def _flush_stats_every(off: OffLoop, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await off.write(off.service.statistics.flush)
        except IdnodeError as exc:  # the database is away; counts wait for the next try
            log.warning("could not flush statistics: %s", exc.message)


async def _sample_queues_every_second(
    off: OffLoop, udp: HandleUDPProtocol, limits: TCPLimits
) -> None:
    """``idnode_queue_depth``, sampled: cheaper than a gauge moved on every request;
    and this worker's values saved for the others to add up (:mod:`idnode.metrics`)."""
    while True:
        set_queue_depth("database_reads", off.reads_in_progress)
        set_queue_depth("database_writes", off.writes_in_progress)
        set_queue_depth("udp_pending", udp.pending)
        set_queue_depth("tcp_connections", limits.open)
        try:
            await asyncio.to_thread(save_snapshot)
        except OSError as exc:
            log.warning("could not save this worker's metrics: %s", exc)
        await asyncio.sleep(1.0)


async def _refresh_homed_every(off: OffLoop) -> None:
    """Read the homed prefixes off the loop, before they go stale, so that the loop's
    own question "is this handle held here?" never has to (it would otherwise read
    them every few seconds, on PostgreSQL a round trip)."""
    core = off.service.core
    while True:
        try:
            await off.read(core.homed_keys, fresh=True)
        except IdnodeError as exc:
            log.warning("could not read the homed prefixes: %s", exc.message)
        await asyncio.sleep(core.HOMED_REFRESH_SECONDS / 2)


async def _report_stats_every(node: Node, off: OffLoop) -> None:
    while True:
        await asyncio.sleep(node.config.stats_report_seconds)
        try:
            rows = await off.read(report_rows, node, REPORT_HOURS)
            stored = await asyncio.to_thread(send_report, node.config, rows)
        except IdnodeError as exc:  # the parent is away; the next report covers it
            log.warning("could not report statistics: %s", exc.message)
        else:
            log.info("reported %d statistics rows to %s", stored, node.config.parent_url)


def configure_logging(config: Config) -> None:
    logs.configure_logging(config.log_level, config.log_format)


def serve_forever(
    config: Config,
    announce: Callable[[str], None] = print,
    reload: Callable[[], Config] | None = None,
) -> None:
    """Entry point of ``idnode serve``: one process, or a supervisor of ``workers``
    processes. ``reload``: the configuration read again (SIGHUP; several workers)."""

    def started(ports: BoundPorts) -> None:
        announce(
            f"idnode serving on {config.host}: Handle udp+tcp {ports.handle}, "
            f"HTTP http://{config.host}:{ports.http}/ (workers: {config.workers})"
        )

    configure_logging(config)
    if not (config.data_dir / CONFIG_FILE).exists():
        raise ConfigError(
            f"{config.data_dir} is not an idnode data directory; run `idnode init` first"
        )
    with lifetime.claim_data_dir(config.data_dir):
        if config.workers == 1:
            signal.signal(signal.SIGHUP, _no_rolling_restart)
            run_worker(config, started=started)
            return
        # Imported here: a single process needs none of it.
        from idnode.server.supervisor import Supervisor

        Supervisor(config, reload or (lambda: config), started).run()


def _no_rolling_restart(signum: int, frame: object) -> None:
    log.warning(
        "SIGHUP ignored: a rolling restart needs --workers 2 or more (one process"
        " cannot replace itself without a gap); restart the service instead"
    )
