"""The links a GS1 resolver offers for a code, read from records' values, and the
choice among links of one type by the request's language, context and media type.

A record says where its code leads with its values: its first ``URL`` value is the
default link (``gs1:defaultLink``, and the product information page ``gs1:pip``
unless a ``GS1.pip`` value names another); further ``URL`` values are other default
links (``gs1:defaultLinkMulti``: the same page in other languages, say); each
``GS1.<type>`` value is a link of that GS1 link type. A code inherits the links of its
less specific keys (a serial number those of its batch and product), but its default
links are those of the most specific level that has any. A value's data is the target
URL, or a JSON object saying more about it::

    {"href": "https://pumps.example/de/cp-50", "title": "CP-50 Produktseite",
     "hreflang": ["de"], "context": "DE", "type": "text/html"}

When several links of the asked type remain, the resolver standard's attributes narrow
them, each only if some link matches it: ``context`` (the query parameter), then the
first language of ``Accept-Language`` that any link is in, then the media types of
``Accept``. The first link left is the answer, so the record's order is the fallback.
Pure: no I/O, no HTTP objects.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from idnode.handle.values import HandleValue

__all__ = ["VOCABULARY", "Link", "candidates", "choose", "links_of", "ranked"]

VOCABULARY = "https://ref.gs1.org/voc/"
DEFAULT = VOCABULARY + "defaultLink"
DEFAULT_MULTI = VOCABULARY + "defaultLinkMulti"
PIP = VOCABULARY + "pip"
_SAFE_SCHEMES = ("http", "https")


@dataclass(frozen=True, slots=True)
class Link:
    type: str  #: the link type, a URI of the GS1 web vocabulary
    href: str
    title: str = ""
    hreflang: tuple[str, ...] = ()
    context: str = ""
    media_type: str = ""


def links_of(records: Sequence[Sequence[HandleValue]]) -> list[Link]:
    """Each link the records' values hold, default links first.

    ``records`` are the values of the records of a code's levels, the most specific
    first (a serial number's, its batch's, its product's). Links of every level are
    offered; the default links are those of the most specific level that has any.
    Values whose data is neither an http(s) URL nor a link object are not links."""
    defaults: list[Link] = []
    links: list[Link] = []
    for values in records:
        level_defaults: list[Link] = []
        for value in values:
            kind = value.type.upper()
            if kind == "URL":
                link = _link(DEFAULT_MULTI if level_defaults else DEFAULT, value.data)
                if link is not None:
                    level_defaults.append(link)
            elif kind.startswith("GS1.") and len(kind) > 4:
                link = _link(VOCABULARY + value.type[4:], value.data)
                if link is not None:
                    links.append(link)
        if not defaults:
            defaults = level_defaults
    if defaults and not any(link.type == PIP for link in links):
        links.insert(0, dataclasses.replace(defaults[0], type=PIP))
    return defaults + links


def candidates(links: Sequence[Link], link_type: str) -> list[Link]:
    """The links of ``link_type``; for the default link, every default link."""
    kinds = (DEFAULT, DEFAULT_MULTI) if link_type == DEFAULT else (link_type,)
    return [link for link in links if link.type in kinds]


def choose(
    links: Sequence[Link],
    *,
    context: str | None = None,
    languages: Sequence[str] = (),
    media_types: Sequence[str] = (),
) -> Link:
    """The link of ``links`` (all of one type, not empty) that fits the request best."""
    pool = list(links)
    if context:
        pool = [link for link in pool if link.context.lower() == context.lower()] or pool
    for language in languages:
        fits = [link for link in pool if any(_same_language(language, t) for t in link.hreflang)]
        if fits:
            pool = fits
            break
    for media_type in media_types:
        fits = [link for link in pool if _same_media_type(media_type, link.media_type)]
        if fits:
            pool = fits
            break
    return pool[0]


def ranked(header: str) -> list[str]:
    """The values of an ``Accept`` or ``Accept-Language`` header, most wanted first
    (by ``q``, then order), without wildcards and those refused (``q=0``)."""
    weighted = []
    for position, item in enumerate(header.split(",")):
        name, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            key, _, number = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(number)
                except ValueError:
                    quality = 0.0
        if name and name not in ("*", "*/*") and quality > 0:
            weighted.append((-quality, position, name.lower()))
    return [name for _, _, name in sorted(weighted)]


def _same_language(wanted: str, offered: str) -> bool:
    """RFC 4647 matching both ways: ``de`` fits ``de-CH`` and ``de-CH`` fits ``de``."""
    wanted, offered = wanted.lower(), offered.lower()
    return wanted == offered or offered.startswith(wanted + "-") or wanted.startswith(offered + "-")


def _same_media_type(wanted: str, offered: str) -> bool:
    if not offered:
        return False
    if wanted.endswith("/*"):
        return offered.lower().startswith(wanted[:-1])
    return wanted == offered.lower()


def _link(kind: str, data: bytes) -> Link | None:
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    link = _described(kind, text) if text.startswith("{") else Link(kind, text)
    if link is None or urlsplit(link.href).scheme.lower() not in _SAFE_SCHEMES:
        return None
    return link


def _described(kind: str, text: str) -> Link | None:
    try:
        doc: Any = json.loads(text)
    except (ValueError, RecursionError):  # a value nested too deep is no link either
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("href"), str):
        return None
    hreflang = doc.get("hreflang", [])
    if isinstance(hreflang, str):
        hreflang = [hreflang]
    if not isinstance(hreflang, list) or not all(isinstance(t, str) for t in hreflang):
        return None
    texts = [doc.get(name, "") for name in ("title", "context", "type")]
    if not all(isinstance(t, str) for t in texts):
        return None
    title, context, media_type = texts
    return Link(kind, doc["href"].strip(), title, tuple(hreflang), context, media_type)
