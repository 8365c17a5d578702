"""EPCIS capture and queries at 1,000,000 events (``python -m bench.trace``).

A year of a plant, made up and scaled: casting lots go into castings
(transformation), castings into pumps (transformation), pumps onto pallets, pallets
into containers, containers onto trucks (aggregations), every pump inspected and seen
eight times in service. So a trace down from a lot runs five levels: castings, pumps,
pallets, containers, trucks. Events carry no eventID, so each capture also computes
the canonical hash.

Measured in one process, through the service (``NodeService.trace``), as a front end
calls it, on a node in ``bench/.data/trace-<events>/`` (SQLite; ``--database`` for
PostgreSQL): capture in documents of 5,000 events, each checked against the schema,
hashed and written in one transaction; then ``--runs`` queries of each kind on random
identifiers. ``--write-docs`` puts the table into docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.console import machine, table, write_docs
from idnode.config import Config
from idnode.epcis.documents import capture_document
from idnode.epcis.queries import parse_query
from idnode.handle.values import ValueReference
from idnode.node import init_node, open_node
from idnode.service import Caller

DATA_ROOT = Path(__file__).parent / ".data"
MARK = "<!-- bench.trace -->"
PREFIX = "88.100.1"
#: Per pump: assembled, inspected, seen eight times in service; per casting: cast.
EVENTS_PER_PUMP = 11
CASTINGS_PER_LOT = 50
PUMPS_PER_PALLET = 12
PALLETS_PER_CONTAINER = 20
CONTAINERS_PER_TRUCK = 2


def lot(n: int) -> str:
    return f"urn:epc:class:lgtin:4012345.077777.L{n:06d}"


def casting(n: int) -> str:
    return f"{PREFIX}/CAST-{n:07d}"


def pump(n: int) -> str:
    return f"{PREFIX}/PUMP-{n:07d}"


def sscc(kind: int, n: int) -> str:
    return f"urn:epc:id:sscc:4012345.{kind}{n:09d}"


def plant_events(pumps: int, seed: int = 11) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    start = 1_767_225_600  # 2026-01-01T00:00:00Z

    def at(seconds: float) -> dict[str, str]:
        moment = time.gmtime(start + seconds)
        return {"eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", moment),
                "eventTimeZoneOffset": "+08:00"}  # fmt: skip

    step = 31_536_000 / pumps  # a year
    pallet = container = truck = 0
    for n in range(pumps):
        t = n * step
        yield {
            "type": "TransformationEvent",
            **at(t),
            "bizStep": "commissioning",
            "inputQuantityList": [
                {"epcClass": lot(n // CASTINGS_PER_LOT), "quantity": 21.5, "uom": "KGM"}
            ],
            "outputEPCList": [casting(n)],
            "readPoint": {"id": f"{PREFIX}/MACHINE-CAST-01"},
        }
        yield {
            "type": "TransformationEvent",
            **at(t + 60),
            "bizStep": "assembling",
            "inputEPCList": [casting(n)],
            "outputEPCList": [pump(n)],
            "readPoint": {"id": f"{PREFIX}/MACHINE-ASSY-0{n % 4 + 1}"},
        }
        yield {
            "type": "ObjectEvent",
            **at(t + 120),
            "action": "OBSERVE",
            "epcList": [pump(n)],
            "bizStep": "inspecting",
            "disposition": "conformant",
            "sensorElementList": [
                {
                    "sensorReport": [
                        {
                            "type": "gs1:Temperature",
                            "value": round(rng.uniform(20, 40), 1),
                            "uom": "CEL",
                        }
                    ]
                }
            ],
        }
        if n % PUMPS_PER_PALLET == PUMPS_PER_PALLET - 1:
            first = n - PUMPS_PER_PALLET + 1
            yield {
                "type": "AggregationEvent",
                **at(t + 180),
                "action": "ADD",
                "parentID": sscc(1, pallet),
                "bizStep": "packing",
                "childEPCs": [pump(k) for k in range(first, n + 1)],
            }
            pallet += 1
            if pallet % PALLETS_PER_CONTAINER == 0:
                yield {
                    "type": "AggregationEvent",
                    **at(t + 240),
                    "action": "ADD",
                    "parentID": sscc(2, container),
                    "bizStep": "loading",
                    "childEPCs": [
                        sscc(1, k) for k in range(pallet - PALLETS_PER_CONTAINER, pallet)
                    ],
                }
                container += 1
                if container % CONTAINERS_PER_TRUCK == 0:
                    yield {
                        "type": "AggregationEvent",
                        **at(t + 300),
                        "action": "ADD",
                        "parentID": sscc(3, truck),
                        "bizStep": "loading",
                        "childEPCs": [sscc(2, container - 2), sscc(2, container - 1)],
                    }
                    truck += 1
        for visit in range(EVENTS_PER_PUMP - 3):
            yield {
                "type": "ObjectEvent",
                **at(t + 86_400 * (30 + 30 * visit)),
                "action": "OBSERVE",
                "epcList": [pump(n)],
                "bizStep": "inspecting",
                "readPoint": {"id": f"urn:epc:id:sgln:4012345.{rng.randint(1, 999):05d}.0"},
            }


def ensure_node(events: int, database: str) -> tuple[Path, float, int]:
    """The node, built if missing; capture rate (events/s) of the build, or of a
    fresh 100,000 if it was built before (0: not measured)."""
    data_dir = DATA_ROOT / f"trace-{events}" if not database else DATA_ROOT / "trace-pg"
    marker = data_dir / "built"
    if marker.exists():
        return data_dir, float(json.loads(marker.read_text())["rate"]), 0
    shutil.rmtree(data_dir, ignore_errors=True)
    settings: dict[str, Any] = {"handle_port": 0, "http_port": 0}
    if database:
        settings["database"] = database
    config = Config(data_dir=data_dir).replace(**settings)
    node = init_node(config, PREFIX, settings)
    caller = Caller(ValueReference(config.admin_handle or f"0.NA/{PREFIX}", 300), "bench")
    pumps = events // EVENTS_PER_PUMP
    batch: list[dict[str, Any]] = []
    stored, began = 0, time.perf_counter()
    for event in plant_events(pumps):
        batch.append(event)
        if len(batch) == 5000:
            stored += _capture(node, caller, batch)
            batch = []
            if stored % 100_000 < 5000:
                rate = stored / (time.perf_counter() - began)
                print(f"  {stored:,} events, {rate:,.0f}/s", flush=True)
    if batch:
        stored += _capture(node, caller, batch)
    rate = stored / (time.perf_counter() - began)
    node.close()
    marker.write_text(json.dumps({"rate": rate, "events": stored}))
    return data_dir, rate, stored


def _capture(node: Any, caller: Caller, events: list[dict[str, Any]]) -> int:
    job = node.service.trace.capture(caller, capture_document(events), access="public")
    return int(job.events)


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        out.append(time.perf_counter() - began)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--database", default="", help="a PostgreSQL URL (default: SQLite)")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    data_dir, rate, built = ensure_node(args.events, args.database)
    node = open_node(Config(data_dir=data_dir))
    trace = node.service.trace
    config = node.config
    caller = Caller(ValueReference(config.admin_handle or f"0.NA/{PREFIX}", 300), "bench")
    audience = trace.audience(caller)
    pumps = args.events // EVENTS_PER_PUMP
    rng = random.Random(5)
    total = trace.events(caller, parse_query([("perPage", "1")], audience)).events
    del total

    def match_epc() -> None:
        query = parse_query([("MATCH_epc", pump(rng.randrange(pumps)))], audience)
        # inspected, eight service visits, and packed (all but the last few pumps)
        assert len(trace.events(caller, query).events) in (9, 10)

    def match_any_paged() -> None:
        query = parse_query([("EQ_bizStep", "inspecting"), ("perPage", "30"),
                             ("GE_eventTime", "2026-06-01T00:00:00Z")], audience)  # fmt: skip
        assert len(trace.events(caller, query).events) == 30

    def trace_down() -> None:
        found = trace.trace(caller, lot(rng.randrange(pumps // CASTINGS_PER_LOT)), "down", 5)
        assert max(found.nodes.values()) == 5, found.nodes

    def trace_up() -> None:
        pallets = pumps // PUMPS_PER_PALLET
        trucks = pallets // PALLETS_PER_CONTAINER // CONTAINERS_PER_TRUCK
        found = trace.trace(caller, sscc(3, rng.randrange(trucks)), "up", 5)
        assert max(found.nodes.values()) == 5, found.nodes

    def recall() -> None:
        assert len(trace.recall(caller, lot(rng.randrange(pumps // CASTINGS_PER_LOT)))) > 50

    kinds = {
        "`MATCH_epc` of a pump (10 events)": match_epc,
        "`EQ_bizStep=inspecting`, from a date, first page of 30": match_any_paged,
        "trace down 5 levels from a casting lot (about 105 identifiers)": trace_down,
        "trace up 5 levels from a truck (about 1,100 identifiers)": trace_up,
        "recall of a casting lot (to the trucks, last seen of each)": recall,
    }
    times = {name: timed(fn, args.runs) for name, fn in kinds.items()}
    node.close()
    backend = "PostgreSQL" if args.database else "SQLite"
    captured = f"capture: {rate:,.0f} events/s " + (
        f"over the {built:,} events of the build" if built else "when this node was built"
    )
    report = (
        f"{args.events:,} events ({backend}), {args.runs} runs each, in process through the"
        f" service; {machine()}.\n\n{captured} (documents of 5,000 events, schema-checked,"
        f" hashed, one transaction each).\n\n{table(times, 'query')}\n"
    )
    print(report)
    if args.write_docs:
        write_docs(MARK, report)


if __name__ == "__main__":
    main()
