"""The layering contracts `make lint` checks (import-linter) cover the whole package."""

from __future__ import annotations

import pkgutil
import tomllib
from pathlib import Path

import idnode

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def test_the_codec_contract_names_every_other_module() -> None:
    """A module added to idnode must join the list handle/ may not import, or the
    contract would silently let the codec depend on it."""
    settings = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    contracts = settings["tool"]["importlinter"]["contracts"]
    codec = next(c for c in contracts if c["source_modules"] == ["idnode.handle"])
    modules = {f"idnode.{m.name}" for m in pkgutil.iter_modules(idnode.__path__)}
    assert set(codec["forbidden_modules"]) == modules - {"idnode.handle", "idnode.__main__"}
