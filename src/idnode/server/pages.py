"""The one look of the HTML pages outside the console (proxy pages, templates): the
console's style sheet and top bar, a title and a body."""

from __future__ import annotations

import html

__all__ = ["page"]


def page(title: str, body: str, *, console_link: str = "/console/") -> str:
    """A complete page; ``title`` is escaped here, ``body`` must be escaped HTML.
    ``console_link``: where the top bar's "console" leads (the same thing there)."""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title>"
        "<link rel='icon' href='/console/static/favicon.svg' type='image/svg+xml'>"
        "<link rel='stylesheet' href='/console/static/console.css'></head><body>"
        "<header class='top'><a class='brand' href='/'>idnode</a>"
        f"<div class='account'><a href='{html.escape(console_link)}'>Console · 控制台</a></div>"
        f"</header><main id='main'><h1>{html.escape(title)}</h1>{body}</main></body></html>"
    )
