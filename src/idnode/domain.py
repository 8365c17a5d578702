"""What a node keeps and is asked about: records, audit entries, sessions, searches.

These are the types every layer shares: the storage backends store them, the service
layer hands them to the front ends, the resolver returns records it found elsewhere.
They hold no behaviour that needs I/O, so any layer may import them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from idnode.errors import InvalidValue
from idnode.handle.values import HandleValue, ValueReference

__all__ = [
    "ALL_WRITES",
    "MAX_LIMIT",
    "OPERATORS",
    "Account",
    "AuditContext",
    "AuditEntry",
    "AuditQuery",
    "Condition",
    "HandleRecord",
    "Operator",
    "SearchQuery",
    "StoredSession",
    "words",
]


@dataclass(frozen=True, slots=True)
class HandleRecord:
    """A handle as registered (original case kept) with all its values.

    Backends may return the values as :class:`~idnode.handle.encoded.EncodedValues`
    (still in wire layout) or as any other sequence.
    """

    handle: str
    values: Sequence[HandleValue]


@dataclass(frozen=True, slots=True)
class AuditContext:
    """Who makes a write, from where, and what they called it; stored with the write."""

    actor: str
    origin: str
    operation: str


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Which audit entries to read: by handle, by actor, from a time on, how many;
    the oldest first, or with ``newest_first`` the newest."""

    handle: str | None = None
    actor: str | None = None
    since: float = 0.0
    limit: int = 1000
    newest_first: bool = False


ALL_WRITES = AuditQuery()


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One recorded write: the record before and after (None where it did not exist)."""

    id: int
    at: float
    actor: str
    origin: str
    operation: str
    handle: str
    before: HandleRecord | None
    after: HandleRecord | None


@dataclass(frozen=True, slots=True)
class Account:
    """A password account: ``name`` logs in with a password and then acts as
    ``identity``. ``password`` is the hash in PHC-like text form, never the password."""

    name: str
    identity: ValueReference
    password: str = field(repr=False)
    created: int = 0


@dataclass(frozen=True, slots=True)
class StoredSession:
    """A session: who its client proved to be (if yet), until when.

    An HTTP API session keeps in ``nonce`` the nonce its client signs; a Handle
    protocol session (id ``handle:<n>``) keeps its session key there, and in
    ``counter``/``seen`` the highest message counter accepted and a bitmap of the
    ones below it that were, so that a replayed message is refused.
    """

    session_id: str
    nonce: bytes
    identity: ValueReference | None
    expires: float
    counter: int = 0
    seen: int = 0


MAX_LIMIT = 10_000
Operator = Literal["=", "<", "<=", ">", ">="]
OPERATORS: tuple[Operator, ...] = ("<=", ">=", "=", "<", ">")


def words(text: str) -> list[str]:
    """The words of a full-text search (letters, digits and underscores in a row)."""
    return re.findall(r"\w+", text)


@dataclass(frozen=True, slots=True)
class Condition:
    name: str  #: a value type, any case (a template's field name works: SERIAL)
    op: Operator
    value: str

    def __post_init__(self) -> None:
        if self.op not in OPERATORS:  # it is written into the SQL
            raise InvalidValue(f"operator {self.op!r} is not one of {', '.join(OPERATORS)}")

    @classmethod
    def parse(cls, text: str) -> Condition:
        """``status=in stock``, ``rated_power>=5``, ``manufactured<2026-01-01``."""
        for op in OPERATORS:
            name, sep, value = text.partition(op)
            if sep and name.strip() and not any(o in name for o in "<>="):
                return cls(name.strip(), op, value.strip())
        raise InvalidValue(f"a condition is NAME=VALUE, NAME>=VALUE, ... (got {text!r})")


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """Which records a search finds (by their public values; see
    :mod:`idnode.storage.search` for how the index answers it)."""

    prefix: str | None = None
    template: str | None = None  #: a name (any version) or name@version
    conditions: tuple[Condition, ...] = field(default=())
    text: str | None = None  #: words, all of which must occur
    offset: int = 0
    limit: int = 100

    def __post_init__(self) -> None:
        if not 0 < self.limit <= MAX_LIMIT or self.offset < 0:
            raise InvalidValue(f"limit must be 1 to {MAX_LIMIT} and offset not negative")
        if self.text is not None and not words(self.text):
            raise InvalidValue("the text to search for has no words")
