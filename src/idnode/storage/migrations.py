"""Ordered schema migrations, recorded in the database they were applied to.

Append only: a released migration is never edited, a change is a new entry. A database
whose recorded version is newer than the newest entry here was written by a newer
idnode, and is refused rather than guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MIGRATIONS", "Migration"]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "handles and homed prefixes",
        (
            # key: the handle with ASCII letters upper-cased, handle: as registered.
            # values_wire: the values in Handle wire layout (count, then values), so a
            # resolution decodes them without a second format in between.
            """CREATE TABLE handles (
            key         TEXT PRIMARY KEY,
            handle      TEXT NOT NULL,
            values_wire BLOB NOT NULL,
            updated_at  INTEGER NOT NULL
            ) WITHOUT ROWID""",
            """CREATE TABLE prefixes (
                key    TEXT PRIMARY KEY,
                prefix TEXT NOT NULL
            ) WITHOUT ROWID""",
        ),
    ),
)
