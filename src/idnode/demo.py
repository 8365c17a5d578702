"""Demo data: a small pump manufacturer under prefix 88.100.1.

Deterministic (seeded), so every `make run` shows the same identifiers. It models what
a real enterprise node holds: product models, serial-numbered pumps, parts, production
batches and the machines that made them. Every record is made from the built-in
template of its kind (docs/templates.md), so the documented searches (`--template
serial-item --where status=returned`) work on it, and its partner and owner fields are
withheld from anonymous resolution as the template says.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

from idnode.domain import HandleRecord
from idnode.handle.values import HandleValue, ValueReference
from idnode.handle.valuetypes import AdminPermission, AdminValue
from idnode.templates import BUILTIN

__all__ = ["DEMO_PREFIX", "demo_events", "demo_records"]

DEMO_PREFIX = "88.100.1"
_BASE_URL = "https://pumps.example.com/id"

# code, name, motor kW, GTIN (example GS1 company prefix 4012345), list price
_MODELS = [
    ("CP-50", "Centrifugal pump 50 m3/h", 7.5, "04012345000016", 2450),
    ("CP-100", "Centrifugal pump 100 m3/h", 15.0, "04012345000023", 3980),
    ("CP-200", "Centrifugal pump 200 m3/h", 30.0, "04012345000030", 6720),
    ("SP-20", "Submersible pump 20 m3/h", 4.0, "04012345000047", 1890),
    ("DP-10", "Diaphragm dosing pump 10 l/h", 0.37, "04012345000054", 960),
    ("GP-5", "Gear pump 5 m3/h", 2.2, "04012345000061", 1340),
]
# code, name, material, weight in kg
_PARTS = [
    ("IMP", "Impeller", "stainless steel 316", 3.2),
    ("SEAL", "Mechanical seal", "SiC/SiC", 0.4),
    ("MOT", "IE3 induction motor", "cast iron, copper", 48.0),
    ("CAS", "Volute casing", "cast iron EN-GJL-250", 21.5),
    ("SHAFT", "Drive shaft", "42CrMo4", 2.9),
]
_STATUSES = ("in stock", "in service", "returned", "scrapped")
_MACHINES = [
    ("LATHE", "CNC lathe"),
    ("MILL", "5-axis milling centre"),
    ("CAST", "Sand casting line"),
    ("TEST", "Hydraulic test bench"),
    ("ASSY", "Assembly station"),
]


def _record(
    template: str, handle: str, fields: dict[str, str | int | float], ts: int, admin: bytes
) -> HandleRecord:
    """A record made from a built-in template, as `idnode import --template` makes it,
    with the prefix administrator's HS_ADMIN value."""
    made = BUILTIN[template].values(fields, timestamp=ts)
    return HandleRecord(handle, (*made, HandleValue(100, "HS_ADMIN", admin, timestamp=ts)))


def demo_records(
    serials: int = 2000, prefix: str = DEMO_PREFIX, seed: int = 42
) -> Iterator[HandleRecord]:
    """Models, then machines, batches, parts and ``serials`` serial-numbered pumps."""
    rng = random.Random(seed)
    admin = AdminValue(AdminPermission.ALL, ValueReference(f"0.NA/{prefix}", 300)).to_bytes()
    ts = int(datetime(2026, 7, 6, tzinfo=UTC).timestamp())
    start = date(2025, 7, 7)  # a Monday: a year of weekly batches, to 2026-06-29

    for code, name, kw, gtin, price in _MODELS:
        yield _record(
            "product-model",
            f"{prefix}/MODEL-{code}",
            {
                "name": name,
                "gtin": gtin,
                "url": f"{_BASE_URL}/docs/{code}.pdf",
                "description": f"{name}, {kw} kW motor",
                "price": price,
            },
            ts,
            admin,
        )
    for kind, name in _MACHINES:
        for n in range(1, 5):
            commissioned = date(2015 + rng.randint(0, 9), rng.randint(1, 12), 1)
            yield _record(
                "machine",
                f"{prefix}/MACHINE-{kind}-{n:02d}",
                {
                    "name": f"{name} #{n}",
                    "location": f"Plant 1, hall {rng.randint(1, 3)}",
                    "commissioned": commissioned.isoformat(),
                    "maintenance_interval_days": rng.choice((30, 90, 180)),
                    "controller_address": f"opc.tcp://10.1.{n}.{rng.randint(10, 250)}:4840",
                    "url": f"{_BASE_URL}/{prefix}/MACHINE-{kind}-{n:02d}",
                },
                ts,
                admin,
            )
    batches: list[tuple[str, str, date]] = []
    for week in range(52):
        day = start + timedelta(weeks=week)
        year, iso_week, _ = day.isocalendar()
        handle = f"{prefix}/BATCH-{year}-W{iso_week:02d}"
        model = rng.choice(_MODELS)[0]
        batches.append((handle, model, day))
        yield _record(
            "batch",
            handle,
            {
                "produced": day.isoformat(),
                "model": f"{prefix}/MODEL-{model}",
                "quantity": rng.randint(20, 120),
                "line": f"{prefix}/MACHINE-ASSY-0{rng.randint(1, 4)}",
                "quality_report": f"{_BASE_URL}/quality/{year}-W{iso_week:02d}.pdf",
            },
            ts,
            admin,
        )
    for code, name, material, weight in _PARTS:
        for n in range(1, 101):
            yield _record(
                "part",
                f"{prefix}/PART-{code}-{n:05d}",
                {
                    "name": name,
                    "material": material,
                    "supplier": f"Supplier {rng.randint(1, 12):02d}, lot {rng.randint(1, 999)}",
                    "weight_kg": weight,
                    "url": f"{_BASE_URL}/{prefix}/PART-{code}-{n:05d}",
                },
                ts,
                admin,
            )
    for n in range(1, serials + 1):
        batch, model, day = rng.choice(batches)
        manufactured = day + timedelta(days=rng.randint(0, 4))
        yield _record(
            "serial-item",
            f"{prefix}/PUMP-{n:04d}",
            {
                "serial": f"{model}-{2025000000 + n}",
                "model": f"{prefix}/MODEL-{model}",
                "url": f"{_BASE_URL}/{prefix}/PUMP-{n:04d}",
                "manufactured": manufactured.isoformat(),
                "batch": batch,
                "status": rng.choices(_STATUSES, weights=(30, 55, 10, 5))[0],
                "customer": f"Customer {rng.randint(1, 400):03d}",
            },
            ts,
            admin,
        )


