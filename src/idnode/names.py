"""Handle names: syntax checks and the case-folded key under which a handle is stored.

RFC 3651 §2.1: a handle is ``prefix/suffix``; both parts are case-insensitive in the
ASCII range only (``ä`` and ``Ä`` are different handles, ``a`` and ``A`` are not).
"""

from __future__ import annotations

import re

from idnode.errors import InvalidHandle

__all__ = [
    "MAX_HANDLE_BYTES",
    "NA_PREFIX",
    "as_handle",
    "handle_key",
    "prefix_chain",
    "split_handle",
    "validate_handle",
    "validate_prefix",
]

MAX_HANDLE_BYTES = 2048
#: The prefix of prefix handles: 0.NA/88.100 describes prefix 88.100.
NA_PREFIX = "0.NA"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def handle_key(name: str) -> str:
    """The form handles are compared and stored by: ASCII letters upper-cased."""
    return name.translate(_ASCII_UPPER)


def split_handle(handle: str) -> tuple[str, str]:
    """``("88.100.1", "PUMP-0001")`` for ``88.100.1/PUMP-0001``; InvalidHandle if malformed."""
    validate_handle(handle)
    prefix, _, suffix = handle.partition("/")
    return prefix, suffix


def as_handle(name: str) -> str:
    """``name`` as a handle: a bare prefix (``88.100.1``, as China's IDIS SDKs ask for
    a prefix's record) becomes its prefix handle ``0.NA/88.100.1``; a handle stays as
    it is. InvalidHandle for a name that is neither."""
    if "/" in name:
        return name
    try:
        validate_prefix(name)
    except InvalidHandle:
        raise InvalidHandle(
            f"{name[:80]!r} is neither a handle (prefix/suffix) nor a prefix"
        ) from None
    return f"{NA_PREFIX}/{name}"


def prefix_chain(prefix: str) -> list[str]:
    """The prefix and its parents, nearest first: 88.100.1, 88.100, 88."""
    parts = prefix.split(".")
    return [".".join(parts[:n]) for n in range(len(parts), 0, -1)]


def validate_handle(handle: str) -> None:
    if "/" not in handle:
        raise InvalidHandle(f"{handle[:80]!r} is not a handle: it needs a prefix, '/', a suffix")
    prefix, _, suffix = handle.partition("/")
    if not prefix or not suffix:
        raise InvalidHandle(f"{handle[:80]!r} has an empty prefix or suffix")
    if len(handle.encode("utf-8")) > MAX_HANDLE_BYTES:
        raise InvalidHandle(f"handle is longer than {MAX_HANDLE_BYTES} bytes")
    if _CONTROL.search(handle):
        raise InvalidHandle("handle contains control characters")


def validate_prefix(prefix: str) -> None:
    if not prefix or "/" in prefix or _CONTROL_OR_SPACE.search(prefix):
        raise InvalidHandle(f"{prefix[:80]!r} is not a valid prefix")
