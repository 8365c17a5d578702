"""A record's versions, and what changed between two of them.

The versions are read from the audit log, which holds every protocol and HTTP write
with the record before and after it, in the write's own transaction: version ``n`` is
the record after the ``n``-th write (None after a deletion). Writes the audit log does
not see (``idnode import``, ``demo``, prefix delegation: the operator's local bulk
work) show as versions of their own with operation ``unrecorded``, so the history
always ends in the record as stored now, and a record that existed before its first
audited write starts with that state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from idnode.domain import AuditEntry, HandleRecord
from idnode.edits import same_value
from idnode.handle.encoded import EncodedValues
from idnode.handle.values import HandleValue

__all__ = ["Change", "Version", "diff", "versions"]

UNRECORDED = "unrecorded"


@dataclass(frozen=True, slots=True)
class Version:
    number: int  #: from 1, oldest first
    at: float | None  #: Unix time of the write; None when unrecorded
    actor: str
    origin: str
    operation: str
    record: HandleRecord | None  #: None: the handle was deleted by this write

    @property
    def values(self) -> Sequence[HandleValue] | None:
        return None if self.record is None else self.record.values


def versions(entries: Sequence[AuditEntry], current: HandleRecord | None) -> list[Version]:
    """The versions ``entries`` (one handle's audit entries, oldest first) describe,
    ending in ``current``, the record as stored now."""
    found: list[Version] = []

    def add(
        at: float | None, actor: str, origin: str, operation: str, record: HandleRecord | None
    ) -> None:
        found.append(Version(len(found) + 1, at, actor, origin, operation, record))

    for entry in entries:
        previous = found[-1].record if found else None
        if not _same(previous, entry.before):
            add(None, "", "", UNRECORDED, entry.before)
        add(entry.at, entry.actor, entry.origin, entry.operation, entry.after)
    if not _same(found[-1].record if found else None, current):
        add(None, "", "", UNRECORDED, current)
    return found


@dataclass(frozen=True, slots=True)
class Change:
    index: int
    kind: Literal["added", "removed", "changed"]
    before: HandleValue | None
    after: HandleValue | None


def diff(before: Sequence[HandleValue] | None, after: Sequence[HandleValue] | None) -> list[Change]:
    """Value by value, by index: what was added, removed or changed (in type, data,
    TTL, permissions or references; a new timestamp alone is no change)."""
    old = {v.index: v for v in before or ()}
    new = {v.index: v for v in after or ()}
    changes = []
    for index in sorted(old.keys() | new.keys()):
        a, b = old.get(index), new.get(index)
        if a is None:
            changes.append(Change(index, "added", None, b))
        elif b is None:
            changes.append(Change(index, "removed", a, None))
        elif not same_value(a, b):
            changes.append(Change(index, "changed", a, b))
    return changes


def _same(a: HandleRecord | None, b: HandleRecord | None) -> bool:
    if a is None or b is None:
        return a is b
    return EncodedValues.of(a.values).wire == EncodedValues.of(b.values).wire
