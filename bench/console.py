"""Server time per web console page (``python -m bench.console``), at 1,000,000 identifiers.

The node (built once in ``bench/.data/console-<pumps>/``) holds the demo's records with
``--pumps`` serial-numbered pumps made from the ``serial-item`` template, so every page
works on template records as a real node's do. It is served by ``idnode serve`` (one
worker) and each page is asked ``--runs`` times in turn, signed in as the prefix's
administrator, over loopback, one request at a time, a different pump each time. The
time is the client's, request sent to last byte read: the server's time plus a
loopback round trip. ``--write-docs`` puts the table into docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench.processes import start_server
from idnode.config import Config
from idnode.demo import demo_records
from idnode.handle.values import ValueReference
from idnode.node import init_node, open_node

DATA_ROOT = Path(__file__).parent / ".data"
PASSWORD = "bench-console-password"  # noqa: S105 - a throwaway node\'s account
DOCS = Path(__file__).parent.parent / "docs" / "performance.md"
MARK = "<!-- bench.console -->"


def ensure_node(pumps: int) -> Path:
    """A node holding the demo with ``pumps`` pumps, built if missing."""
    data_dir = DATA_ROOT / f"console-{pumps}"
    done = data_dir / "built"
    if done.exists():
        return data_dir
    if data_dir.exists():
        for child in data_dir.iterdir():
            child.unlink()
    node = init_node(Config(data_dir=data_dir), "88.100.1", {})
    step = max(pumps // 20, 1)

    def progress() -> Iterator[object]:
        for n, record in enumerate(demo_records(pumps), start=1):
            if n % step == 0:
                print(f"  loading: {n:,} records", file=sys.stderr)
            yield record

    started = time.perf_counter()
    node.service.bulk.register_many(progress(), replace=True)  # type: ignore[arg-type]
    node.service.accounts.add("bench", ValueReference("0.NA/88.100.1", 300), PASSWORD)
    node.close()
    print(f"loaded in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    done.touch()
    return data_dir


def pages(pumps: int, run: int) -> dict[str, str]:
    """The pages measured, each at a different pump (or search) per run."""
    pump = f"88.100.1/PUMP-{1 + (run * 7919) % pumps:04d}"
    return {
        "dashboard": "/console/",
        "identifiers, first page": "/console/ids",
        "search: template + status=returned": (
            "/console/ids?template=serial-item&where=status%3Dreturned"
        ),
        "search: words, one match": f"/console/ids?q={2025000000 + 1 + (run * 104729) % pumps}",
        "search: words, 1 in 10 match": "/console/ids?q=returned",
        "record (with QR and Data Matrix)": f"/console/record/{pump}",
        "edit form": f"/console/edit/{pump}",
        "history": f"/console/history/{pump}",
        "templates": "/console/templates",
        "template": "/console/templates/serial-item",
        "prefixes": "/console/prefixes",
        "identities": "/console/identities",
        "audit log": "/console/audit",
        "statistics": "/console/stats",
        "bulk upload": "/console/bulk",
        "(fragment) identifiers under the prefix": "/console/fragments/count?prefix=88.100.1",
    }


def measure(base: str, pumps: int, runs: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}
    with httpx.Client(base_url=base, timeout=60) as client:
        signed = client.post(
            "/console/signin", data={"method": "account", "name": "bench", "password": PASSWORD}
        )
        assert signed.status_code == 303, signed.text
        for run in range(runs + 1):
            for name, path in pages(pumps, run).items():
                start = time.perf_counter()
                answer = client.get(path)
                elapsed = time.perf_counter() - start
                assert answer.status_code == 200, (path, answer.status_code)
                if run:  # the first round warms the caches and the templates
                    times.setdefault(name, []).append(elapsed)
    return times


def table(times: dict[str, list[float]], what: str = "page") -> str:
    """Median, p95 and maximum of each kind of request, in milliseconds."""
    lines = [f"| {what} | median | p95 | max |", "|---|---:|---:|---:|"]
    for name, values in times.items():
        ordered = sorted(values)
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        lines.append(
            f"| {name} | {statistics.median(ordered) * 1000:.1f} ms | {p95 * 1000:.1f} ms "
            f"| {ordered[-1] * 1000:.1f} ms |"
        )
    return "\n".join(lines)


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    python = platform.python_version()
    return f"{os.cpu_count()} cores ({cpu}), Python {python}, {platform.system()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pumps", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    data_dir = ensure_node(args.pumps)
    node = open_node(Config(data_dir=data_dir))
    count = node.service.reads.count("88.100.1")
    node.close()
    server, _, http_port = start_server(data_dir, workers=1)
    try:
        times = measure(f"http://127.0.0.1:{http_port}", args.pumps, args.runs)
    finally:
        server.terminate()
        server.wait(30)
    report = (
        f"{count:,} identifiers (demo records, {args.pumps:,} pumps), SQLite, one worker; "
        f"{args.runs} requests per page, signed in; {machine()}.\n\n{table(times)}\n"
    )
    print(report)
    if args.write_docs:
        write_docs(MARK, report)


def write_docs(mark: str, report: str) -> None:
    """Put ``report`` between the two ``mark`` lines of docs/performance.md."""
    text = DOCS.read_text()
    start, end = text.index(mark), text.rindex(mark)
    DOCS.write_text(text[: start + len(mark)] + "\n" + report + text[end:])


if __name__ == "__main__":
    main()
