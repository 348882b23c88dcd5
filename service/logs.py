"""Structured logs: one JSON object per line, with the request ID of the request being served.

Every record carries ``ts`` (UTC, ISO 8601, milliseconds), ``level``, ``logger`` and ``msg``; records
emitted while a request is being served also carry its ``request_id`` (a context variable set by
:class:`service.middleware.RequestContextMiddleware`, so log calls anywhere below it need no
plumbing). The access log adds ``model``, ``status``, ``duration_ms``, ``method`` and ``path``. A
record with an exception carries the traceback in ``exc``: the log is the one place it goes.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

# The request being served on this task (or None outside requests: start-up, batch workers).
request_id_var: ContextVar[str | None] = ContextVar("condgen_request_id", default=None)

# Attributes that a record may carry as ``extra=`` and that become top-level JSON fields.
EXTRA_FIELDS = ("request_id", "model", "status", "duration_ms", "method", "path", "client")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id is not None:
            doc["request_id"] = request_id
        for key in EXTRA_FIELDS[1:]:
            if key in record.__dict__:  # given as extra=, even when None (e.g. no model)
                doc[key] = record.__dict__[key]
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exc"] = record.exc_text
        # default=str: an odd object in a message argument must not lose the record.
        return orjson.dumps(doc, default=str).decode()


class TextFormatter(logging.Formatter):
    """Human-readable lines for a terminal, with the request ID when there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        return f"{line} [request_id={request_id}]" if request_id else line


def resolve_format(fmt: str) -> str:
    """``auto``: text for a person at a terminal, JSON for whatever collects the log otherwise."""
    if fmt != "auto":
        return fmt
    return "text" if sys.stderr.isatty() else "json"


def configure_logging(level: str, fmt: str) -> None:
    """Route every logger (ours, uvicorn's, onnxruntime's Python side) to stderr in ``fmt``
    (``json``, ``text``, or ``auto``: :func:`resolve_format`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if resolve_format(fmt) == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's loggers keep their own handlers when it configures them; here they propagate to
    # the root handler instead, so its lines are JSON too. Its access log is replaced by ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv = logging.getLogger(name)
        uv.handlers.clear()
        uv.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
