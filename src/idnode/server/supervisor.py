"""The parent process of ``idnode serve --workers N``: binds, starts, watches and
replaces the workers.

Each worker slot has sockets of its own (UDP, TCP and HTTP, bound with SO_REUSEPORT,
so the kernel spreads traffic over the slots), bound once, here, and handed to the
slot's worker. A socket therefore outlives its worker: what the kernel queued on it
while a worker is being replaced is read by the next one instead of being dropped with
a closed socket (the kernel drops the queue of a socket that closes, and hashes new
traffic of a SO_REUSEPORT group to the remaining sockets only after it has).

That is how a rolling restart loses nothing: the slot's new worker starts reading the
slot's sockets beside the old one, and only once it says it is ready is the old one
told to stop (SIGTERM), which then reads nothing more, answers what it has read and
exits (:func:`idnode.server.runner.serve`). Slot by slot, one at a time.

Signals: SIGHUP reads the configuration again and restarts the workers one at a time
(new code, after an upgrade in place, is what new workers import); SIGTERM and SIGINT
stop every worker the same graceful way. A worker that dies otherwise is replaced,
unless its slot failed ``MAX_FAILURES`` times within ``FAILURE_WINDOW`` seconds, which
stops the node with an error (and lets systemd's ``Restart=`` decide).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

from idnode.config import Config
from idnode.errors import ConfigError, IdnodeError, ServerError
from idnode.metrics import forget_process, share_through
from idnode.server import lifetime
from idnode.server.runner import (
    DRAIN_SECONDS,
    BoundPorts,
    Sockets,
    bind_sockets,
    configure_logging,
    run_worker,
)

__all__ = ["FAILURE_WINDOW", "MAX_FAILURES", "METRICS_DIRECTORY", "READY_SECONDS", "Supervisor"]

log = logging.getLogger("idnode.server")

#: How long a new worker may take to open the node and say it is ready.
READY_SECONDS = 60.0
#: A slot whose workers die this often within FAILURE_WINDOW seconds stops the node.
MAX_FAILURES = 3
FAILURE_WINDOW = 60.0
#: In the data directory: the workers' metrics files.
METRICS_DIRECTORY = "metrics"
#: Settings a reload cannot change: the sockets are bound once.
_BOUND = ("host", "handle_port", "http_port", "workers")


@dataclass
class _Slot:
    number: int
    sockets: Sockets
    #: What its worker runs with (a rolling restart that stopped half-way leaves
    #: slots on either configuration; a worker that dies is replaced like for like).
    config: Config
    process: BaseProcess | None = None
    failures: list[float] = field(default_factory=list)


class _WorkerFailed(Exception):
    pass


class Supervisor:
    """Runs ``config.workers`` workers until SIGTERM or SIGINT (see the module)."""

    def __init__(
        self,
        config: Config,
        reload: Callable[[], Config],
        started: Callable[[BoundPorts], None],
    ) -> None:
        if config.handle_port == 0 or config.http_port == 0:
            raise ConfigError("several workers need fixed ports; port 0 picks a different one each")
        self._config = config
        self._reload = reload
        self._started = started
        self._context = multiprocessing.get_context("spawn")
        self._slots: list[_Slot] = []
        self._signals: list[int] = []
        self._wakeup_read, self._wakeup_write = os.pipe()
        os.set_blocking(self._wakeup_write, False)

    def run(self) -> None:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in _HANDLED}
        try:
            self._bind()
            _metrics_directory(self._config.data_dir)
            try:
                self._start_all()
                self._started(BoundPorts(self._config.handle_port, self._config.http_port))
                self._watch()
            finally:
                self._stop_all()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for slot in self._slots:
                slot.sockets.close()
            os.close(self._wakeup_read)
            os.close(self._wakeup_write)

    # -- signals and the watch loop --------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)
        with suppress(BlockingIOError):  # the pipe is full of wake-ups already
            os.write(self._wakeup_write, b"\0")

    def _watch(self) -> None:
        while True:
            sentinels = {slot.process.sentinel: slot for slot in self._slots if slot.process}
            wait([self._wakeup_read, *sentinels], timeout=5.0)
            # Before reading the signals: a wake-up written after this is for one
            # still to be read, and wakes the next wait.
            self._drain_wakeups()
            while self._signals:
                signum = self._signals.pop(0)
                if signum == signal.SIGHUP:
                    self._rolling_restart()
                else:
                    log.info("stopping the workers (%s)", signal.Signals(signum).name)
                    return
            for slot in self._slots:
                if slot.process is not None and not slot.process.is_alive():
                    self._replace_dead(slot)

    def _drain_wakeups(self) -> None:
        os.set_blocking(self._wakeup_read, False)
        try:
            while os.read(self._wakeup_read, 512):
                pass
        except BlockingIOError:
            pass
        finally:
            os.set_blocking(self._wakeup_read, True)

    # -- starting, replacing and stopping workers ---------------------------------------

    def _bind(self) -> None:
        """Every slot's sockets, or ConfigError naming the port that is taken."""
        try:
            for number in range(self._config.workers):
                sockets = bind_sockets(self._config, reuse_port=True)
                self._slots.append(_Slot(number, sockets, self._config))
        except BaseException:
            for slot in self._slots:
                slot.sockets.close()
            raise

    def _spawn(self, slot: _Slot, config: Config) -> BaseProcess:
        """A new worker for ``slot``, once it says it serves; _WorkerFailed if it does
        not within READY_SECONDS (it is stopped then)."""
        return self._ready(*self._launch(slot, config))

    def _launch(self, slot: _Slot, config: Config) -> tuple[BaseProcess, Connection]:
        """A new worker for ``slot``, and where it will say it is ready."""
        reader, writer = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_worker,
            args=(config, slot.number, os.getpid(), slot.sockets, writer),
            name=f"idnode-worker-{slot.number}",
            daemon=True,
        )
        process.start()
        writer.close()
        return process, reader

    def _ready(self, process: BaseProcess, reader: Connection) -> BaseProcess:
        try:
            self._await_ready(process, reader)
        except _WorkerFailed:
            _stop(process, timeout=DRAIN_SECONDS)
            raise
        finally:
            reader.close()
        return process

    def _await_ready(self, process: BaseProcess, reader: Connection) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _WorkerFailed(f"not ready after {READY_SECONDS:.0f} s")
            ready = wait([reader, process.sentinel], timeout=left)
            if reader in ready:
                try:
                    reader.recv()
                except EOFError:  # it closed its end without a word: it is exiting
                    process.join(DRAIN_SECONDS)
                    raise _WorkerFailed(f"exited with {process.exitcode}") from None
                return
            if process.sentinel in ready:
                raise _WorkerFailed(f"exited with {process.exitcode}")

    def _start_all(self) -> None:
        """Every slot's worker, started together (each opens the node at once)."""
        launched = [(slot, *self._launch(slot, slot.config)) for slot in self._slots]
        for slot, process, _ in launched:
            slot.process = process  # so that all are stopped if one fails
        for slot, process, reader in launched:
            try:
                self._ready(process, reader)
            except _WorkerFailed as exc:
                raise ServerError(f"worker {slot.number} did not start: {exc}") from None

    def _start(self, slot: _Slot) -> None:
        try:
            slot.process = self._spawn(slot, slot.config)
        except _WorkerFailed as exc:
            raise ServerError(f"worker {slot.number} did not start: {exc}") from None

    def _replace_dead(self, slot: _Slot) -> None:
        assert slot.process is not None
        now = time.monotonic()
        slot.failures = [t for t in slot.failures if now - t < FAILURE_WINDOW] + [now]
        log.error(
            "worker %d (pid %s) exited with %s; starting another",
            slot.number,
            slot.process.pid,
            slot.process.exitcode,
        )
        _forget(slot.process, self._config)
        slot.process = None
        if len(slot.failures) >= MAX_FAILURES:
            raise ServerError(
                f"worker {slot.number} failed {len(slot.failures)} times within"
                f" {FAILURE_WINDOW:.0f} s; stopping the node"
            )
        self._start(slot)

    def _rolling_restart(self) -> None:
        """Each slot's worker replaced by a new one, which reads the slot's sockets
        before the old one stops: no request is left unread (see the module)."""
        try:
            fresh = self._reload()
        except IdnodeError as exc:
            refusal = exc.message
        else:
            refusal = ""
        if refusal:
            log.error("not restarting: the configuration does not load: %s", refusal)
            return
        changed = [name for name in _BOUND if getattr(fresh, name) != getattr(self._config, name)]
        if changed:
            log.warning(
                "%s change only with a full restart; keeping %s",
                ", ".join(changed),
                ", ".join(f"{n}={getattr(self._config, n)}" for n in changed),
            )
            fresh = fresh.replace(**{name: getattr(self._config, name) for name in changed})
        began = time.monotonic()
        log.info("rolling restart of %d workers", len(self._slots))
        configure_logging(fresh)  # the supervisor's own lines as the new workers'
        for slot in self._slots:
            if any(sig != signal.SIGHUP for sig in self._signals):
                log.warning("rolling restart stopped before worker %d: stopping", slot.number)
                return
            try:
                replacement = self._spawn(slot, fresh)
            except _WorkerFailed as exc:
                failure = str(exc)
            else:
                failure = ""
            if failure:
                log.error(
                    "rolling restart stopped: a new worker %d %s; the running workers go on"
                    " (%d of %d on the new configuration)",
                    slot.number,
                    failure,
                    slot.number,
                    len(self._slots),
                )
                return
            old, slot.process, slot.config = slot.process, replacement, fresh
            if old is not None:
                _stop(old, timeout=DRAIN_SECONDS + 5)
                _forget(old, self._config)
                log.info(
                    "worker %d: pid %s replaced by pid %s", slot.number, old.pid, replacement.pid
                )
        self._config = fresh
        log.info("rolling restart done in %.1f s", time.monotonic() - began)

    def _stop_all(self) -> None:
        running = [slot.process for slot in self._slots if slot.process is not None]
        for process in running:
            if process.is_alive():
                process.terminate()  # SIGTERM: each drains at the same time
        for process in running:
            _stop(process, timeout=DRAIN_SECONDS + 5)
        failed = [p.exitcode for p in running if p.exitcode not in (0, -signal.SIGTERM)]
        if failed:
            log.error("worker(s) exited with %s", failed)


_HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _stop(process: BaseProcess, *, timeout: float) -> None:
    """SIGTERM (the worker drains), and SIGKILL if it is not gone within ``timeout``."""
    if process.is_alive():
        process.terminate()
    process.join(timeout)
    if process.is_alive():
        log.error("worker pid %s did not stop within %.0f s; killing it", process.pid, timeout)
        process.kill()
        process.join()


def _forget(process: BaseProcess, config: Config) -> None:
    if process.pid is not None:
        forget_process(config.data_dir / METRICS_DIRECTORY, process.pid)


def _metrics_directory(data_dir: Path) -> None:
    """Where the workers keep their metrics (see :mod:`idnode.metrics`): emptied
    first, as a new serve starts counting afresh (this serve holds the data
    directory's lock, so no other one writes there)."""
    directory = data_dir / METRICS_DIRECTORY
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o700)


def _worker(config: Config, number: int, parent: int, sockets: Sockets, ready: Connection) -> None:
    """A worker process: serve on ``sockets``, say so on ``ready``."""
    configure_logging(config)
    lifetime.die_with_parent(parent)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the supervisor's to act on

    def started(ports: BoundPorts) -> None:
        ready.send(os.getpid())
        ready.close()

    share_through(config.data_dir / METRICS_DIRECTORY)
    try:
        with lifetime.hold_data_dir(config.data_dir):
            run_worker(config, sockets=sockets, started=started, report=number == 0)
    except IdnodeError as exc:
        sys.exit(f"worker {number}: {exc.message}")
