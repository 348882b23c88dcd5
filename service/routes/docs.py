"""OpenAPI texts the routers share: error responses in the one error body, Retry-After."""

from __future__ import annotations

from typing import Any

from service.schemas import ErrorBody

RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "string"}}
}


def errors(texts: dict[int, str], retry_after: tuple[int, ...] = ()) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for error statuses, each with the one error body; Retry-After on ``retry_after``."""
    out: dict[int | str, dict[str, Any]] = {}
    for code, text in texts.items():
        out[code] = {"model": ErrorBody, "description": text}
        if code in retry_after:
            out[code]["headers"] = RETRY_AFTER
    return out


STARTING = errors({503: "The service is starting or shutting down; see Retry-After."})
