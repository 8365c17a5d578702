"""What search finds, and the SQL that finds it, shared by both backends.

Every write keeps an index of the record's *public* text values (types other than
HS_*), in the write's own transaction: a row per value in ``fields`` (name = the
value's type in capitals, its text, and its number when the text is one) for exact
and range conditions, and one document per record for words (SQLite FTS5, PostgreSQL
full-text search). Values that are not public are never indexed, so a search cannot
reveal them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from idnode.domain import Condition, SearchQuery, words
from idnode.handle.encoded import EncodedValues
from idnode.handle.values import HandleValue, Permission
from idnode.names import handle_key

if TYPE_CHECKING:
    from idnode.storage.sql import Dialect

__all__ = [
    "Part",
    "entries",
    "estimate",
    "indexed",
    "parts",
    "run",
    "statement",
    "walk",
]

MAX_TEXT = 512  #: longer texts are found by words only
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
FieldRow = tuple[str, str, str, float | None]


_PUBLIC_READ = int(Permission.PUBLIC_READ)


def entries(values: Sequence[HandleValue]) -> list[tuple[str, str]]:
    """(NAME, text) of each value the index holds: public, UTF-8 text, of a type not
    HS_*. Stored records are EncodedValues, read here without being decoded: a bulk
    load indexes a million of them."""
    raw = (
        values.fields()
        if isinstance(values, EncodedValues)
        # int(): flag arithmetic on the enum costs more than the rest of this per value.
        else ((int(v.permissions), v.type.encode("utf-8"), v.data) for v in values)
    )
    found = []
    for permissions, vtype, data in raw:
        if not permissions & _PUBLIC_READ:
            continue
        name = _NAMES[vtype] if vtype in _NAMES else _name_of(vtype)
        if name is None:
            continue
        try:
            found.append((name, data.decode("utf-8")))
        except UnicodeDecodeError:
            continue
    return found


#: Value type -> its name in the index, None for types not indexed. Records share a
#: few types; deciding each once halves the cost of indexing one.
_NAMES: dict[bytes, str | None] = {}


def _name_of(vtype: bytes) -> str | None:
    try:
        name: str | None = vtype.decode("utf-8").upper()
    except UnicodeDecodeError:
        name = None
    if name is not None and name.startswith("HS_"):
        name = None
    if len(_NAMES) < 10_000:  # a bound against a flood of made-up types
        _NAMES[vtype] = name
    return name


def number_of(text: str) -> float | None:
    if _NUMBER.match(text.strip()):
        number = float(text)
        return number if math.isfinite(number) else None
    return None


@dataclass(frozen=True, slots=True)
class Part:
    """One requirement of a query, as SQL over the index: ``keys`` lists the keys that
    meet it (to drive the query), ``test`` checks one record ``h`` (to filter)."""

    keys: str
    test: str
    params: tuple[object, ...]


#: How many index entries a part is counted up to when choosing which drives a query.
ESTIMATE_CAP = 1000
#: A query that every requirement lets many records through (each estimate reached
#: the cap) first walks the handles in key order, testing each, over at most this many
#: handles per one asked for (offset + limit), and at most WALK_MAX in all. Driving it
#: by a requirement instead would read and sort every key that meets it: 100,000 for a
#: word one record in ten holds, at a million records.
WALK_FACTOR = 40
WALK_MAX = 20_000


# The statements are assembled from fixed pieces: placeholders, column names and
# checked operators; every value the caller gave is a parameter (hence S608 below).
def parts(query: SearchQuery, dialect: Dialect) -> list[Part]:
    """The query's requirements: one per field named (its conditions are met by one
    value of it: weight>=2 and weight<5 is a range), the template, the words."""
    p = dialect.placeholder
    found = []
    by_field: dict[str, list[Condition]] = {}
    for c in query.conditions:
        by_field.setdefault(c.name.upper(), []).append(c)
    for name, conditions in by_field.items():
        tests: list[str] = []
        params: list[object] = [name]
        for c in conditions:
            number = number_of(c.value)
            numeric = c.op != "=" and number is not None
            tests.append(f"{'number' if numeric else 'text'} {c.op} {p}")
            params.append(number if numeric else c.value)
        found.append(_field_part(f"name = {p} AND " + " AND ".join(tests), params))
    if query.template:
        name, _, version = query.template.partition("@")
        if version:
            found.append(_field_part(f"name = 'TEMPLATE' AND text = {p}", [query.template]))
        else:
            where = f"name = 'TEMPLATE' AND text >= {p} AND text < {p}"
            found.append(_field_part(where, [f"{name}@", f"{name}@\x7f"]))
    if query.text:
        found_words = words(query.text)
        if dialect.name == "sqlite":
            match = " ".join('"' + w.replace('"', '""') + '"' for w in found_words)
            docs = "fields_docs d JOIN fields_text t ON t.rowid = d.docid"
            found.append(
                Part(
                    f"SELECT d.key FROM {docs} WHERE fields_text MATCH {p}",  # noqa: S608
                    f"EXISTS (SELECT 1 FROM {docs} WHERE d.key = h.key AND fields_text MATCH {p})",  # noqa: S608
                    (match,),
                )
            )
        else:
            tsquery = f"body @@ plainto_tsquery('simple', {p})"
            found.append(
                Part(
                    f"SELECT key FROM fields_text WHERE {tsquery}",  # noqa: S608
                    f"EXISTS (SELECT 1 FROM fields_text t WHERE t.key = h.key AND {tsquery})",  # noqa: S608
                    (" ".join(found_words),),
                )
            )
    return found


def _field_part(where: str, params: list[object]) -> Part:
    return Part(
        f"SELECT key FROM fields WHERE {where}",  # noqa: S608
        f"EXISTS (SELECT 1 FROM fields f WHERE f.key = h.key AND {where})",  # noqa: S608
        tuple(params),
    )


def estimate(part: Part, dialect: Dialect) -> tuple[str, tuple[object, ...]]:
    """A count of the part's keys, stopping at ESTIMATE_CAP: cheap, and enough to
    tell a selective requirement from one most records meet."""
    p = dialect.placeholder
    return (
        f"SELECT count(*) FROM ({part.keys} LIMIT {p}) AS sample",  # noqa: S608
        (*part.params, ESTIMATE_CAP),
    )


def statement(
    query: SearchQuery, found: Sequence[Part], driver: int | None, dialect: Dialect
) -> tuple[str, list[object]]:
    """The query: the keys of part ``driver`` (the most selective), each probed for
    the others and the prefix, in key order, paged."""
    p = dialect.placeholder
    where: list[str] = []
    params: list[object] = []
    if query.prefix:
        key = handle_key(query.prefix)
        where.append(f"h.key >= {p} AND h.key < {p}")
        params += [key + "/", key + "0"]
    for n, part in enumerate(found):
        where.append(f"h.key IN ({part.keys})" if n == driver else part.test)
        params += part.params
    text = (
        "SELECT h.handle FROM handles h"  # noqa: S608
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY h.key LIMIT {p} OFFSET {p}"
    )
    return text, [*params, query.limit, query.offset]


Fetch = Callable[[str, Sequence[object]], Sequence[Sequence[Any]]]


def walk(
    query: SearchQuery, found: Sequence[Part], rows: int, dialect: Dialect
) -> tuple[str, list[object]]:
    """The query over the first ``rows`` handles in key order (of the prefix), each
    tested for every part: the right page whenever it comes back full, since then the
    first offset + limit matches all lie in that stretch."""
    p = dialect.placeholder
    scope = ""
    bounds: list[object] = []
    if query.prefix:
        key = handle_key(query.prefix)
        scope = f" WHERE key >= {p} AND key < {p}"
        bounds = [key + "/", key + "0"]
    text = (
        f"SELECT h.handle FROM (SELECT key, handle FROM handles{scope}"  # noqa: S608
        + f" ORDER BY key LIMIT {p}) h WHERE "
        + " AND ".join(part.test for part in found)
        + f" ORDER BY h.key LIMIT {p} OFFSET {p}"
    )
    tests = [param for part in found for param in part.params]
    return text, [*bounds, rows, *tests, query.limit, query.offset]


def run(query: SearchQuery, dialect: Dialect, fetch: Fetch) -> list[str]:
    """The handles ``query`` finds, with ``fetch`` running a statement on the backend's
    connection. A capped count of each requirement picks the most selective to drive
    the query; when none is selective, a walk in key order is tried first (see
    WALK_FACTOR), which finds a first page without reading every match."""
    found = parts(query, dialect)
    driver = None
    if found:
        counts = [fetch(*estimate(part, dialect))[0][0] for part in found]
        rows = (query.offset + query.limit) * WALK_FACTOR
        if min(counts) >= ESTIMATE_CAP and rows <= WALK_MAX:
            page = [row[0] for row in fetch(*walk(query, found, rows, dialect))]
            if len(page) == query.limit:
                return page
        driver = counts.index(min(counts))
    text, params = statement(query, found, driver, dialect)
    return [row[0] for row in fetch(text, params)]


def indexed(values: Sequence[HandleValue]) -> tuple[list[tuple[str, str, float | None]], str]:
    """A record's field rows (name, text, number) and its document, the words of its
    indexed values for full-text search: what every index of a record is built from."""
    found = entries(values)
    fields = [(n, t, number_of(t)) for n, t in found if len(t) <= MAX_TEXT]
    return fields, " ".join([t for _, t in found if t])


def reindexed(
    rows: Sequence[tuple[str, Sequence[HandleValue] | None]],
) -> tuple[list[str], list[FieldRow], list[tuple[str, str]]]:
    """For records written (values) or deleted (None), by key: the keys whose index
    rows go, the field rows to insert, and (key, document) pairs to store."""
    latest = dict(rows)  # a key written twice in one batch: its last record counts
    keys = list(latest)
    fields: list[FieldRow] = []
    docs = []
    for key, values in latest.items():
        if values is not None:
            found, doc = indexed(values)
            fields += [(key, *row) for row in found]
            docs.append((key, doc))
    return keys, fields, docs
