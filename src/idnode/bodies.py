"""Request bodies read whole, but never more than a bound: the HTTP API's bulk
registration and the console's forms and uploads take their body this way, so a
client cannot make a worker hold more than the bound in memory; and their JSON
parsed so that no body a client sends is a server error."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable
from typing import Any

from idnode.errors import InvalidValue

__all__ = ["parse_json", "read_at_most"]


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


def parse_json(body: bytes) -> Any:
    """A request body's JSON; InvalidValue if it is not JSON, or nests deeper than the
    parser's stack (a client's input, so never a server error)."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidValue(f"request body is not JSON: {exc}") from exc
    except RecursionError as exc:
        raise InvalidValue("request body is JSON nested too deep") from exc
