"""A clock the test sets: code that takes a clock is tested by stepping time, not sleeping."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now
