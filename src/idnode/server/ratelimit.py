"""Per-source rate limiting of UDP answers, in the manner of DNS response rate limiting.

UDP source addresses can be forged, so a node answering any amount of UDP from anyone
can be used to flood a victim with answers. With a limit set, each source address gets
a token bucket (``rate`` answers per second, bursts up to ``burst``). A request over
the limit is usually dropped; every ``slip``-th one gets the 48-byte truncated answer
instead, so a genuine client behind a busy address learns to ask again over TCP, which
cannot be spoofed. Pure: time is passed in, no I/O.
"""

from __future__ import annotations

import enum
from collections import OrderedDict

__all__ = ["Decision", "RateLimiter"]


class Decision(enum.Enum):
    ANSWER = "answer"
    TRUNCATE = "truncate"  # answer with the truncated flag only: "use TCP"
    DROP = "drop"


class RateLimiter:
    def __init__(
        self, rate: float, burst: float | None = None, *, slip: int = 2, max_sources: int = 100_000
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else rate
        self.slip = slip
        self.max_sources = max_sources
        # source -> (tokens, time of last update, requests refused since the last slip)
        self._buckets: OrderedDict[str, tuple[float, float, int]] = OrderedDict()

    def check(self, source: str, now: float) -> Decision:
        tokens, last, refused = self._buckets.pop(source, (self.burst, now, 0))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            decision, tokens, refused = Decision.ANSWER, tokens - 1.0, 0
        else:
            refused += 1
            decision = Decision.DROP
            if self.slip and refused % self.slip == 0:
                decision = Decision.TRUNCATE
        self._buckets[source] = (tokens, now, refused)
        if len(self._buckets) > self.max_sources:
            # Bounded memory: forget the source seen longest ago (it starts afresh with
            # a full bucket, which only ever errs towards answering).
            self._buckets.popitem(last=False)
        return decision
