"""Which message counters of a session have been seen: a sliding window, as IPsec keeps.

Each message in a Handle protocol session carries a counter under its MAC. A server
that accepted every counter once would let a captured write be sent again; one that
demanded strictly increasing counters would refuse a client whose messages, sent on
several connections, arrive out of order. So the state is the next counter above the
highest accepted, and a bitmap of the :data:`WINDOW` counters below that highest one
(bit i set: counter ``highest - 1 - i`` was accepted). Older counters are refused.
Pure: the caller stores the state (in the database, shared by worker processes).
"""

from __future__ import annotations

__all__ = ["WINDOW", "accept"]

#: Counters remembered below the highest; fits a signed 64-bit column.
WINDOW = 62
_MASK = (1 << WINDOW) - 1


def accept(state: tuple[int, int], counter: int) -> tuple[int, int] | None:
    """The state after accepting ``counter``, or None if it was seen or is too old.

    ``state`` is (next, seen): ``next`` one above the highest counter accepted
    (0 when none was), ``seen`` the bitmap below the highest.
    """
    following, seen = state
    if counter >= following:
        shift = counter + 1 - following
        if following == 0:
            return counter + 1, 0
        return counter + 1, ((seen << shift) | (1 << (shift - 1))) & _MASK
    back = following - 2 - counter
    if back < 0 or back >= WINDOW or (seen >> back) & 1:
        return None
    return following, seen | (1 << back)
