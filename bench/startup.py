"""Start-up time of the ``idnode`` command against a bare interpreter (``python -m bench.startup``).

Each command runs ``--runs`` times after one warm-up run; the table gives the median
and the fastest wall time, and the median CPU time (user + system) of the process,
which a busy machine inflates less than wall time. ``resolve`` asks a port nothing
listens on, so it measures start-up and a refused connection.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time

__all__ = ["COMMANDS", "main", "measure"]

_IDNODE = [sys.executable, "-m", "idnode"]
COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -c 'import typer'": [sys.executable, "-c", "import typer"],
    "idnode --version": [*_IDNODE, "--version"],
    "idnode --help": [*_IDNODE, "--help"],
    "idnode resolve --help": [*_IDNODE, "resolve", "--help"],
    "idnode resolve --server (refused)": [
        *_IDNODE,
        *("resolve", "88.100.1/X", "--server", "127.0.0.1:9", "--timeout", "0.2"),
    ],
}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(argv: list[str], runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of ``runs`` runs of ``argv``."""
    subprocess.run(argv, capture_output=True, check=False)
    walls, cpus = [], []
    for _ in range(runs):
        cpu, start = _cpu(), time.perf_counter()
        subprocess.run(argv, capture_output=True, check=False)
        walls.append(time.perf_counter() - start)
        cpus.append(_cpu() - cpu)
    return walls, cpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    base = statistics.median(measure(COMMANDS["python -c pass"], runs)[0])
    print(f"{'command':36} {'median':>8} {'fastest':>8} {'cpu':>8} {'x pass':>7}")
    for name, argv in COMMANDS.items():
        walls, cpus = measure(argv, runs)
        median = statistics.median(walls)
        print(
            f"{name:36} {median * 1000:6.0f}ms {min(walls) * 1000:6.0f}ms"
            f" {statistics.median(cpus) * 1000:6.0f}ms {median / base:6.1f}x"
        )


if __name__ == "__main__":
    main()
