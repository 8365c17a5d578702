"""Pure edits of a handle record, and the HS_ADMIN permission each one needs.

The service runs these inside :meth:`~idnode.storage.base.Storage.update`, so the
record an edit sees is the one it replaces: no other write slips in between the
permission check and the write.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from idnode.errors import (
    InsufficientPermissions,
    InvalidValue,
    RemoteProtocolError,
    ValueAlreadyExists,
    ValuesNotFound,
)
from idnode.handle.codec import MAX_MESSAGE_LENGTH
from idnode.handle.encoded import EncodedValues
from idnode.handle.values import MAX_VALUES, HandleValue, Permission
from idnode.handle.valuetypes import AdminPermission, parse_data

__all__ = [
    "ANSWER_OVERHEAD",
    "add_values",
    "check_new_values",
    "check_size",
    "content",
    "modify_values",
    "needed_to_add",
    "needed_to_modify",
    "needed_to_remove",
    "put_values",
    "remove_values",
    "restore_values",
    "same_value",
    "stamped",
    "stamped_if_unset",
]


#: What a resolution answer holds besides the values: envelope and header, the handle,
#: a request digest and a signature (CERTIFY; 4,096-bit RSA) with room to spare.
ANSWER_OVERHEAD = 4096


def _is_admin(value: HandleValue) -> bool:
    return value.type.upper() == "HS_ADMIN"


def needed_to_add(values: Iterable[HandleValue]) -> AdminPermission:
    return _needed(values, AdminPermission.ADD_ADMIN, AdminPermission.ADD_VALUE)


def needed_to_modify(values: Iterable[HandleValue]) -> AdminPermission:
    return _needed(values, AdminPermission.MODIFY_ADMIN, AdminPermission.MODIFY_VALUE)


def needed_to_remove(values: Iterable[HandleValue]) -> AdminPermission:
    return _needed(values, AdminPermission.REMOVE_ADMIN, AdminPermission.REMOVE_VALUE)


def _needed(
    values: Iterable[HandleValue], for_admin: AdminPermission, for_other: AdminPermission
) -> AdminPermission:
    needed = AdminPermission.NONE
    for value in values:
        needed |= for_admin if _is_admin(value) else for_other
    return needed


def check_new_values(values: Sequence[HandleValue], handle: str = "") -> None:
    """Refuse values no record should hold: duplicate indexes, malformed reserved types,
    secret keys anyone may read, more than one answer can carry."""
    if not values:
        raise InvalidValue("no values given")
    check_size(values, handle)
    seen: set[int] = set()
    for value in values:
        if value.index in seen:
            raise InvalidValue(f"index {value.index} is given twice")
        seen.add(value.index)
        try:
            parse_data(value.type, value.data)
        except RemoteProtocolError as exc:
            raise InvalidValue(f"value {value.index} ({value.type}): {exc.message}") from exc
        if value.type.upper() == "HS_SECKEY" and value.permissions & Permission.PUBLIC_READ:
            raise InvalidValue(f"value {value.index}: a secret key must not be publicly readable")


def check_size(values: Sequence[HandleValue], handle: str = "") -> None:
    """A record must fit one protocol message: a resolution answer carries all its
    values, with the handle, the headers and perhaps a signature. A record that does
    not is refused when written, on every path, rather than stored and then answered
    with an error at every resolution."""
    if len(values) > MAX_VALUES:
        raise InvalidValue(f"at most {MAX_VALUES} values per handle")
    wire = values if isinstance(values, EncodedValues) else EncodedValues.of(values)
    size = len(wire.wire)
    limit = MAX_MESSAGE_LENGTH - ANSWER_OVERHEAD - len(handle.encode("utf-8"))
    if size > limit:
        raise InvalidValue(
            f"the record's values take {size:,} bytes; a Handle answer carries at most"
            f" {limit:,} (keep large data elsewhere and give its URL)"
        )


def stamped(values: Iterable[HandleValue], now: int) -> tuple[HandleValue, ...]:
    """The values with their timestamp set to the time of the write."""
    return tuple(dataclasses.replace(v, timestamp=now) for v in values)


def stamped_if_unset(values: Iterable[HandleValue], now: int) -> tuple[HandleValue, ...]:
    """The values, those without a timestamp (0) given ``now``: records copied from
    another node keep theirs, records made from fields get the time they were made."""
    return tuple(v if v.timestamp else dataclasses.replace(v, timestamp=now) for v in values)


def _writable(value: HandleValue) -> None:
    # A value an administrator marked read-only stays so, unless anyone may write it.
    if not value.permissions & (Permission.ADMIN_WRITE | Permission.PUBLIC_WRITE):
        raise InsufficientPermissions(f"value {value.index} is not writable (permissions)")


Edit = tuple[tuple[HandleValue, ...], AdminPermission]


def add_values(current: Sequence[HandleValue], new: Sequence[HandleValue]) -> Edit:
    """``current`` plus ``new``; refused if any index is taken."""
    taken = {v.index for v in current}
    clash = sorted(v.index for v in new if v.index in taken)
    if clash:
        raise ValueAlreadyExists(f"index {', '.join(map(str, clash))} already in use")
    return _sorted((*current, *new)), needed_to_add(new)


def modify_values(current: Sequence[HandleValue], new: Sequence[HandleValue]) -> Edit:
    """``current`` with the values at ``new``'s indexes replaced; all must exist."""
    by_index = {v.index: v for v in current}
    missing = sorted(v.index for v in new if v.index not in by_index)
    if missing:
        raise ValuesNotFound(f"no value at index {', '.join(map(str, missing))}")
    return put_values(current, new)


