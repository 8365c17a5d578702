"""How a serving node logs: lines of text for a terminal, or JSON lines for a log
collector (``log_format = "json"``), each a single object with the time, level,
logger, message, process id and the structured fields the line was logged with.

Structured fields travel as ``extra={"fields": {...}}``: a line per request at debug
(:mod:`idnode.server.measure`), a line per write at info
(:meth:`idnode.service.core.ServiceCore.update`). Neither ever holds a value, a
password, a token or a header: what is logged is chosen field by field, not dumped.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Final

__all__ = ["FORMATS", "JSONFormatter", "configure_logging"]

FORMATS: Final = ("text", "json")
_TEXT = "%(asctime)s %(name)s %(levelname)s %(message)s"


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": _utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(level: str, log_format: str = "text") -> None:
    """The root logger's one handler, on stderr; uvicorn's loggers propagate to it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if log_format == "json" else logging.Formatter(_TEXT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def _utc(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"
