"""PostgreSQL benchmark: 10,000,000 identifiers, bulk load, size, resolution cold and warm.

1. bulk load rate: 500,000 records through ``put_many`` (COPY) into an empty schema;
2. size: table and index bytes per identifier of the 10,000,000-record node;
3. resolution over UDP with the per-process cache cold (handles uniformly at random
   from all 10,000,000, so almost every request reaches PostgreSQL) and warm (a hot
   set that fits the cache, read once before measuring).

``python -m bench.postgres --write-docs`` records the table in docs/performance.md.
Building the 10,000,000-record node the first time takes several minutes.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time

import psycopg
import psycopg.conninfo
import psycopg.sql

from bench.dataset import ensure_dataset, fast_records
from bench.processes import start_server
from bench.resolve import ROOT, Row, machine, measure, write_docs_section
from idnode.storage.postgres import PostgresStorage

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/idnode_bench"


def _ensure_database(url: str) -> None:
    """Create the benchmark's database if it does not exist yet."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    name = str(info.get("dbname", ""))
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.OperationalError:
        admin = psycopg.conninfo.make_conninfo(url, dbname="postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))


def _bulk_load_rate(url: str, count: int) -> float:
    schema = "idnode_bench_load"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in url else "?"
    store = PostgresStorage(f"{url}{sep}options=-csearch_path%3D{schema}")
    try:
        started = time.perf_counter()
        written, _ = store.put_many(fast_records(count), replace=False)
        seconds = time.perf_counter() - started
    finally:
        store.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    return written / seconds


def _sizes(url: str) -> tuple[int, int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*), pg_relation_size('handles'), pg_indexes_size('handles') FROM handles"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default=DEFAULT_URL)
    parser.add_argument("--count", type=int, default=10_000_000)
    parser.add_argument("--hot", type=int, default=5_000, help="hot set (fits the cache)")
    parser.add_argument("--load-count", type=int, default=500_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--http-connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--tick", type=float, default=0.5, help="generator clock tick in ms")
    parser.add_argument("--repeat", type=int, default=1, help="half-load runs")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()

    _ensure_database(args.database)
    print("measuring bulk load ...", file=sys.stderr)
    load_rate = _bulk_load_rate(args.database, args.load_count)
    data_dir, _ = ensure_dataset(args.count, args.database)
    rows, table_bytes, index_bytes = _sizes(args.database)

    proc, handle_port, _ = start_server(data_dir, args.workers)
    results: list[tuple[str, Row]] = []
    try:
        print("measuring cold cache ...", file=sys.stderr)
        results.append(("cold: uniform over all identifiers", measure("udp", handle_port, args)))
        hot = copy.copy(args)
        hot.count = args.hot
        print("measuring warm cache ...", file=sys.stderr)
        results.append((f"warm: hot set of {args.hot:,}", measure("udp", handle_port, hot)))
    finally:
        proc.terminate()
        proc.wait(30)

    lines = [
        f"Machine: {machine()}; PostgreSQL on the same machine.  ",
        f"Node: {rows:,} identifiers in PostgreSQL, `idnode serve --workers {args.workers}` "
        f"with the default cache (10,000 records per worker); load: {args.clients} "
        f"generator processes on the same machine, {args.duration:.0f} s per run, UDP.",
        "",
        "| cache | peak (resolutions/s) | p50 at half load | p99 at half load | errors |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, row in results:
        lines.append(
            f"| {label} | {row.peak:,.0f} | {row.p50_ms:.2f} ms | {row.p99_ms:.2f} ms | "
            f"{row.errors} |"
        )
    lines += [
        "",
        f"Bulk load (COPY into a staging table, then one merge per 20,000 rows): "
        f"{load_rate:,.0f} identifiers/s.  ",
        f"Size: table {table_bytes / rows:.0f} bytes and primary-key index "
        f"{index_bytes / rows:.0f} bytes per identifier "
        f"({(table_bytes + index_bytes) / 2**30:.1f} GiB in all).",
    ]
    table = "\n".join(lines)
    print(table)
    if args.write_docs:
        write_docs_section("postgres", table)
        print(f"\nwritten to {(ROOT / 'docs' / 'performance.md').relative_to(ROOT)}")


if __name__ == "__main__":
    main()
