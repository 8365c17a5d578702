"""Storage backends behind one interface, chosen by the scheme of a database URL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from idnode.errors import ConfigError
from idnode.storage.base import HandleRecord, Storage
from idnode.storage.sqlite import SQLiteStorage

__all__ = ["BACKENDS", "HandleRecord", "SQLiteStorage", "Storage", "open_storage"]


def _open_sqlite(location: str) -> Storage:
    return SQLiteStorage(Path(location))


# scheme -> opener taking the part after "scheme:" ("//" stripped for "scheme://").
BACKENDS: dict[str, Callable[[str], Storage]] = {"sqlite": _open_sqlite}


def open_storage(url: str) -> Storage:
    """Open ``sqlite:///abs/path.db``, ``sqlite:rel/path.db`` or a bare file path."""
    scheme, sep, rest = url.partition(":")
    if not sep or (scheme not in BACKENDS and len(scheme) == 1):  # bare path, or C:\ on Windows
        return _open_sqlite(url)
    opener = BACKENDS.get(scheme)
    if opener is None:
        raise ConfigError(
            f"no storage backend for {scheme!r} URLs; available: {', '.join(sorted(BACKENDS))}"
        )
    return opener(rest.removeprefix("//"))
