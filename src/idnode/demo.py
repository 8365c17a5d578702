"""Demo data: a small pump manufacturer under prefix 88.100.1.

Deterministic (seeded), so every `make run` shows the same identifiers. It models what
a real enterprise node holds: product models, serial-numbered pumps, parts, production
batches and the machines that made them, with public values for anyone and a few
values readable only by administrators (withheld from anonymous resolution).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

from idnode.domain import HandleRecord
from idnode.handle.values import HandleValue, Permission, ValueReference
from idnode.handle.valuetypes import AdminPermission, AdminValue

__all__ = ["DEMO_PREFIX", "demo_records"]

DEMO_PREFIX = "88.100.1"
_BASE_URL = "https://pumps.example.com/id"
_PRIVATE = Permission.ADMIN_READ | Permission.ADMIN_WRITE

_MODELS = [
    ("CP-50", "Centrifugal pump 50 m3/h", 7.5),
    ("CP-100", "Centrifugal pump 100 m3/h", 15.0),
    ("CP-200", "Centrifugal pump 200 m3/h", 30.0),
    ("SP-20", "Submersible pump 20 m3/h", 4.0),
    ("DP-10", "Diaphragm dosing pump 10 l/h", 0.37),
    ("GP-5", "Gear pump 5 m3/h", 2.2),
]
_PARTS = [
    ("IMP", "Impeller, stainless steel 316"),
    ("SEAL", "Mechanical seal, SiC/SiC"),
    ("MOT", "IE3 induction motor"),
    ("CAS", "Volute casing, cast iron"),
    ("SHAFT", "Drive shaft, 42CrMo4"),
]
_MACHINES = [
    ("LATHE", "CNC lathe"),
    ("MILL", "5-axis milling centre"),
    ("CAST", "Sand casting line"),
    ("TEST", "Hydraulic test bench"),
    ("ASSY", "Assembly station"),
]


def _record(
    handle: str, kind: str, fields: dict[str, str], private: dict[str, str], ts: int, admin: bytes
) -> HandleRecord:
    values = [
        HandleValue(1, "URL", f"{_BASE_URL}/{handle}".encode(), timestamp=ts),
        HandleValue(2, "KIND", kind.encode(), timestamp=ts),
    ]
    for offset, (name, text) in enumerate(fields.items()):
        values.append(HandleValue(10 + offset, name, text.encode(), timestamp=ts))
    for offset, (name, text) in enumerate(private.items()):
        values.append(
            HandleValue(50 + offset, name, text.encode(), timestamp=ts, permissions=_PRIVATE)
        )
    values.append(HandleValue(100, "HS_ADMIN", admin, timestamp=ts))
    return HandleRecord(handle, tuple(values))


def demo_records(
    serials: int = 2000, prefix: str = DEMO_PREFIX, seed: int = 42
) -> Iterator[HandleRecord]:
    """Models, then machines, parts, batches and ``serials`` serial-numbered pumps."""
    rng = random.Random(seed)
    admin = AdminValue(AdminPermission.ALL, ValueReference(f"0.NA/{prefix}", 300)).to_bytes()
    ts = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp())
    start = date(2025, 1, 6)

    for code, name, kw in _MODELS:
        yield _record(
            f"{prefix}/MODEL-{code}",
            "product-model",
            {"NAME": name, "POWER_KW": str(kw), "DATASHEET": f"{_BASE_URL}/docs/{code}.pdf"},
            {},
            ts,
            admin,
        )
    for kind, name in _MACHINES:
        for n in range(1, 5):
            yield _record(
                f"{prefix}/MACHINE-{kind}-{n:02d}",
                "machine",
                {"NAME": f"{name} #{n}", "LOCATION": f"Plant 1, hall {rng.randint(1, 3)}"},
                {"MAINTENANCE_CONTACT": f"maint-{kind.lower()}{n}@pumps.example.com"},
                ts,
                admin,
            )
    batches = []
    for week in range(52):
        day = start + timedelta(weeks=week)
        handle = f"{prefix}/BATCH-{day:%Y}-W{week + 1:02d}"
        batches.append(handle)
        yield _record(
            handle,
            "batch",
            {"PRODUCED": day.isoformat(), "LINE": f"{prefix}/MACHINE-ASSY-0{rng.randint(1, 4)}"},
            {},
            ts,
            admin,
        )
    for code, name in _PARTS:
        for n in range(1, 101):
            yield _record(
                f"{prefix}/PART-{code}-{n:05d}",
                "part",
                {
                    "NAME": name,
                    "MADE_ON": f"{prefix}/MACHINE-{rng.choice(_MACHINES)[0]}-0{rng.randint(1, 4)}",
                },
                {"SUPPLIER_LOT": f"LOT-{rng.randint(10000, 99999)}"},
                ts,
                admin,
            )
    for n in range(1, serials + 1):
        code, _, _ = rng.choice(_MODELS)
        batch = rng.choice(batches)
        yield _record(
            f"{prefix}/PUMP-{n:04d}",
            "serial-item",
            {
                "MODEL": f"{prefix}/MODEL-{code}",
                "SERIAL": f"{code}-{2025000000 + n}",
                "BATCH": batch,
                "STATUS": rng.choice(["in stock", "shipped", "installed", "in service"]),
            },
            {"CUSTOMER": f"Customer {rng.randint(1, 400):03d}"},
            ts,
            admin,
        )
