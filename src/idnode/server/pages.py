"""The one look of the HTML pages (proxy pages, templates): a title and a body."""

from __future__ import annotations

import html

__all__ = ["page"]


def page(title: str, body: str) -> str:
    """A complete page; ``title`` is escaped here, ``body`` must be escaped HTML."""
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;"
        "padding:4px 8px;text-align:left;vertical-align:top}table{border-collapse:collapse}"
        "code{white-space:pre-wrap;word-break:break-all}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )
