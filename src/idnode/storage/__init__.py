"""Storage backends behind one interface, chosen by the scheme of a database URL."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from idnode.errors import ConfigError
from idnode.storage.base import Storage
from idnode.storage.sqlite import SQLiteStorage

__all__ = ["BACKENDS", "SQLiteStorage", "Storage", "open_storage", "sqlite_path"]


def sqlite_path(url: str) -> Path:
    """The file of an ``sqlite:`` URL or bare path: ``sqlite:///abs`` and ``sqlite:////abs``
    (what ``Config.database_url`` writes for an absolute directory) alike name ``/abs``,
    ``sqlite:rel/path.db`` a relative path."""
    rest = url.removeprefix("sqlite:")
    return Path("/" + rest.lstrip("/")) if rest.startswith("/") else Path(rest)


def _open_sqlite(url: str, replicas: Sequence[str]) -> Storage:
    if replicas:
        raise ConfigError("read replicas need a PostgreSQL database; SQLite has none")
    return SQLiteStorage(sqlite_path(url))


def _open_postgresql(url: str, replicas: Sequence[str]) -> Storage:
    # Imported here: nodes on SQLite never load the PostgreSQL driver.
    from idnode.storage.postgres import PostgresStorage

    return PostgresStorage(url, replicas=replicas)


# URL scheme -> opener taking the whole URL and the replica URLs.
BACKENDS: dict[str, Callable[[str, Sequence[str]], Storage]] = {
    "sqlite": _open_sqlite,
    "postgresql": _open_postgresql,
    "postgres": _open_postgresql,
}


def open_storage(url: str, *, replicas: Sequence[str] = ()) -> Storage:
    """Open ``sqlite:///abs/path.db``, ``sqlite:rel/path.db``, a bare file path, or
    ``postgresql://user@host:port/dbname`` (optionally reading from ``replicas``)."""
    scheme, sep, _ = url.partition(":")
    if not sep:  # a bare path
        return _open_sqlite(url, replicas)
    opener = BACKENDS.get(scheme)
    if opener is None:
        raise ConfigError(
            f"no storage backend for {scheme!r} URLs; available: {', '.join(sorted(BACKENDS))}"
        )
    return opener(url, replicas)
