"""Build (once) the benchmark node: 1,000,000 identifiers under 88.100.1.

The node lives in bench/.data/<count>/ and is reused while its record count matches,
since loading a million identifiers takes a while and is not what is being measured.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

from idnode.config import Config
from idnode.domain import HandleRecord
from idnode.handle.encoded import EncodedValues
from idnode.handle.values import HandleValue, Permission, ValueReference
from idnode.handle.valuetypes import AdminPermission, AdminValue
from idnode.node import init_node, open_node

PREFIX = "88.100.1"
DATA_ROOT = Path(__file__).parent / ".data"
_TS = 1_767_571_200  # 2026-01-05
_URL = "https://pumps.example.com/id"


def handle_for(n: int) -> str:
    return f"{PREFIX}/ITEM-{n:07d}"


def records(count: int) -> Iterator[HandleRecord]:
    admin = AdminValue(AdminPermission.ALL, ValueReference(f"0.NA/{PREFIX}", 300)).to_bytes()
    private = Permission.ADMIN_READ | Permission.ADMIN_WRITE
    for n in range(count):
        handle = handle_for(n)
        yield HandleRecord(
            handle,
            (
                HandleValue(
                    1, "URL", f"https://pumps.example.com/id/{handle}".encode(), timestamp=_TS
                ),
                HandleValue(2, "KIND", b"serial-item", timestamp=_TS),
                HandleValue(
                    10, "MODEL", f"{PREFIX}/MODEL-CP-{50 * (1 + n % 4)}".encode(), timestamp=_TS
                ),
                HandleValue(11, "SERIAL", f"CP-{2025000000 + n}".encode(), timestamp=_TS),
                HandleValue(
                    50,
                    "CUSTOMER",
                    f"Customer {n % 400:03d}".encode(),
                    timestamp=_TS,
                    permissions=private,
                ),
                HandleValue(100, "HS_ADMIN", admin, timestamp=_TS),
            ),
        )


def fast_records(count: int) -> Iterator[HandleRecord]:
    """Records of the same shape and size as :func:`records`, from a byte template.

    For the 10,000,000-identifier PostgreSQL dataset, where building value objects
    would take longer than loading the database. Only the handle (in the record and
    its URL) differs between records; the other values repeat the first record's.
    """
    wire = EncodedValues.of(next(records(1)).values).wire
    first = handle_for(0).encode()
    for n in range(count):
        handle = handle_for(n)
        # Same length as the template's handle (numbers are zero-padded), so every
        # length field in the template stays right.
        yield HandleRecord(handle, EncodedValues(wire.replace(first, handle.encode())))


def ensure_dataset(count: int, database: str = "") -> tuple[Path, float | None]:
    """A node holding ``count`` identifiers, built if missing, in SQLite or ``database``.

    Returns its data directory and, when it had to be built, the seconds loading took.
    """
    data_dir = DATA_ROOT / (f"pg-{count}" if database else str(count))
    config = Config(data_dir=data_dir, database=database)
    if (data_dir / "idnode.toml").exists():
        node = open_node(config)
        have = node.service.reads.count(PREFIX)
        node.close()
        if have == count:
            return data_dir, None
        print(f"{data_dir} has {have} records, want {count}: rebuilding", file=sys.stderr)
        for child in data_dir.iterdir():
            child.unlink()
    if database:
        _empty_postgres(database)
    node = init_node(config, PREFIX, {"database": database} if database else {})
    written = 0
    step = max(count // 20, 1)
    generate = fast_records(count) if database else records(count)

    def progress() -> Iterator[HandleRecord]:
        nonlocal written
        for record in generate:
            written += 1
            if written % step == 0:
                print(f"  loading: {written:,}/{count:,}", file=sys.stderr)
            yield record

    started = time.perf_counter()
    node.service.bulk.register_many(progress(), replace=True)
    seconds = time.perf_counter() - started
    node.close()
    print(f"loaded {count:,} identifiers in {seconds:.1f}s", file=sys.stderr)
    return data_dir, seconds


def _empty_postgres(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS handles, prefixes, schema_migrations")


if __name__ == "__main__":
    ensure_dataset(
        int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000,
        sys.argv[2] if len(sys.argv) > 2 else "",
    )
