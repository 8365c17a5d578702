"""Bulk registration benchmark (``make bench-bulk``): a year's production in one file.

Writes a CSV of N serial-numbered pumps (default 1,000,000; fields of the built-in
``serial-item`` template, suffixes minted as ``PUMP-{serial:07d}``), then times what
``idnode import`` does with it on a fresh SQLite node: the checking pass, the writing
pass, and a second run of the same file (everything unchanged). Prints the figures and,
with ``--write-docs``, records them in docs/performance.md between the BENCH markers.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TextIO

from bench.resolve import machine, write_docs_section
from idnode import bulk
from idnode.bulk import BulkOptions
from idnode.config import Config
from idnode.domain import Condition, SearchQuery
from idnode.node import init_node
from idnode.service import NodeService

STATUSES = ("in stock", "in service", "returned")


def write_csv(path: Path, count: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("serial,model,manufactured,status,batch\n")
        for n in range(1, count + 1):
            week = n * 52 // (count + 1) + 1
            out.write(
                f"{n},88.100.1/MODEL-CP-{50 + n % 6 * 10},2025-{(week - 1) // 4 % 12 + 1:02d}-"
                f"{n % 28 + 1:02d},{STATUSES[n % 3]},88.100.1/BATCH-2025-W{week:02d}\n"
            )


def _time_searches(service: NodeService, count: int) -> list[tuple[str, int, float, float]]:
    """Selective queries: one serial number; one week's batch of a status; words."""
    rng = random.Random(5)

    def serial() -> SearchQuery:
        return SearchQuery(conditions=(Condition("serial", "=", str(rng.randint(1, count))),))

    def day() -> SearchQuery:
        made = Condition(
            "manufactured", "=", f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        )
        return SearchQuery(conditions=(made, Condition("status", "=", "returned")), limit=100)

    def words() -> SearchQuery:
        return SearchQuery(template="serial-item", text="returned", limit=100)

    kinds = [
        ("serial = N", serial),
        ("manufactured = one day, status = returned (first 100)", day),
        ("serial >= N and < N+50, under the prefix", lambda: _range(rng, count)),
        ("not selective: template serial-item, word 'returned' (first 100)", words),
    ]
    results = []
    for what, make in kinds:
        times, found = [], 0
        for _ in range(20):
            query = make()
            started = time.perf_counter()
            found = len(service.reads.search(query))
            times.append((time.perf_counter() - started) * 1000)
        results.append((what, found, statistics.median(times), max(times)))
    return results


def _range(rng: random.Random, count: int) -> SearchQuery:
    low = rng.randint(1, count - 50)
    conditions = (Condition("serial", ">=", str(low)), Condition("serial", "<", str(low + 50)))
    return SearchQuery(prefix="88.100.1", conditions=conditions, limit=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="idnode-bench-bulk-") as tmp:
        source = Path(tmp) / "pumps.csv"
        write_csv(source, args.count)
        config = Config(data_dir=Path(tmp) / "node")
        node = init_node(config, "88.100.1", {})
        options = BulkOptions("88.100.1", "serial-item", "PUMP-{serial:07d}")
        stages: dict[str, float] = {}

        def progress(stage: str) -> Callable[[int], None]:
            stages[stage] = time.perf_counter()
            return lambda n: None

        def opener() -> AbstractContextManager[TextIO]:
            return source.open(encoding="utf-8", newline="")

        started = time.perf_counter()
        report = bulk.register(
            node.service, opener, "csv", options, replace=False, parallel=True, progress=progress
        )
        finished = time.perf_counter()
        if not report.written or report.result.created != args.count:
            raise SystemExit(f"the import did not register every row: {report}")
        again_started = time.perf_counter()
        again = bulk.register(node.service, opener, "csv", options, replace=False, parallel=True)
        again_seconds = time.perf_counter() - again_started
        if again.result.unchanged != args.count:
            raise SystemExit(f"the second run changed something: {again.result}")
        searches = _time_searches(node.service, args.count)
        node.close()
    check = stages["writing"] - started
    write = finished - stages["writing"]
    total = finished - started
    table = "\n".join(
        [
            f"Machine: {machine()}.  ",
            f"File: {args.count:,} rows of CSV (serial-item template, minted suffixes), "
            "into a new SQLite node.",
            "",
            "| stage | seconds | rows/s |",
            "|---|---:|---:|",
            f"| checking pass (read, validate, set aside) | {check:.1f} | "
            f"{args.count / check:,.0f} |",
            f"| writing pass (compare, write) | {write:.1f} | {args.count / write:,.0f} |",
            f"| **whole import** | **{total:.1f}** | {args.count / total:,.0f} |",
            f"| same file again (all unchanged) | {again_seconds:.1f} | "
            f"{args.count / again_seconds:,.0f} |",
        ]
    )
    table += "\n\nSearch in the same node (median and slowest of 20 runs each, one process):\n\n"
    table += "| query | found | median | slowest |\n|---|---:|---:|---:|\n"
    table += "\n".join(
        f"| {what} | {found:,} | {median:.2f} ms | {worst:.2f} ms |"
        for what, found, median, worst in searches
    )
    print(table)
    if args.write_docs:
        write_docs_section("bulk", table)


if __name__ == "__main__":
    main()
