"""Query schedules of EPCIS subscriptions: when a scheduled subscription is next due.

A schedule has up to six fields, ``second``, ``minute``, ``hour``, ``dayOfMonth``,
``month`` and ``dayOfWeek`` (1 = Monday), each a value, a range ``a-b``, a step
``*/n`` or ``a/n`` (from a, every n), or a comma list of these. A time matches when
every field matches. An omitted field matches any value, except the finer fields
below the finest one given, which are their first value: ``{"hour": "1"}`` is 01:00:00
every day, not every second of that hour. Times are UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from idnode.errors import InvalidValue

__all__ = ["FIELDS", "Schedule", "parse_schedule"]

#: Field name -> (lowest, highest), finest first.
FIELDS: dict[str, tuple[int, int]] = {
    "second": (0, 59),
    "minute": (0, 59),
    "hour": (0, 23),
    "dayOfMonth": (1, 31),
    "month": (1, 12),
    "dayOfWeek": (1, 7),
}
_SEARCH_DAYS = 366 * 5  # enough for every 29 February


@dataclass(frozen=True, slots=True)
class Schedule:
    values: dict[str, frozenset[int]]

    def next_after(self, ms: int) -> int:
        """The first matching time strictly after ``ms`` (milliseconds, UTC)."""
        start = datetime.fromtimestamp(ms // 1000, UTC) + timedelta(seconds=1)
        day = start.replace(hour=0, minute=0, second=0)
        v = self.values
        for _ in range(_SEARCH_DAYS):
            if (
                day.day in v["dayOfMonth"]
                and day.month in v["month"]
                and day.isoweekday() in v["dayOfWeek"]
            ):
                for hour in sorted(v["hour"]):
                    for minute in sorted(v["minute"]):
                        for second in sorted(v["second"]):
                            moment = day.replace(hour=hour, minute=minute, second=second)
                            if moment >= start:
                                return int(moment.timestamp() * 1000)
            day += timedelta(days=1)
        raise InvalidValue("the schedule matches no time in the next five years")


def parse_schedule(fields: Mapping[str, object]) -> Schedule:
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise InvalidValue(f"schedule fields are {', '.join(FIELDS)}; not {unknown[0]}")
    if not fields:
        raise InvalidValue("a schedule names at least one field")
    names = list(FIELDS)
    finest = min(names.index(name) for name in fields)
    values = {}
    for position, (name, (low, high)) in enumerate(FIELDS.items()):
        text = fields.get(name)
        if text is None:
            text = str(low) if position < finest else "*"
        values[name] = _values(name, str(text), low, high)
    return Schedule(values)


def _values(name: str, text: str, low: int, high: int) -> frozenset[int]:
    out: set[int] = set()
    for part in text.replace(" ", "").split(","):
        base, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if base == "*":
                first, last = low, high
            elif "-" in base:
                a, b = base.split("-", 1)
                first, last = int(a), int(b)
            else:
                first = int(base)
                last = high if step_text else first
        except ValueError:
            raise InvalidValue(f"schedule {name}: {part!r} is not a value, range or step") from None
        if step < 1 or not low <= first <= last <= high:
            raise InvalidValue(f"schedule {name}: {part!r} is outside {low}-{high}")
        out.update(range(first, last + 1, step))
    return frozenset(out)
