"""Request bodies read whole, but never more than a bound: the HTTP API's bulk
registration and the console's forms and uploads take their body this way, so a
client cannot make a worker hold more than the bound in memory."""

from __future__ import annotations

from collections.abc import AsyncIterable

from idnode.errors import InvalidValue

__all__ = ["read_at_most"]


async def read_at_most(chunks: AsyncIterable[bytes], limit: int, too_large: str) -> bytes:
    """The body ``chunks`` carry; InvalidValue(``too_large``) once past ``limit`` bytes,
    without reading the rest."""
    parts = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise InvalidValue(too_large)
        parts.append(chunk)
    return b"".join(parts)
