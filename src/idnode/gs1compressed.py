"""Compressed GS1 Digital Link URIs, decompressed into their element strings.

A compressed URI (``https://id.gs1.org/DBFKk4awWAgmk``) carries its application
identifiers and values as one bit string, written in base64url (six bits a character)
in the path. The GS1 Digital Link standard's compression has no header: the bits are a
sequence of records, read while more than eight bits remain (the rest is padding).
Each record begins with eight bits read as two hex digits:

- both digits 0-9: the first two digits of an AI, whose length (2, 3 or 4 digits) the
  first two decide (:data:`_AI_LENGTHS`); the other digits follow, four bits each, then
  the value in the AI's format;
- a code of :data:`_SEQUENCES`: the values of a fixed sequence of AIs follow (``0C``:
  a GTIN then a serial number), with no AI bits between them;
- ``F`` then a digit: a pair that is no GS1 element (``?foo=bar``): seven bits (the
  digit's four and three more) give the key's length in base64url characters, then the
  key, then the value as text: how it is written, then its length in seven bits.

A numeric part of a value is one binary number of as many bits as its digits need
(:func:`_number_bits`), preceded, when its length varies, by the length in digits; it is
padded with zeros to that length. A text part starts with three bits naming how its
characters are written (:data:`_ALPHABETS`; 0: digits, as one number). An AI's format
(fixed or variable numeric and text parts) is the one of the GS1 General
Specifications that biip knows, except where the compression table of the standard
differs (:data:`_FORMATS`).

Two choices are deliberate. The optimisation codes whose AI lists are not in
ascending order in the standard's table (``1A``, ``9D``) are read in ascending order,
as the reference toolkit sorts them before it writes, so the URIs it made, which are
the ones in circulation, decode. And numbers keep their leading zeros (the digit count
is in the bits), where the reference toolkit drops them. Pure: text in, pairs out.
"""

from __future__ import annotations

import math
import re
from functools import cache
from urllib.parse import quote, unquote, urlencode

from biip.gs1_application_identifiers import GS1ApplicationIdentifier

from idnode.gs1 import PRIMARY_KEYS, InvalidGS1

__all__ = ["COMPRESSED", "decompress", "expand"]

#: A path segment that may be a compressed Digital Link.
COMPRESSED = re.compile(r"^[A-Za-z0-9_-]+$")
#: The longest compressed segment read: a code's elements fit in far fewer.
MAX_LENGTH = 1024

_BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

# The length of an AI by its first two digits (GS1 General Specifications).
_AI_LENGTHS = {
    **dict.fromkeys(["00", "01", "02", "10", "11", "12", "13", "15", "16", "17"], 2),
    **dict.fromkeys(["20", "21", "22", "30", "37", *map(str, range(90, 100))], 2),
    **dict.fromkeys(["23", "24", "25", "40", "41", "42", "71"], 3),
    **dict.fromkeys(["31", "32", "33", "34", "35", "36", "39", "70", "72", "80", "81"], 4),
    "82": 4,
}

# Optimisation codes: a code stands for the values of these AIs, in this order.
_SEQUENCES: dict[str, tuple[str, ...]] = {
    "0A": ("01", "22"),
    "0B": ("01", "10"),
    "0C": ("01", "21"),
    "0D": ("01", "17"),
    "0E": ("01", "7003"),
    "0F": ("01", "30"),
    "1A": ("01", "10", "17", "21"),
    "1B": ("01", "15"),
    "1C": ("01", "11"),
    "1D": ("01", "16"),
    "1E": ("01", "91"),
    "1F": ("01", "10", "15"),
    **{f"2{c}": ("01", f"310{n}") for n, c in enumerate("ABCDEF")},
    **{f"3{c}": ("01", f"320{n}") for n, c in enumerate("ABCDEF")},
    "9A": ("8010", "8011"),
    "9B": ("8017", "8019"),
    "9C": ("8018", "8019"),
    "9D": ("254", "414"),
    **{f"A{n}": ("01", f"392{n}") for n in range(10)},
    **{f"C{n}": ("255", f"390{n}") for n in range(10)},
    **{f"C{c}": ("255", f"394{n}") for n, c in enumerate("ABCD")},
}

