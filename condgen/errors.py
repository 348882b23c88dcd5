"""Typed errors of the client: each carries the server's error type, message and HTTP status.

The server answers every error as ``{"error": {"type": ..., "message": ...}}``; the type picks
the exception class here, so callers catch what they mean (``except UnknownModel``) rather than
parse status codes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson


class CondgenError(Exception):
    """Base of every client error. ``status`` is the HTTP status (0 when no answer came)."""

    def __init__(
        self, message: str, *, error_type: str = "error", status: int = 0, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.status = status
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        where = f"HTTP {self.status} " if self.status else ""
        return f"{where}{self.error_type}: {self.message}"


class ConnectionFailed(CondgenError):
    """No answer: the server could not be reached, or the connection broke."""


class BadRequest(CondgenError):
    """400 or 422: the request is wrong (the message names the field)."""


class Unauthorized(CondgenError):
    """401: no API key, or the wrong one."""


class NotFound(CondgenError):
    """404 for anything but a model."""


class UnknownModel(NotFound):
    """404 ``unknown_model``: no model of that name (or version) on the server."""


class TooLarge(CondgenError):
    """413: the body is larger than the server accepts."""


class Overloaded(CondgenError):
    """429 ``queue_full``, after the retries ran out."""


class Unavailable(CondgenError):
    """503: not ready, shutting down, or no result in time, after the retries ran out."""


class ServerError(CondgenError):
    """500 and other 5xx: the server failed (``inference_failed``...)."""


_BY_TYPE: dict[str, type[CondgenError]] = {
    "unknown_model": UnknownModel,
    "invalid_request": BadRequest,
    "bad_request": BadRequest,
    "queue_full": Overloaded,
    "unauthorized": Unauthorized,
}
_BY_STATUS: dict[int, type[CondgenError]] = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFound,
    413: TooLarge,
    422: BadRequest,
    429: Overloaded,
    503: Unavailable,
}


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the server sends whole seconds); None when absent or a date."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def error_from_response(status: int, body: bytes, headers: Mapping[str, str]) -> CondgenError:
    """The exception for an error answer: its class from the error type, else from the status."""
    error_type, message = f"http_{status}", body[:500].decode("utf-8", "replace") or f"HTTP {status}"
    try:
        doc: Any = orjson.loads(body)
        detail = doc.get("error") if isinstance(doc, dict) else None
        if isinstance(detail, dict):
            error_type = str(detail.get("type", error_type))
            message = str(detail.get("message", message))
    except ValueError:
        pass
    cls = (
        _BY_TYPE.get(error_type) or _BY_STATUS.get(status) or (ServerError if status >= 500 else CondgenError)
    )
    return cls(
        message,
        error_type=error_type,
        status=status,
        retry_after_s=parse_retry_after(headers.get("retry-after")),
    )
