"""The links a GS1 resolver offers for a code, read from records' values, and the
choice among links of one type by the request's language, context and media type.

A record says where its code leads with its values: its first ``URL`` value is the
default link (``gs1:defaultLink``, and the product information page ``gs1:pip``
unless a ``GS1.pip`` value names another); when it has several ``URL`` values, every
one of them, the first included, is also a ``gs1:defaultLinkMulti`` (the same page in
other languages, say), the one the request's language picks; each ``GS1.<type>``
value is a link of that GS1 link type. A code inherits the links of its less specific
keys (a serial number those of its batch and product), but its default links are those
of the most specific level that has any. A value's data is the target URL, or a JSON
object saying more about it (``context`` a string or a list of them)::

    {"href": "https://pumps.example/de/cp-50", "title": "CP-50 Produktseite",
     "hreflang": ["de"], "context": ["DE"], "type": "text/html"}

When several links of the asked type remain, the resolver standard's attributes narrow
them (:func:`narrow`): ``context`` (a link made for a context is for that context only,
so without a matching one the links made for none are preferred), then the first
language asked for that any link is in, then the media types asked for. What is left
may still be several links, which the resolver offers as a choice (300); for the
default link it takes the first, so the record's order is the fallback.
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

__all__ = ["DEFAULT", "VOCABULARY", "Link", "candidates", "choose", "links_of", "narrow", "ranked"]

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
    context: tuple[str, ...] = ()
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
                link = _link(DEFAULT, value.data)
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
    multi = [dataclasses.replace(link, type=DEFAULT_MULTI) for link in defaults]
    return defaults[:1] + (multi if len(multi) > 1 else []) + links


def candidates(links: Sequence[Link], link_type: str) -> list[Link]:
    """The links of ``link_type``; for the default link, every default link (those of
    ``gs1:defaultLinkMulti`` when there are several)."""
    if link_type == DEFAULT:
        return [link for link in links if link.type == DEFAULT_MULTI] or [
            link for link in links if link.type == DEFAULT
        ]
    return [link for link in links if link.type == link_type]


def choose(
    links: Sequence[Link],
    *,
    context: str | None = None,
    languages: Sequence[str] = (),
    media_types: Sequence[str] = (),
) -> Link:
    """The link of ``links`` (all of one type, not empty) that fits the request best:
    the first that :func:`narrow` leaves."""
    return narrow(links, context=context, languages=languages, media_types=media_types)[0]


def narrow(
    links: Sequence[Link],
    *,
    context: str | None = None,
    languages: Sequence[str] = (),
    media_types: Sequence[str] = (),
) -> list[Link]:
    """The links of ``links`` (all of one type, not empty) that fit the request best,
    in the record's order; more than one when the request cannot tell them apart."""
    pool = list(links)
    wanted = (context or "").lower()
    in_context = [link for link in pool if wanted and wanted in _lowered(link.context)]
    pool = in_context or [link for link in pool if not link.context] or pool
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
    return pool


def _lowered(texts: Sequence[str]) -> list[str]:
    return [text.lower() for text in texts]


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
    lists = [doc.get(name, []) for name in ("hreflang", "context")]
    lists = [[item] if isinstance(item, str) else item for item in lists]
    if not all(
        isinstance(items, list) and all(isinstance(t, str) for t in items) for items in lists
    ):
        return None
    hreflang, context = lists
    texts = [doc.get(name, "") for name in ("title", "type")]
    if not all(isinstance(t, str) for t in texts):
        return None
    title, media_type = texts
    return Link(
        kind,
        doc["href"].strip(),
        title,
        tuple(hreflang),
        tuple(t for t in context if t),
        media_type,
    )
