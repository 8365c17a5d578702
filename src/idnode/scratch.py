"""Scratch directories that a killed process does not leave behind.

A bulk import stages its records in a scratch SQLite file about as large as the
records (a hundred megabytes per million), and ``idnode import -`` spools standard
input to one. A ``TemporaryDirectory`` is removed when its process ends normally or
raises, but not when it is killed (``kill -9``, the OOM killer, a power cut), and
nothing removes it afterwards: the system's temporary directory fills up, import after
failed import.

So each scratch directory holds an ``flock`` on a file inside it for as long as its
process lives (the kernel drops the lock however the process ends), and whoever makes
a new one first removes those of the same kind whose lock is free: their owner is gone.
A directory still being used is locked, and left alone; one made a moment ago whose
owner has not locked it yet is left alone too, until it is an hour old.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["OWNER_FILE", "ScratchDirectory", "sweep"]

log = logging.getLogger("idnode.scratch")

OWNER_FILE = ".owner"
#: How old a directory without an owner file must be before it counts as left over.
_UNCLAIMED_SECONDS = 3600.0


class ScratchDirectory:
    """A new directory ``<prefix>XXXX`` under ``directory`` (the system's temporary
    directory by default), held by this process until :meth:`cleanup`; those of the
    same ``prefix`` left there by processes that ended are removed first."""

    def __init__(self, prefix: str, directory: str | Path | None = None) -> None:
        base = Path(directory) if directory is not None else Path(tempfile.gettempdir())
        sweep(base, prefix)
        self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
        try:
            self._owner = (self.path / OWNER_FILE).open("wb")
            fcntl.flock(self._owner, fcntl.LOCK_EX)
        except BaseException:
            shutil.rmtree(self.path, ignore_errors=True)
            raise

    def cleanup(self) -> None:
        if not self._owner.closed:
            shutil.rmtree(self.path, ignore_errors=True)
            self._owner.close()

    def __enter__(self) -> ScratchDirectory:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.cleanup()


def sweep(base: Path, prefix: str) -> list[Path]:
    """Remove the directories ``<prefix>*`` under ``base`` whose owner has ended;
    returns them."""
    removed = []
    for candidate in base.glob(f"{prefix}*"):
        if candidate.is_dir() and _abandoned(candidate):
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
    if removed:
        log.info("removed %d scratch directories left by ended processes", len(removed))
    return removed


def _abandoned(directory: Path) -> bool:
    try:
        owner = os.open(directory / OWNER_FILE, os.O_RDONLY)
    except FileNotFoundError:
        try:
            age = time.time() - directory.stat().st_mtime
        except FileNotFoundError:
            return False  # removed meanwhile
        return age > _UNCLAIMED_SECONDS
    except OSError:
        return False  # not ours to judge (another user's, say)
    try:
        fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # its owner lives
    finally:
        os.close(owner)  # and with it the lock just taken, if it was
    return True
