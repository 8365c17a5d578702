"""Helpers for writing wire layouts by hand in tests."""

from __future__ import annotations


def h(text: str) -> bytes:
    """Hex with any whitespace, for laying bytes out field by field."""
    return bytes.fromhex("".join(text.split()))


def string(text: str) -> bytes:
    """A Handle protocol string: 4-byte length, then UTF-8."""
    data = text.encode()
    return len(data).to_bytes(4, "big") + data
