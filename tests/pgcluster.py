"""A throwaway PostgreSQL primary with a streaming standby, for the replica tests.

Built with the server's own tools (initdb, pg_basebackup, pg_ctl) in a temporary
directory, on free ports, so the tests never touch the machine's shared server's
configuration. As root, the tools run as the ``postgres`` user (PostgreSQL refuses
to run as root).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _bin_dir() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if candidates:
        return candidates[-1].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def missing_reason() -> str | None:
    """Why a cluster cannot be built here, or None if it can."""
    if _bin_dir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) are not installed"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser to start PostgreSQL as another user"
    return None


@contextmanager
def primary_with_standby(workdir: Path) -> Iterator[tuple[str, str, str]]:
    """Yield (primary URL, standby URL, standby URL for admin commands)."""
    bindir = _bin_dir()
    assert bindir is not None
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    workdir.mkdir(parents=True, exist_ok=True)
    if as_user:
        shutil.chown(workdir, "postgres")

    def run(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, timeout=120, cwd=workdir)

    primary, standby = workdir / "primary", workdir / "standby"
    p_port, s_port = _free_port(), _free_port()
    run(str(bindir / "initdb"), "-D", str(primary), "-A", "trust", "-U", "postgres")
    with (primary / "postgresql.conf").open("a") as conf:
        conf.write(
            f"port={p_port}\nlisten_addresses='127.0.0.1'\nunix_socket_directories='{workdir}'\n"
            "wal_level=replica\nfsync=off\n"
        )
    with (primary / "pg_hba.conf").open("a") as hba:
        hba.write("host replication all 127.0.0.1/32 trust\n")
    started = []
    try:
        run(str(bindir / "pg_ctl"), "-D", str(primary), "-l", str(workdir / "p.log"), "-w", "start")
        started.append(primary)
        run(
            str(bindir / "pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(p_port),
            "-U",
            "postgres",
            "-D",
            str(standby),
            "-R",
            "-X",
            "stream",
        )
        conf_text = (
            (standby / "postgresql.conf").read_text().replace(f"port={p_port}", f"port={s_port}")
        )
        (standby / "postgresql.conf").write_text(conf_text)
        run(str(bindir / "pg_ctl"), "-D", str(standby), "-l", str(workdir / "s.log"), "-w", "start")
        started.append(standby)
        base = "postgresql://postgres@127.0.0.1:{}/postgres"
        yield base.format(p_port), base.format(s_port), base.format(s_port)
    finally:
        for data in reversed(started):
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
