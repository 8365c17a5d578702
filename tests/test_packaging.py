"""The built package (issue 25, item 1): a wheel and an sdist built from a copy of the
source; the wheel installs into a fresh virtual environment, where `idnode` on that
environment's PATH initialises a node, serves it and resolves from it.

The fresh environment takes idnode's dependencies from the test run's own environment
(a path file), so no download is needed; idnode itself comes only from the wheel,
which the test checks (`idnode.__file__` is in the new environment)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from pathlib import Path

from tests.conftest import free_port, wait_healthy

ROOT = Path(__file__).resolve().parent.parent


def _run(*command: str | Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, check=False, env=env
    )
    assert done.returncode == 0, f"{command}: {done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


def test_the_wheel_installs_into_a_fresh_environment_and_runs_a_node(tmp_path: Path) -> None:
    source = tmp_path / "source"  # built from a copy: the checkout gets no build files
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    dist = tmp_path / "dist"
    # `python -m build` as docs/operations.md says, with the build tools of this
    # environment (the dev extras) instead of downloading them.
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, source)
    (wheel,) = dist.glob("idnode-*.whl")
    (sdist,) = dist.glob("idnode-*.tar.gz")
    with tarfile.open(sdist) as packed:
        assert any(n.endswith("src/idnode/cli/__init__.py") for n in packed.getnames())
    with zipfile.ZipFile(wheel) as contents:
        names = contents.namelist()
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "idnode = idnode.cli:main" in contents.read(entry_points).decode()
    assert "idnode/py.typed" in names
    assert "idnode/cli/__init__.py" in names
    assert not any(n.startswith("tests/") for n in names)

    fresh = tmp_path / "fresh"
    venv.create(fresh, with_pip=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(fresh), "platbase": str(fresh)}))
    # Dependencies from this environment; idnode from nowhere but the wheel.
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    _run(fresh / "bin" / "python", "-m", "pip", "install", "--no-deps", "--no-index",
         "--quiet", wheel)  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IDNODE_", "PYTHON"))}
    env["PATH"] = f"{fresh / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    where = _run("python", "-c", "import idnode; print(idnode.__file__)", env=env)
    assert Path(where.strip()).is_relative_to(fresh)
    assert _run("idnode", "--version", env=env).strip() == "idnode 0.1.0"

    node, handle, http = tmp_path / "node", free_port(), free_port()
    _run("idnode", "init", "-d", node, "--prefix", "88.100.1", "--handle-port", str(handle),
         "--http-port", str(http), env=env)  # fmt: skip
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        ["idnode", "serve", "-d", str(node), "--log-level", "warning"],
        stdout=log, stderr=log, env=env,
    )  # fmt: skip
    try:
        wait_healthy(http, tmp_path / "serve.log")
        resolved = _run("idnode", "resolve", "0.NA/88.100.1", "--server",
                        f"127.0.0.1:{handle}", "--json", env=env)  # fmt: skip
        assert '"handle": "0.NA/88.100.1"' in resolved
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
