"""What an identity may do to a handle, from the HS_ADMIN values that govern it.

An identity is a handle value reference, ``index:handle``, naming the key the caller
proved it holds. An HS_ADMIN value grants its permission bits to the reference it
names, which matches an identity when

- it names the same handle (ASCII case-insensitively) and the same index, or index 0
  ("any key of that handle"); or
- it names an HS_VLIST value whose members, followed recursively, include the
  identity. Groups may nest and may form cycles; each group is visited once and the
  nesting is cut off at ``MAX_GROUP_DEPTH``.

The HS_ADMIN values that count are the handle's own and those of its prefix handle
``0.NA/<prefix>`` (prefix-level administrators), and the node's configured
administrators hold every permission everywhere on the node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from idnode.errors import AuthenticationNeeded, InsufficientPermissions, RemoteProtocolError
from idnode.handle.values import HandleValue, ValueReference
from idnode.handle.valuetypes import AdminPermission, AdminValue, ValueList
from idnode.names import handle_key

__all__ = ["MAX_GROUP_DEPTH", "Authorizer", "admin_values"]

MAX_GROUP_DEPTH = 8

Lookup = Callable[[str], "Sequence[HandleValue] | None"]


def admin_values(values: Iterable[HandleValue]) -> list[AdminValue]:
    """The well-formed HS_ADMIN values among ``values`` (malformed ones grant nothing)."""
    found = []
    for value in values:
        if value.type.upper() == "HS_ADMIN":
            try:
                found.append(AdminValue.from_bytes(value.data))
            except RemoteProtocolError:
                continue
    return found


class Authorizer:
    """Answers "may this identity do that?" by reading values through ``lookup``.

    ``lookup`` returns the values of a handle stored on this node, or None.
    """

    def __init__(self, lookup: Lookup, node_admins: Sequence[ValueReference] = ()) -> None:
        self._lookup = lookup
        self._node_admins = tuple(node_admins)

    def permissions(
        self, identity: ValueReference, governing: Iterable[AdminValue]
    ) -> AdminPermission:
        """The union of the permissions ``governing`` grants to ``identity``."""
        if any(_same(identity, admin) for admin in self._node_admins):
            return AdminPermission.ALL
        granted = AdminPermission.NONE
        for admin in governing:
            if admin.permissions & ~granted and self.is_member(identity, admin.admin):
                granted |= admin.permissions
        return granted

    def require(
        self,
        identity: ValueReference | None,
        needed: AdminPermission,
        governing: Iterable[AdminValue],
        what: str,
    ) -> None:
        """Raise unless ``identity`` holds every bit of ``needed``."""
        if identity is None:
            raise AuthenticationNeeded(f"{what} needs an authenticated identity")
        missing = needed & ~self.permissions(identity, governing)
        if missing:
            names = ", ".join(m.name or "?" for m in AdminPermission if m in missing and m.name)
            raise InsufficientPermissions(
                f"{identity.index}:{identity.handle} may not {what} (lacks {names})"
            )

    def is_member(self, identity: ValueReference, ref: ValueReference) -> bool:
        """Whether ``ref`` is ``identity`` or a group (HS_VLIST) that holds it, nested."""
        seen: set[tuple[str, int]] = set()
        pending = [(ref, 0)]
        while pending:
            current, depth = pending.pop()
            if _same(identity, current):
                return True
            key = (handle_key(current.handle), current.index)
            if key in seen or depth >= MAX_GROUP_DEPTH:
                continue
            seen.add(key)
            pending.extend((member, depth + 1) for member in self._group(current))
        return False

    def _group(self, ref: ValueReference) -> tuple[ValueReference, ...]:
        values = self._lookup(ref.handle)
        for value in values or ():
            if value.index == ref.index and value.type.upper() == "HS_VLIST":
                try:
                    return ValueList.from_bytes(value.data).members
                except RemoteProtocolError:
                    return ()
        return ()


def _same(identity: ValueReference, ref: ValueReference) -> bool:
    return handle_key(identity.handle) == handle_key(ref.handle) and ref.index in (
        0,
        identity.index,
    )