# Formats where the standard's compression table differs from the General
# Specifications: (kind, fixed length or None, maximum length) per part.
_Part = tuple[str, int | None, int]
_FORMATS: dict[str, tuple[_Part, ...]] = {
    "7007": (("N", 6, 6), ("N", None, 6)),
    **{f"723{n}": (("X", None, 30),) for n in range(10)},
    "8007": (("X", None, 24),),
    "8013": (("X", None, 30),),
}

# How a text part's characters are written: bits per character and the characters.
_ALPHABETS: dict[int, tuple[int, str]] = {
    1: (4, "0123456789abcdef"),
    2: (4, "0123456789ABCDEF"),
    3: (6, _BASE64URL),
}
_ASCII = 4


def expand(path: str, query: str = "") -> tuple[str, str] | None:
    """The Digital Link path and query string that ``path`` (with ``query``) stands for
    when it is compressed: wholly (``/DBFKk4awWAgmk``) or after its primary key
    (``/01/09506000134352/EEarwSMXPQ9Q``); None when it is not compressed.

    The primary key and its qualifiers make the path, in the standard's order; the
    other elements, and pairs of no AI, go before the request's own query string."""
    segments = [unquote(s) for s in path.strip("/").split("/")]
    last = segments[-1]
    if len(segments) % 2 == 0 or not COMPRESSED.match(last):
        return None
    if len(segments) > 1 and (segments[0] not in PRIMARY_KEYS or last.isdigit()):
        return None  # digits after the key's value: an AI missing its value, not bits
    pairs = list(zip(segments[:-1:2], segments[1:-1:2], strict=True)) + decompress(last)
    found = dict(pairs)
    if len(found) < len(pairs):
        raise InvalidGS1("a compressed GS1 Digital Link that repeats an element")
    primary = next((ai for ai in found if ai in PRIMARY_KEYS), None)
    if primary is None:
        raise InvalidGS1(
            "a compressed GS1 Digital Link without a GTIN (01), SSCC (00) or GLN (414)"
        )
    in_path = [primary, *(ai for ai in PRIMARY_KEYS[primary] if ai in found)]
    expanded = "".join(f"/{ai}/{quote(found.pop(ai), safe='')}" for ai in in_path)
    rest = urlencode(list(found.items()), quote_via=quote)
    return expanded, "&".join(part for part in (rest, query) if part)


def decompress(segment: str) -> list[tuple[str, str]]:
    """The (AI, value) pairs, and (key, value) pairs of no AI, that ``segment`` holds,
    in order; InvalidGS1 naming what is wrong if it is no compressed Digital Link."""
    if len(segment) > MAX_LENGTH or not COMPRESSED.match(segment):
        raise InvalidGS1("not a compressed GS1 Digital Link: base64url characters expected")
    bits = _Bits(segment)
    pairs: list[tuple[str, str]] = []
    while bits.left > 8:
        high, low = bits.read(4), bits.read(4)
        code = f"{high:X}{low:X}"
        if high <= 9 and low <= 9:
            ai = code + "".join(_digit(bits) for _ in range(_ai_length(code) - 2))
            pairs.append((ai, _value(bits, ai)))
        elif code in _SEQUENCES:
            pairs += [(ai, _value(bits, ai)) for ai in _SEQUENCES[code]]
        elif high == 0xF:
            length = (low << 3) | bits.read(3)
            key = "".join(_BASE64URL[bits.read(6)] for _ in range(length))
            encoding = bits.read(3)
            pairs.append((key, _characters(bits, encoding, bits.read(7))))
        else:
            raise InvalidGS1(f"not a compressed GS1 Digital Link: no meaning for code {code}")
    return pairs