#: The demo's pallets and customers as GS1 keys (example company prefix 4012345).
_PLANT = "urn:epc:id:sgln:4012345.00001.0"


def demo_events(records: list[HandleRecord], prefix: str = DEMO_PREFIX, seed: int = 7
                ) -> Iterator[dict[str, object]]:  # fmt: skip
    """A year of production as EPCIS events, made from the demo's records: each pump
    assembled from its batch and five parts, tested on a bench (with the pressure and
    temperature the bench read), pumps packed onto pallets by batch, pallets shipped
    to customers and unpacked there, and the pumps whose status is "returned" received
    back. Ordered by time, as a plant would capture them."""
    rng = random.Random(seed)
    pumps = []
    for record in records:
        if "/PUMP-" not in record.handle:
            continue
        fields = {v.type: v.data.decode() for v in record.values if v.type != "HS_ADMIN"}
        pumps.append((record.handle, fields["BATCH"], date.fromisoformat(fields["MANUFACTURED"]),
                      fields["STATUS"], int(fields["CUSTOMER"].split()[-1])))  # fmt: skip
    events: list[tuple[str, dict[str, object]]] = []

    def at(day: date, hour: int, minute: int = 0) -> str:
        return f"{day.isoformat()}T{hour:02d}:{minute:02d}:00.000+08:00"

    def add(when: str, event: dict[str, object]) -> None:
        event = {"type": event.pop("type"), "eventTime": when, "eventTimeZoneOffset": "+08:00",
                 **event}  # fmt: skip
        events.append((when, event))

    by_batch: dict[tuple[str, date], list[str]] = {}
    for n, (pump, batch, day, status, customer) in enumerate(pumps):
        parts = [f"{prefix}/PART-{code}-{rng.randint(1, 100):05d}" for code, *_ in _PARTS]
        add(at(day, 8, n % 60), {
            "type": "TransformationEvent", "inputEPCList": [batch, *parts],
            "outputEPCList": [pump], "bizStep": "assembling",
            "readPoint": {"id": f"{prefix}/MACHINE-ASSY-0{rng.randint(1, 4)}"},
            "bizLocation": {"id": _PLANT},
        })  # fmt: skip
        add(at(day, 14, n % 60), {
            "type": "ObjectEvent", "action": "OBSERVE", "epcList": [pump],
            "bizStep": "inspecting", "disposition": "conformant",
            "readPoint": {"id": f"{prefix}/MACHINE-TEST-0{rng.randint(1, 4)}"},
            "sensorElementList": [{"sensorReport": [
                {"type": "gs1:AbsolutePressure", "value": round(rng.uniform(5.5, 6.5), 2),
                 "uom": "BAR"},
                {"type": "gs1:Temperature", "value": round(rng.uniform(21, 38), 1), "uom": "CEL"},
            ]}],
        })  # fmt: skip
        by_batch.setdefault((batch, day), []).append(pump)
        if status == "returned":
            back = day + timedelta(days=rng.randint(60, 200))
            add(at(back, 10), {
                "type": "ObjectEvent", "action": "OBSERVE", "epcList": [pump],
                "bizStep": "receiving", "disposition": "returned", "bizLocation": {"id": _PLANT},
                "sourceList": [{"type": "owning_party",
                                "source": f"urn:epc:id:pgln:4012345.{customer:05d}"}],
            })  # fmt: skip
    pallet = 0
    for (_, day), packed in sorted(by_batch.items(), key=lambda item: (item[0][1], item[0][0])):
        for start in range(0, len(packed), 12):
            pallet += 1
            sscc = f"urn:epc:id:sscc:4012345.0{pallet:09d}"
            on = packed[start : start + 12]
            customer = rng.randint(1, 400)
            where = f"urn:epc:id:sgln:4012345.{customer:05d}.0"
            add(at(day + timedelta(days=1), 9), {
                "type": "AggregationEvent", "action": "ADD", "parentID": sscc, "childEPCs": on,
                "bizStep": "packing", "bizLocation": {"id": _PLANT},
            })  # fmt: skip
            add(at(day + timedelta(days=2), 7), {
                "type": "ObjectEvent", "action": "OBSERVE", "epcList": [sscc],
                "bizStep": "shipping", "disposition": "in_transit", "readPoint": {"id": _PLANT},
                "bizTransactionList": [{"type": "po", "bizTransaction":
                                        f"urn:epcglobal:cbv:bt:4012345000009:PO-{pallet}"}],
                "destinationList": [{"type": "owning_party",
                                     "destination": f"urn:epc:id:pgln:4012345.{customer:05d}"}],
            })  # fmt: skip
            add(at(day + timedelta(days=4), 11), {
                "type": "AggregationEvent", "action": "DELETE", "parentID": sscc,
                "bizStep": "unpacking", "bizLocation": {"id": where},
            })  # fmt: skip
    for _, event in sorted(events, key=lambda item: item[0]):
        yield event
