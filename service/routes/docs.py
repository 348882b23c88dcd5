"""OpenAPI texts the routers share: error responses in the one error body, Retry-After, path examples."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path

from service.schemas import ErrorBody

EXAMPLE_MODEL = "cdcgan-mnist"  # in the bundled zoo, so "Try it out" succeeds against it
# A model name in the path, with an example that "Try it out" fills in.
ModelPath = Annotated[
    str,
    Path(
        description="Model name, see GET /models.", openapi_examples={EXAMPLE_MODEL: {"value": EXAMPLE_MODEL}}
    ),
]

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
