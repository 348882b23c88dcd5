"""The Open Inference Protocol's routes (KServe v2) over the serving core both APIs share.

What the protocol's bodies mean (tensors, binary data, compression) lives in :mod:`service.v2`;
errors leave through :func:`service.errors.error_response` like every other, in the protocol's
``{"error": "<message>"}`` shape because their paths are under ``/v2/``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from service.card import ModelCard
from service.errors import INTERNAL_ERROR_MESSAGE, ModelChanged, NotFound, ServiceError
from service.paths import V2_PREFIX
from service.routes.docs import ModelPath
from service.serving import card_of, infer, lookup, resources_or_none
from service.v2 import (
    EXTENSIONS,
    HEADER_LENGTH,
    INLINE_ENCODE_MAX_BYTES,
    INLINE_PARSE_MAX_BYTES,
    MIN_COMPRESS_BYTES,
    SERVER_NAME,
    OutputRequest,
    Rows,
    compress,
    decompress,
    encode_response,
    model_metadata,
    model_rows,
    parse_inputs,
    parse_outputs,
    response_coding,
    split_body,
    timeout_s,
)

logger = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[Response]]

router = APIRouter(prefix=V2_PREFIX, tags=["kserve-v2"])


def _json(content: Any, status_code: int = 200) -> Response:
    return Response(content=orjson.dumps(content), status_code=status_code, media_type="application/json")


def _error_doc(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}},
                    "required": ["error"],
                }
            }
        },
    }


def _json_doc(description: str, properties: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    schema = {"type": "object", "properties": properties, "required": list(properties)}
    return {200: {"description": description, "content": {"application/json": {"schema": schema}}}}


_READY = {"type": "boolean"}
_TENSOR_META = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
        },
    },
}
MODEL_ERRORS: dict[int | str, dict[str, Any]] = {
    404: _error_doc("Unknown model or version."),
    503: _error_doc("Model not loaded or not ready, or the service is starting or shutting down."),
}
INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The image tensor: JSON, or the JSON header then raw bytes "
        "(Inference-Header-Content-Length) when binary output was asked for.",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    400: _error_doc("Invalid request: shapes, datatypes, byte counts, values or labels."),
    404: _error_doc("Unknown model or version."),
    413: {"description": "Body larger than max_body_bytes (before or after decompression)."},
    415: _error_doc("Unsupported Content-Encoding."),
    429: _error_doc("Queue full; see Retry-After."),
    500: _error_doc("Inference failed."),
    503: _error_doc("Model not ready, shutting down, or no result in time; see Retry-After."),
}


# The version in the path is the card's; the bundled models are at version 1.
VersionPath = Annotated[str, Path(description="Model version.", openapi_examples={"1": {"value": "1"}})]


def _bind(handler: Callable[[Request, str, str | None], Awaitable[Response]], versioned: bool) -> Handler:
    """An endpoint with or without the ``{version}`` path parameter, for one shared handler."""
    if versioned:

        async def with_version(request: Request, name: ModelPath, version: VersionPath) -> Response:
            return await handler(request, name, version)

        return with_version

    async def without_version(request: Request, name: ModelPath) -> Response:
        return await handler(request, name, None)

    return without_version


# ---------------------------------------------------------------------------------- server
@router.get(
    "",
    summary="Server metadata",
    responses=_json_doc(
        "Name, version and protocol extensions.",
        {"name": {"type": "string"}, "version": {"type": "string"}, "extensions": {"type": "array"}},
    ),
)
async def server_metadata(request: Request) -> Response:
    version = getattr(request.app, "version", "")
    return _json({"name": SERVER_NAME, "version": version, "extensions": EXTENSIONS})


@router.get("/health/live", summary="Server liveness", responses=_json_doc("Alive.", {"live": _READY}))
async def live() -> Response:
    return _json({"live": True})


@router.get(
    "/health/ready",
    summary="Server readiness: at least one model ready",
    responses={
        **_json_doc("Ready.", {"ready": _READY}),
        503: {
            "description": "Not ready.",
            "content": {"application/json": {"schema": {"type": "object", "properties": {"ready": _READY}}}},
        },
    },
)
async def ready(request: Request) -> Response:
    resources = resources_or_none(request)
    is_ready = resources is not None and resources.any_ready
    return _json({"ready": is_ready}, 200 if is_ready else 503)


# ---------------------------------------------------------------------------------- models
async def metadata(request: Request, name: str, version: str | None) -> Response:
    _, _, card = card_of(request, name, version)
    return _json(model_metadata(card))


async def model_ready(request: Request, name: str, version: str | None) -> Response:
    resources, entry, _ = card_of(request, name, version)
    is_ready = resources.state_of(entry).ready
    return _json({"name": name, "ready": is_ready}, 200 if is_ready else 503)


@dataclass(frozen=True)
class _Parsed:
    document: dict[str, Any]
    rows: Rows
    wanted: OutputRequest
    wait_s: float


async def _parse(request: Request, card: ModelCard, max_bytes: int, max_n: int, wait_s: float) -> _Parsed:
    encoding = request.headers.get("content-encoding")
    header_length = request.headers.get(HEADER_LENGTH)

    def parse(raw: bytes) -> _Parsed:
        document, binary = split_body(decompress(raw, encoding, max_bytes), header_length)
        rows = model_rows(card, parse_inputs(document, binary), max_n)
        return _Parsed(document, rows, parse_outputs(document), timeout_s(document, wait_s))

    raw = await request.body()
    # Checking a large JSON tensor element by element takes milliseconds: off the event loop.
    if len(raw) <= INLINE_PARSE_MAX_BYTES and encoding is None:
        return parse(raw)
    return await asyncio.to_thread(parse, raw)


async def _encode(request: Request, card: ModelCard, parsed: _Parsed, images: np.ndarray) -> Response:
    accept_encoding = request.headers.get("accept-encoding")

    def encode() -> tuple[bytes, dict[str, str], str]:
        content, headers, media = encode_response(
            card.name, card.version, parsed.document.get("id"), images, parsed.wanted.binary
        )
        coding = response_coding(accept_encoding)
        if coding is not None and len(content) >= MIN_COMPRESS_BYTES:
            content = compress(content, coding)
            headers["Content-Encoding"] = coding
        headers["Vary"] = "Accept-Encoding"
        return content, headers, media

    if images.nbytes <= INLINE_ENCODE_MAX_BYTES:
        content, headers, media = encode()
    else:
        content, headers, media = await asyncio.to_thread(encode)
    return Response(content=content, media_type=media, headers=headers)


async def inference(request: Request, name: str, version: str | None) -> Response:
    """Parse the tensors against the card, run the rows through the model's batcher, encode."""
    try:
        resources, _, card = card_of(request, name, version)
        settings = resources.settings
        parsed = await _parse(
            request, card, settings.max_body_bytes, settings.max_n, settings.request_timeout_s
        )
        served = lookup(request, name, version)
        if served.card is not card and served.card != card:
            # Planned against the version a reload replaced meanwhile: plan and run one version.
            raise ModelChanged(f"model {name!r} changed during the request; retry", retry_after_s=1.0)
        images = await infer(request, served, parsed.rows.z, parsed.rows.labels, parsed.wait_s)
        return await _encode(request, card, parsed, images)
    except ServiceError:
        raise
    except Exception:
        # Answered here rather than by the app's last-resort handler, which re-raises into the server.
        logger.exception("v2 inference on model %r failed unexpectedly", name)
        raise ServiceError(INTERNAL_ERROR_MESSAGE) from None


