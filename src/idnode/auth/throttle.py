"""How many failed authentications one address may make: a token bucket per address.

Each failed login, wrong secret or unknown token takes a token; an address with none
left is refused before its credentials are even checked, until the bucket refills.
Successful authentications cost nothing. Pure: time is passed in, no I/O; one per
HTTP application (so per worker process).
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["FailureLimiter"]


class FailureLimiter:
    def __init__(self, per_minute: float, *, max_sources: int = 100_000) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.burst = per_minute
        self.rate = per_minute / 60.0
        self.max_sources = max_sources
        # address -> (tokens, time of last update)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _tokens(self, source: str, now: float) -> float:
        tokens, last = self._buckets.get(source, (self.burst, now))
        return min(self.burst, tokens + (now - last) * self.rate)

    def blocked(self, source: str, now: float) -> bool:
        """Whether ``source`` has used up its failures for now."""
        return self._tokens(source, now) < 1.0

    def failed(self, source: str, now: float) -> None:
        tokens = self._tokens(source, now)
        self._buckets.pop(source, None)
        self._buckets[source] = (max(tokens - 1.0, 0.0), now)
        if len(self._buckets) > self.max_sources:
            self._buckets.popitem(last=False)  # the longest unseen starts afresh
