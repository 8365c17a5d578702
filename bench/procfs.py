"""Reading processes from /proc: the children of a server and what they run."""

from __future__ import annotations

from pathlib import Path

__all__ = ["children", "cmdline", "spawned_workers"]


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
