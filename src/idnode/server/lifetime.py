"""One ``idnode serve`` per data directory, and no worker outliving its parent.

Workers bind with SO_REUSEPORT, so a second ``idnode serve`` binds beside the workers
of a first one and the kernel splits the traffic between old and new code and
configuration. Two guards prevent that:

- every process of a running node holds a shared ``flock`` on ``serve.lock`` in the
  data directory; a new ``serve`` first asks for it exclusively and refuses to start
  while any process of another one is alive (the kernel drops the lock of a process
  however it ends, ``kill -9`` included, so there is nothing stale to clean up);
- a worker asks the kernel for SIGTERM when its parent dies (``PR_SET_PDEATHSIG`` on
  Linux) and, everywhere, watches its parent's pid once a second, so a ``kill -9`` of
  the parent takes its workers down.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import IO

from idnode.errors import ConfigError

__all__ = ["LOCK_FILE", "claim_data_dir", "die_with_parent", "hold_data_dir"]

log = logging.getLogger(__name__)

LOCK_FILE = "serve.lock"
_PR_SET_PDEATHSIG = 1


def claim_data_dir(data_dir: Path) -> IO[bytes]:
    """The lock of a new ``serve`` on ``data_dir``; ConfigError if another one (or
    any of its workers) still runs. Keep the returned file open while serving."""
    lock = (data_dir / LOCK_FILE).open("a+b")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise ConfigError(
            f"another `idnode serve` is running on {data_dir} (a process of it holds"
            f" {LOCK_FILE}); stop it, and any of its workers left, first"
        ) from None
    # Shared from now on, so that this serve's workers can hold it too.
    fcntl.flock(lock, fcntl.LOCK_SH)
    return lock


def hold_data_dir(data_dir: Path) -> IO[bytes]:
    """A worker's share of its ``serve``'s lock (see :func:`claim_data_dir`)."""
    lock = (data_dir / LOCK_FILE).open("a+b")
    fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
    return lock


def die_with_parent(parent: int) -> None:
    """End this process (SIGTERM, as ``serve`` stops workers) when ``parent`` dies."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        log.error("the idnode serve process %d is gone; this worker stops", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    # The parent may have died before prctl took effect: the watch covers that too.
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
