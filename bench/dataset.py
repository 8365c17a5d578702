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
from idnode.handle.values import HandleValue, Permission, ValueReference
from idnode.handle.valuetypes import AdminPermission, AdminValue
from idnode.node import init_node, open_node
from idnode.storage.base import HandleRecord

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


def ensure_dataset(count: int) -> Path:
    """The data directory of a node holding ``count`` identifiers, built if missing."""
    data_dir = DATA_ROOT / str(count)
    if (data_dir / "idnode.toml").exists():
        node = open_node(Config(data_dir=data_dir))
        have = node.service.count(PREFIX)
        node.close()
        if have == count:
            return data_dir
        print(
            f"dataset in {data_dir} has {have} records, want {count}: rebuilding", file=sys.stderr
        )
        for child in data_dir.iterdir():
            child.unlink()
    started = time.perf_counter()
    node = init_node(Config(data_dir=data_dir), PREFIX, {})
    written = 0
    step = max(count // 20, 1)

    def progress() -> Iterator[HandleRecord]:
        nonlocal written
        for record in records(count):
            written += 1
            if written % step == 0:
                print(f"  loading: {written:,}/{count:,}", file=sys.stderr)
            yield record

    node.service.import_records(progress(), replace=True)
    node.close()
    print(f"loaded {count:,} identifiers in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return data_dir


if __name__ == "__main__":
    ensure_dataset(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
