"""The QR code and Data Matrix of an identifier's URL, as inline SVG.

The symbols are made by segno (QR, ISO/IEC 18004) and ppf.datamatrix (ECC 200, ISO/IEC
16022); both are pure Python, so the console needs no image library or network.
A GS1 Digital Link URI goes into a Data Matrix as plain data (no FNC1 first), which
is what ``gs1_datamatrix`` is given for items with a GTIN. Both are drawn here from the
module matrix, so they look alike and carry an accessible name.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from html import escape

import segno
from ppf.datamatrix import DataMatrix

__all__ = ["MAX_DATA", "codes_for", "datamatrix_svg", "qr_svg"]

_MODULE_PX = 4
#: Longer data fits neither symbol well (a QR code takes 2,331 bytes at level M, a
#: Data Matrix 1,556): such an identifier's page goes without codes.
MAX_DATA = 1000


def _svg(matrix: Sequence[Sequence[int]], quiet: int, label: str) -> str:
    """An SVG of ``matrix`` (1 = dark) with ``quiet`` light modules around it."""
    size_y = len(matrix) + 2 * quiet
    size_x = len(matrix[0]) + 2 * quiet
    path = []
    for y, row in enumerate(matrix):
        x = 0
        while x < len(row):
            if row[x]:
                start = x
                while x < len(row) and row[x]:
                    x += 1
                path.append(f"M{start + quiet},{y + quiet}h{x - start}v1h{start - x}z")
            else:
                x += 1
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(label)}" '
        f'viewBox="0 0 {size_x} {size_y}" width="{size_x * _MODULE_PX}" '
        f'height="{size_y * _MODULE_PX}" shape-rendering="crispEdges">'
        f"<title>{escape(label)}</title>"
        f'<rect width="{size_x}" height="{size_y}" fill="#fff"/>'
        f'<path fill="#000" d="{"".join(path)}"/></svg>'
    )


def qr_svg(data: str, label: str) -> str:
    """A QR code of ``data`` (error correction M) with its 4-module quiet zone."""
    code = segno.make(data, error="m", boost_error=False)
    return _svg([list(row) for row in code.matrix], 4, label)


def datamatrix_svg(data: str, label: str) -> str:
    """An ECC 200 Data Matrix of ``data`` with its 1-module quiet zone."""
    return _svg(DataMatrix(data).matrix, 1, label)


@functools.lru_cache(maxsize=4096)
def codes_for(data: str, qr_label: str, datamatrix_label: str) -> tuple[str, str] | None:
    """Both symbols of ``data``, kept for the pages asked for again (a few ms each to
    make); None when ``data`` is too long for them."""
    if len(data.encode("utf-8")) > MAX_DATA:
        return None
    try:
        return qr_svg(data, qr_label), datamatrix_svg(data, datamatrix_label)
    except Exception:
        return None