def put_values(current: Sequence[HandleValue], new: Sequence[HandleValue]) -> Edit:
    """Add or replace by index (HTTP PUT with ``index=``).

    Replacing needs the modify permission of both the old and the new value's kind:
    turning a URL into an HS_ADMIN value is modifying an administrator.
    """
    by_index = {v.index: v for v in current}
    replacing = [v for v in new if v.index in by_index]
    replaced = [by_index[v.index] for v in replacing]
    added = [v for v in new if v.index not in by_index]
    for value in replaced:
        _writable(value)
    for value in new:
        by_index[value.index] = value
    needed = needed_to_add(added) | needed_to_modify([*replaced, *replacing])
    return _sorted(by_index.values()), needed


def remove_values(current: Sequence[HandleValue], indexes: Iterable[int]) -> Edit:
    """``current`` without the values at ``indexes``, all of which must exist."""
    wanted = set(indexes)
    if not wanted:
        raise InvalidValue("no indexes given")
    removed = [v for v in current if v.index in wanted]
    missing = sorted(wanted - {v.index for v in removed})
    if missing:
        raise ValuesNotFound(f"no value at index {', '.join(map(str, missing))}")
    for value in removed:
        _writable(value)
    return tuple(v for v in current if v.index not in wanted), needed_to_remove(removed)


def restore_values(current: Sequence[HandleValue], target: Sequence[HandleValue], now: int) -> Edit:
    """``target`` in place of ``current`` (going back to an earlier version): values
    it adds, changes or drops need the add, modify or remove permission of their kind;
    values left as they are need nothing and keep their timestamps."""
    old = {v.index: v for v in current}
    new = {v.index: v for v in target}
    added = [v for i, v in new.items() if i not in old]
    removed = [v for i, v in old.items() if i not in new]
    changed = [(old[i], v) for i, v in new.items() if i in old and not same_value(old[i], v)]
    for value in [*removed, *(before for before, _ in changed)]:
        _writable(value)
    needed = (
        needed_to_add(added)
        | needed_to_remove(removed)
        | needed_to_modify([v for pair in changed for v in pair])
    )
    touched = {v.index for v in added} | {after.index for _, after in changed}
    result = [
        dataclasses.replace(v, timestamp=now) if v.index in touched else old[v.index]
        for v in target
    ]
    return _sorted(result), needed


def same_value(a: HandleValue, b: HandleValue) -> bool:
    """Equal but for the timestamp: rewriting a value as it was is no change."""
    return content(a) == content(b)


def content(v: HandleValue) -> tuple[object, ...]:
    """What a value holds, its timestamp aside (compared for every row of a bulk
    registration run again, so without building new values)."""
    return (v.index, v.type, v.data, v.ttl_type, v.ttl, v.permissions, v.references)


def _sorted(values: Iterable[HandleValue]) -> tuple[HandleValue, ...]:
    return tuple(sorted(values, key=lambda v: v.index))
