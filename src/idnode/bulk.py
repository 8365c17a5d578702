"""Bulk registration: records from CSV or JSONL rows, all checked before any is written.

A row names its identifier by ``handle`` (``88.100.1/PUMP-000001``), or by ``suffix``
under the import's prefix, or not at all when the import mints suffixes from a pattern
over the row's fields (``PUMP-{serial:06d}``). It gives its values either as Handle
values (JSONL ``"values"``, as ``idnode export`` writes them) or as the fields of a
template (the row's ``template``, else the import's): every other CSV column, or the
JSONL ``"fields"`` object. Empty CSV cells are fields not given.

Reading is pure: :func:`read_rows` yields each row or why it cannot be used, with its
line number, and :class:`RecordBuilder` turns rows into records. :func:`register` reads
a file once, checking every row and setting the records aside (nothing is written if
one is rejected, unless asked to skip them), then writes them; the CLI's ``import``
and ``POST /api/bulk`` both use it.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
import re
import string
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

from idnode.domain import HandleRecord
from idnode.edits import check_size
from idnode.errors import IdnodeError, InvalidValue
from idnode.handle.encoded import EncodedValues
from idnode.handle.values import ValueReference
from idnode.jsonformat import record_from_json
from idnode.names import handle_key, validate_handle, validate_prefix
from idnode.service import BulkResult, Caller, NodeService
from idnode.templates import Template, number_from_text, parse_readers

__all__ = [
    "FORMATS",
    "PARALLEL_FROM_BYTES",
    "BulkOptions",
    "BulkReport",
    "RecordBuilder",
    "Rejection",
    "Row",
    "read_rows",
    "register",
    "worth_parallel",
]

Format = Literal["csv", "jsonl"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl")
_RESERVED = ("handle", "suffix", "template", "readers")
MAX_CELLS = 1000


@dataclass(frozen=True, slots=True)
class Row:
    line: int  #: where the row ends in the file, from 1
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Rejection:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


def read_rows(stream: TextIO, fmt: Format) -> Iterator[Row | Rejection]:
    """The rows of a CSV (with a header row) or JSONL file, or why one is unusable;
    ``stream`` read with errors="surrogateescape", a line that is not UTF-8 is one."""
    if fmt == "csv":
        yield from _csv_rows(stream)
    else:
        yield from _jsonl_rows(stream)


def _csv_rows(stream: TextIO) -> Iterator[Row | Rejection]:
    reader = csv.reader(stream, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        yield Rejection(reader.line_num, f"bad CSV: {exc}")
        return
    if not header:
        yield Rejection(1, "the file is empty; a CSV needs a header row")
        return
    undecodable = _undecodable(",".join(header))
    if undecodable is not None:
        yield Rejection(1, re.sub(r" at column \d+", "", undecodable))
        return
    names = [h.strip() for h in header]
    if len(set(names)) != len(names) or "" in names or len(names) > MAX_CELLS:
        yield Rejection(1, f"the header needs distinct, non-empty column names: {header}")
        return
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # an unterminated quote: a truncated file, often
            yield Rejection(reader.line_num, f"bad CSV: {exc}; the rest was not read")
            return
        if not cells:
            continue
        undecodable = _undecodable(",".join(cells))
        if undecodable is not None:  # (columns of a CSV row are not its cells')
            yield Rejection(reader.line_num, re.sub(r" at column \d+", "", undecodable))
            continue
        if len(cells) != len(names):
            yield Rejection(
                reader.line_num, f"{len(cells)} cells where the header has {len(names)}"
            )
            continue
        data = {n: c for n, c in zip(names, cells, strict=True) if c != ""}
        yield Row(reader.line_num, data)


def _undecodable(text: str) -> str | None:
    """Why ``text`` (read with errors="surrogateescape") is not UTF-8, if it is not."""
    for column, char in enumerate(text, 1):
        if "\udc80" <= char <= "\udcff":
            byte = ord(char) - 0xDC00
            return f"not UTF-8 text: byte 0x{byte:02x} at column {column}; save the file as UTF-8"
    return None


def _jsonl_rows(stream: TextIO) -> Iterator[Row | Rejection]:
    for line, text in enumerate(stream, 1):
        if not text.strip():
            continue
        undecodable = _undecodable(text)
        if undecodable is not None:
            yield Rejection(line, undecodable)
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            yield Rejection(line, f"bad JSON: {exc.msg} (column {exc.colno})")
            continue
        except RecursionError:
            yield Rejection(line, "bad JSON: nested too deep")
            continue
        if not isinstance(data, dict):
            yield Rejection(line, "a line must hold one JSON object")
            continue
        yield Row(line, data)


@dataclass(frozen=True, slots=True)
class BulkOptions:
    prefix: str | None = None  #: for rows with a suffix, or none
    template: str | None = None  #: for rows naming no template
    mint: str | None = None  #: suffix pattern over the row's fields
    readers: ValueReference | None = None  #: reader group of template records

    def __post_init__(self) -> None:
        if self.prefix is not None:
            validate_prefix(self.prefix)
        if self.mint is not None:
            if self.prefix is None:
                raise InvalidValue("minting suffixes needs the prefix they go under")
            _Pattern(self.mint)  # refuse a malformed pattern before reading anything


@dataclass
class RecordBuilder:
    """Rows to records; ``template`` finds a template by ``name`` or ``name@version``."""

    options: BulkOptions
    template: Callable[[str], Template]
    timestamp: int = 0  #: of the values made from fields; 0: set when written
    _seen: set[bytes] = field(default_factory=set)
    _pattern: _Pattern | None = None

    def __post_init__(self) -> None:
        if self.options.mint is not None:
            self._pattern = _Pattern(self.options.mint)

    def build(self, row: Row) -> HandleRecord:
        """The row's record; IdnodeError saying what is wrong with it. A handle given
        twice in one file is refused the second time."""
        data = row.data
        fields = data.get("fields", {}) if "values" in data or "fields" in data else {
            k: v for k, v in data.items() if k not in _RESERVED
        }  # fmt: skip
        if not isinstance(fields, dict):
            raise InvalidValue("fields must be an object")
        # A row giving Handle values is taken as it is; the import's template is for
        # rows of fields.
        default = None if "values" in data else self.options.template
        template_name = data.get("template", default)
        template = self.template(template_name) if template_name else None
        if template is not None:
            fields = _typed(fields, template)
        handle = self._handle(data, fields)
        digest = hashlib.blake2b(handle_key(handle).encode(), digest_size=12).digest()
        if digest in self._seen:
            raise InvalidValue(f"{handle} appears more than once in the file")
        self._seen.add(digest)
        if template is None:
            raw = data.get("values")
            if not isinstance(raw, list) or not raw:
                raise InvalidValue("the row has neither values nor a template for its fields")
            record = record_from_json({"handle": handle, "values": raw})
            encoded = EncodedValues.of(record.values)  # encoded once: checked, then stored
            check_size(encoded, handle)
            return HandleRecord(record.handle, encoded)
        readers = data.get("readers")
        group = parse_readers(readers) if isinstance(readers, str) else self.options.readers
        values = template.encoded(fields, group, self.timestamp)
        check_size(values, handle)
        return HandleRecord(handle, values)

    def _handle(self, data: dict[str, Any], fields: dict[str, Any]) -> str:
        prefix = self.options.prefix
        if isinstance(data.get("handle"), str):
            handle = str(data["handle"])
        elif isinstance(data.get("suffix"), str) and prefix:
            handle = f"{prefix}/{data['suffix']}"
        elif self._pattern is not None and prefix:
            handle = f"{prefix}/{self._pattern.format(fields)}"
        else:
            raise InvalidValue("the row has no handle (nor suffix with --prefix, nor --mint)")
        validate_handle(handle)
        if "/" not in handle:
            raise InvalidValue(f"{handle!r} is not prefix/suffix")
        return handle


def _typed(fields: dict[str, Any], template: Template) -> dict[str, Any]:
    """CSV cells are text: numbers of number fields are read as numbers."""
    kinds = {f.name: f.type for f in template.fields}
    return {
        name: number_from_text(value)
        if kinds.get(name) == "number" and isinstance(value, str)
        else value
        for name, value in fields.items()
    }


class _Pattern:
    """A suffix pattern, ``PUMP-{serial:06d}``: str.format over the row's fields, an
    integer format reading its field as a whole number."""

    _INTEGER = frozenset("bcdoxXn")

    def __init__(self, text: str) -> None:
        try:
            self._parts = [p for p in string.Formatter().parse(text) if p[1] is not None]
        except ValueError as exc:
            raise InvalidValue(f"suffix pattern {text!r}: {exc}") from exc
        if not self._parts:
            raise InvalidValue(
                f"suffix pattern {text!r} uses no field: every suffix would be the same"
            )
        self._text = text

    def format(self, fields: dict[str, Any]) -> str:
        values: dict[str, Any] = {}
        for _, name, spec, _ in self._parts:
            assert name is not None
            if name not in fields:
                raise InvalidValue(f"the suffix pattern needs the field {name!r}")
            value = fields[name]
            if spec and spec[-1] in self._INTEGER and not isinstance(value, int):
                try:
                    value = int(str(value))
                except ValueError:
                    raise InvalidValue(
                        f"{name} must be a whole number for {{{name}:{spec}}}"
                    ) from None
            values[name] = value
        try:
            return self._text.format_map(values)
        except (ValueError, TypeError) as exc:
            raise InvalidValue(f"suffix pattern {self._text!r}: {exc}") from exc


#: From this size on, a file's records are staged by a second process (where there is
#: a second core): starting it costs a fraction of a second, which a file of some
#: ten thousand rows repays.
PARALLEL_FROM_BYTES = 2 * 1024 * 1024


def worth_parallel(size: int) -> bool:
    """Whether a file of ``size`` bytes is better staged by a second process."""
    return size >= PARALLEL_FROM_BYTES and (os.cpu_count() or 1) > 1


#: Rejections kept to show; all are counted.
MAX_SHOWN = 1000


@dataclass
class BulkReport:
    result: BulkResult  #: what was written (or, if nothing was, what would have been)
    rejected: list[Rejection] = field(default_factory=list)
    rejected_count: int = 0
    written: bool = False

    def reject(self, rejection: Rejection) -> None:
        self.rejected_count += 1
        if len(self.rejected) < MAX_SHOWN:
            self.rejected.append(rejection)


Opener = Callable[[], AbstractContextManager[TextIO]]
Progress = Callable[[str], Callable[[int], None]]


def register(
    service: NodeService,
    source: Opener,
    fmt: Format,
    options: BulkOptions,
    *,
    replace: bool,
    caller: Caller | None = None,
    skip_invalid: bool = False,
    parallel: bool = False,
    progress: Progress | None = None,
) -> BulkReport:
    """Check every row of ``source``, then write them unless one was rejected (with
    ``skip_invalid``, write the others). ``progress(stage)`` gives a function told how
    many records each batch held, for "checking" then "writing". ``parallel``: set
    the checked records aside in a second process (worth it for large files).

    The file is read once: the checked records wait in the node's staging area
    (:meth:`idnode.service.bulk.BulkWrites.stage_many`) until every row has been seen.
    """
    builder = RecordBuilder(options, functools.cache(service.templates.template), int(time.time()))
    report = BulkReport(BulkResult())

    def checked() -> Iterator[HandleRecord]:
        with source() as stream:
            for item in read_rows(stream, fmt):
                if isinstance(item, Rejection):
                    report.reject(item)
                    continue
                try:
                    yield builder.build(item)
                except IdnodeError as exc:
                    report.reject(Rejection(item.line, exc.message))

    with service.bulk.stage_many(
        checked(),
        replace=replace,
        caller=caller,
        parallel=parallel,
        progress=progress("checking") if progress else None,
    ) as load:
        if report.rejected_count and not skip_invalid:
            report.result = service.bulk.write_staged(load, replace=replace, dry_run=True)
            return report
        report.result = service.bulk.write_staged(
            load,
            replace=replace,
            caller=caller,
            progress=progress("writing") if progress else None,
        )
    report.written = True
    return report