infer_doc: dict[str, Any] = {
    "summary": "Inference: JSON or binary tensors in, the image tensor out",
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"type": "object"},
                    # For the path's example model, cdcgan-mnist: its latent is 5-D.
                    "example": {
                        "inputs": [
                            {
                                "name": "z",
                                "datatype": "FP32",
                                "shape": [1, 5],
                                "data": [0.5, -1.2, 0.3, 0.8, -0.4],
                            },
                            {"name": "label", "datatype": "INT64", "shape": [1], "data": [3]},
                        ]
                    },
                },
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
}

# Unversioned and versioned paths share handlers; the version must be the card's.
for prefix, versioned in (("/models/{name}", False), ("/models/{name}/versions/{version}", True)):
    router.add_api_route(
        prefix,
        _bind(metadata, versioned),
        methods=["GET"],
        summary="Model metadata",
        responses={
            **_json_doc(
                "Name, versions, platform, and the input and output tensors.",
                {
                    "name": {"type": "string"},
                    "versions": {"type": "array", "items": {"type": "string"}},
                    "platform": {"type": "string"},
                    "inputs": _TENSOR_META,
                    "outputs": _TENSOR_META,
                },
            ),
            **MODEL_ERRORS,
        },
    )
    router.add_api_route(
        prefix + "/ready",
        _bind(model_ready, versioned),
        methods=["GET"],
        summary="Model readiness",
        responses={
            **_json_doc("Ready.", {"name": {"type": "string"}, "ready": _READY}),
            404: MODEL_ERRORS[404],
            503: {
                "description": "Not ready (body: name, ready), or no such model loaded (body: error).",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
        },
    )
    router.add_api_route(
        prefix + "/infer",
        _bind(inference, versioned),
        methods=["POST"],
        responses=INFER_RESPONSES,
        **infer_doc,
    )


@router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False)
async def not_found(request: Request, path: str) -> Response:
    raise NotFound(f"no route for {request.method} {request.url.path}")
