"""The deployment files (issue 25, item 1): the Dockerfile lints clean with hadolint
and builds where a Docker daemon runs; the systemd unit verifies with systemd-analyze
and its sandboxing rates "OK"; the compose file names what docs/operations.md says."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    found = shutil.which(name) or (str(BIN / name) if (BIN / name).exists() else None)
    if found is None:
        pytest.skip(f"{name} is not installed here")
    return found


def test_the_dockerfile_lints_clean() -> None:
    done = subprocess.run(
        [_tool("hadolint"), "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER 10001", text, re.M)  # not root
    assert "HEALTHCHECK" in text
    assert "/healthz" in text
    assert 'VOLUME ["/var/lib/idnode"]' in text


def test_the_image_builds_where_docker_runs(tmp_path: Path) -> None:
    docker = _tool("docker")
    if subprocess.run([docker, "info"], capture_output=True, check=False).returncode != 0:
        pytest.skip("no Docker daemon runs here (the image is built where one does)")
    tag = "idnode-test:latest"
    built = subprocess.run(
        [docker, "build", "--quiet", "-t", tag, str(ROOT)],
        capture_output=True, text=True, check=False, timeout=900,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    version = subprocess.run(
        [docker, "run", "--rm", tag, "--version"], capture_output=True, text=True, check=False
    )
    assert version.stdout.strip().startswith("idnode ")


def test_the_systemd_unit_verifies_and_is_sandboxed(tmp_path: Path) -> None:
    analyze = _tool("systemd-analyze")
    unit = (ROOT / "deploy" / "idnode.service").read_text()
    # Verified as installed, with the command where this test finds it.
    here = tmp_path / "idnode.service"
    here.write_text(unit.replace("/opt/idnode/bin/idnode", str(BIN / "idnode")))
    verify = subprocess.run(
        [analyze, "verify", str(here)], capture_output=True, text=True, check=False
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    for setting in ("Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict",
                    "User=idnode", "ReadWritePaths=/var/lib/idnode"):  # fmt: skip
        assert re.search(rf"^{re.escape(setting)}$", unit, re.M), setting
    security = subprocess.run(
        [analyze, "security", "--offline=yes", str(here)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    level = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)
    assert level is not None, security.stdout[-2000:]
    assert float(level[1]) < 2.0, security.stdout[-2000:]


def test_the_compose_file_starts_a_node_with_postgresql() -> None:
    compose = (ROOT / "deploy" / "compose.yaml").read_text()
    assert "image: postgres:" in compose
    assert "--database postgresql://idnode:idnode@db/idnode" in compose
    assert "condition: service_healthy" in compose
    for port in ("2641:2641/udp", "2641:2641/tcp", "8000:8000/tcp"):
        assert port in compose