class _Bits:
    """The bits of a base64url string, read from the front."""

    def __init__(self, text: str) -> None:
        self._number = 0
        for char in text:
            self._number = (self._number << 6) | _BASE64URL.index(char)
        self._size = 6 * len(text)
        self._at = 0

    @property
    def left(self) -> int:
        return self._size - self._at

    def read(self, count: int) -> int:
        if count > self.left:
            raise InvalidGS1("not a compressed GS1 Digital Link: it ends inside a value")
        self._at += count
        return (self._number >> (self._size - self._at)) & ((1 << count) - 1)


def _ai_length(first_two: str) -> int:
    length = _AI_LENGTHS.get(first_two)
    if length is None:
        raise InvalidGS1(f"not a compressed GS1 Digital Link: no AI starts {first_two}")
    return length


def _digit(bits: _Bits) -> str:
    nibble = bits.read(4)
    if nibble > 9:
        raise InvalidGS1("not a compressed GS1 Digital Link: an AI of digits expected")
    return str(nibble)


def _value(bits: _Bits, ai: str) -> str:
    parts = []
    for kind, fixed, longest in _format(ai):
        if kind == "N":
            digits = fixed if fixed is not None else bits.read(_length_bits(longest))
            parts.append(_digits(bits, digits))
        else:
            encoding = bits.read(3)
            count = fixed if fixed is not None else bits.read(_length_bits(longest))
            parts.append(_characters(bits, encoding, count))
    return "".join(parts)


def _characters(bits: _Bits, encoding: int, count: int) -> str:
    if encoding == 0:
        return _digits(bits, count)
    if encoding == _ASCII:
        return "".join(chr(bits.read(7)) for _ in range(count))
    if encoding not in _ALPHABETS:
        raise InvalidGS1(f"not a compressed GS1 Digital Link: no text encoding {encoding}")
    width, alphabet = _ALPHABETS[encoding]
    return "".join(alphabet[bits.read(width)] for _ in range(count))


def _digits(bits: _Bits, count: int) -> str:
    """``count`` digits written as one number (a zero-digit number still takes a bit)."""
    number = bits.read(_number_bits(count))
    if not count:
        return ""
    text = str(number).zfill(count)
    if len(text) > count:
        raise InvalidGS1("not a compressed GS1 Digital Link: a number longer than its length")
    return text


def _number_bits(digits: int) -> int:
    return math.ceil(digits * math.log2(10) + 0.01)


def _length_bits(longest: int) -> int:
    return math.ceil(math.log2(longest) + 0.01)


@cache
def _format(ai: str) -> tuple[_Part, ...]:
    """The parts of the AI's value: from the standard's table where it differs from
    the General Specifications, else from biip's copy of those."""
    if ai in _FORMATS:
        return _FORMATS[ai]
    try:
        spec = GS1ApplicationIdentifier.extract(ai).format
    except Exception as exc:  # biip's ParseError, or anything it finds odd in the AI
        raise InvalidGS1(f"not a compressed GS1 Digital Link: unknown AI {ai}") from exc
    parts: list[_Part] = []
    for item in spec.replace("[", "").replace("]", "").split("+")[1:]:
        found = re.fullmatch(r"([NXYZ])(\.\.)?(\d+)", item)
        if found is None:
            raise InvalidGS1(f"not a compressed GS1 Digital Link: AI {ai} cannot be compressed")
        kind, size = ("N" if found[1] == "N" else "X"), int(found[3])
        if found[2]:
            parts.append((kind, None, size))
        elif parts and kind == "N" and parts[-1][0] == "N" and parts[-1][1] is not None:
            merged = parts[-1][2] + size  # adjacent fixed numbers are one number
            parts[-1] = ("N", merged, merged)
        else:
            parts.append((kind, size, size))
    return tuple(parts)
