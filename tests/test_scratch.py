"""Scratch space of imports (issue 24): a killed `idnode import` leaves its staging
directory, the next import removes it, and no import removes the directory of one
still running. Real processes killed with SIGKILL; TMPDIR points at the test's own
directory, so only what these imports make is looked at."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from idnode.scratch import OWNER_FILE, ScratchDirectory, sweep
from tests.conftest import make_node

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock and SIGKILL")


def _killed_holding_a_scratch_directory(base: Path, prefix: str) -> Path:
    """A process that made a scratch directory under ``base``, killed with SIGKILL."""
    code = (
        "import sys, time\n"
        "from idnode.scratch import ScratchDirectory\n"
        f"made = ScratchDirectory({prefix!r}, {str(base)!r})\n"
        "print(made.path, flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    path = Path(child.stdout.readline().strip())
    child.kill()
    child.wait()
    child.stdout.close()
    return path


def test_a_killed_owners_directory_is_removed_by_the_next_one(tmp_path: Path) -> None:
    left = _killed_holding_a_scratch_directory(tmp_path, "idnode-staging-")
    assert (left / OWNER_FILE).exists()  # nothing removed it when its owner died
    other_kind = _killed_holding_a_scratch_directory(tmp_path, "idnode-import-")
    with ScratchDirectory("idnode-staging-", tmp_path) as fresh:
        assert not left.exists()
        assert fresh.path.is_dir()
        assert other_kind.exists()  # not the kind being made: its own kind sweeps it
        # A directory in use (this one) survives another sweep, from this process too.
        assert sweep(tmp_path, "idnode-staging-") == []
        assert fresh.path.is_dir()
    assert not fresh.path.exists()


def test_a_directory_without_an_owner_is_removed_only_when_old(tmp_path: Path) -> None:
    young = tmp_path / "idnode-staging-young"
    old = tmp_path / "idnode-staging-old"
    young.mkdir()
    old.mkdir()
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    assert sweep(tmp_path, "idnode-staging-") == [old]
    assert young.exists()


def _jsonl(path: Path, count: int) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for n in range(count):
            value = {"index": 1, "type": "URL", "data": f"https://example.com/p/{n}"}
            out.write(json.dumps({"handle": f"88.100.1/S-{n:07d}", "values": [value]}) + "\n")
    return path


def _import(data_dir: Path, source: Path, tmp: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "idnode", "import", str(source), "-d", str(data_dir)]
    env = os.environ | {"TMPDIR": str(tmp)}
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )


def _staging_dirs(tmp: Path) -> list[Path]:
    return sorted(tmp.glob("idnode-staging-*"))


def test_a_killed_import_leaves_scratch_that_the_next_import_removes(tmp_path: Path) -> None:
    make_node(tmp_path / "node").close()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    big = _jsonl(tmp_path / "big.jsonl", 300_000)
    killed = _import(tmp_path / "node", big, scratch)
    deadline = time.monotonic() + 60
    while not any((d / "staged.db").exists() for d in _staging_dirs(scratch)):
        assert killed.poll() is None, killed.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(killed.pid, signal.SIGKILL)  # the import and its staging process
    killed.communicate()
    left = _staging_dirs(scratch)
    assert len(left) == 1
    assert (left[0] / "staged.db").stat().st_size > 0  # what a killed import leaves
    # The next import removes it, and succeeds.
    small = _import(tmp_path / "node", _jsonl(tmp_path / "small.jsonl", 10), scratch)
    out, err = small.communicate(timeout=120)
    assert small.returncode == 0, err.decode()
    assert b"10 created" in out
    assert not left[0].exists()
    assert _staging_dirs(scratch) == []


def test_an_import_never_removes_the_scratch_of_one_still_running(tmp_path: Path) -> None:
    make_node(tmp_path / "node").close()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    running = _import(tmp_path / "node", _jsonl(tmp_path / "big.jsonl", 100_000), scratch)
    try:
        deadline = time.monotonic() + 60
        while not _staging_dirs(scratch):
            assert running.poll() is None, running.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        in_use = _staging_dirs(scratch)[0]
        with ScratchDirectory("idnode-staging-", scratch):  # as a second import would
            assert in_use.exists()
    finally:
        out, err = running.communicate(timeout=300)
    assert running.returncode == 0, err.decode()
    assert b"100000 created" in out
    assert _staging_dirs(scratch) == []
