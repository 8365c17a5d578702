"""The console's two languages: which one a request gets, and the translations.

Strings are written in English in the templates and the code (``_("Sign in")``); the
English text is its own key, so a page reads naturally in the source and a missing
translation shows English rather than a code. ``tests/test_console_i18n.py`` checks
that every string the templates and views pass to ``_`` has its Chinese here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from idnode.console.catalog import ZH_CN

__all__ = ["LANGUAGES", "Translator", "field_problem", "negotiate"]

#: Code -> the language's own name, as the switcher shows it.
LANGUAGES: Mapping[str, str] = {"zh-CN": "中文", "en": "English"}
DEFAULT = "zh-CN"
_CATALOGS: Mapping[str, Mapping[str, str]] = {"zh-CN": ZH_CN, "en": {}}


def negotiate(accept_language: str, chosen: str | None = None) -> str:
    """The language to answer in: the one chosen with the switcher (a cookie), else
    the first of the browser's languages we have, by their q values, else Chinese."""
    if chosen is not None and chosen in LANGUAGES:
        return chosen
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(accept_language.split(",")):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if tag and quality > 0:
            ranked.append((-quality, position, tag.lower()))
    for _, _, tag in sorted(ranked):
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return DEFAULT


class Translator:
    """``_`` in the templates: the text in this request's language, formatted."""

    def __init__(self, language: str) -> None:
        self.language = language
        self._catalog = _CATALOGS[language]

    def __call__(self, text: str, **values: Any) -> str:
        translated = self._catalog.get(text, text)
        return translated.format(**values) if values else translated


#: The service's reasons a field does not fit its template (idnode.templates), as
#: patterns: their variable parts are kept, the words around them translated.
_PROBLEMS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), text)
    for pattern, text in (
        (r"^is required$", "is required"),
        (r"^must be a date, YYYY-MM-DD, got (?P<got>.*)$", "must be a date, YYYY-MM-DD, got {got}"),
        (r"^must be a number, got (?P<got>.*)$", "must be a number, got {got}"),
        (r"^must be at least (?P<n>\S+)$", "must be at least {n}"),
        (r"^must be at most (?P<n>\S+)$", "must be at most {n}"),
        (
            r"^must be one of (?P<choices>.*), got (?P<got>.*)$",
            "must be one of {choices}, got {got}",
        ),
        (r"^must be an http\(s\) URL, got (?P<got>.*)$", "must be an http(s) URL, got {got}"),
        (r"^must be an identifier, prefix/suffix.*$", "must be an identifier, prefix/suffix"),
        (r"^must be 1 to (?P<n>\d+) characters$", "must be 1 to {n} characters"),
        (r"^must be at least (?P<n>\d+) characters$", "must be at least {n} characters"),
        (r"^must be at most (?P<n>\d+) characters$", "must be at most {n} characters"),
    )
)


def field_problem(translate: Callable[..., str], problem: str) -> str:
    """A field's problem, as the service states it, in the page's language."""
    for pattern, text in _PROBLEMS:
        found = pattern.match(problem)
        if found:
            return translate(text, **found.groupdict())
    return problem
