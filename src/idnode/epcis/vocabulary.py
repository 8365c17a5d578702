"""Core Business Vocabulary terms in their three spellings, reduced to one.

CBV 2.0 lets an event say ``shipping``, ``urn:epcglobal:cbv:bizstep:shipping`` (EPCIS
1.x) or ``https://ref.gs1.org/cbv/BizStep-shipping``; they are one business step. The
repository stores and matches the bare word, so that ``EQ_bizStep=shipping`` finds all
three; the canonical event hash uses the full web URI (:func:`web_uri`). Terms that are
not the CBV's (a company's own URI) are kept as written.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["KINDS", "Kind", "bare", "web_uri"]

Kind = Literal["BizStep", "Disp", "BTT", "SDT", "ER"]
#: Each kind's EPCIS 1.x URN vocabulary name.
KINDS: dict[Kind, str] = {
    "BizStep": "bizstep",
    "Disp": "disp",
    "BTT": "btt",
    "SDT": "sdt",
    "ER": "er",
}
_WEB = "https://ref.gs1.org/cbv/"


def bare(value: str, kind: Kind) -> str:
    """The CBV term ``value`` spells, as its bare word; other values unchanged."""
    urn = f"urn:epcglobal:cbv:{KINDS[kind]}:"
    if value[: len(urn)].lower() == urn:
        return value[len(urn) :]
    web = f"{_WEB}{kind}-"
    if value.startswith(web):
        return value[len(web) :]
    return value


def web_uri(value: str, kind: Kind) -> str:
    """The CBV term as its web URI (``https://ref.gs1.org/cbv/BizStep-shipping``);
    a value that is not a bare CBV word (it holds a colon) is kept as written."""
    word = bare(value, kind)
    return word if ":" in word else f"{_WEB}{kind}-{word}"
