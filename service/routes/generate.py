"""``POST /generate``, ``/grid`` and ``/interpolate``: images from the model's batcher.

Each endpoint is one ``serve_*`` function, reached by two doors: the FastAPI route below, and
the fast path (:mod:`service.fastpath`, via :data:`FAST_ROUTES`) for bodies that validate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import APIRouter, Body, Request
from starlette.responses import Response

from service.card import ModelCard
from service.config import Settings
from service.encode import MediaType, json_images, negotiate, npy_bytes, png_of_batch
from service.fastpath import FastRoute
from service.paths import GENERATE, GRID, INTERPOLATE
from service.plan import Plan, plan_generate, plan_grid, plan_interpolate
from service.routes.docs import errors
from service.schemas import (
    GENERATE_EXAMPLES,
    GRID_EXAMPLES,
    INTERPOLATE_EXAMPLES,
    GenerateRequest,
    GridRequest,
    ImagesResponse,
    InterpolateRequest,
)
from service.serving import ImageResponse, infer, lookup, resources_of

# Responses above this many pixel bytes are encoded on a worker thread: a 64-image grid takes
# milliseconds of zlib/base64 work that would otherwise stall every other request on the loop.
# Below it, the thread hop (~50-100 µs) costs more than the encoding.
INLINE_ENCODE_MAX_BYTES = 32 * 1024
SEED_HEADER = "X-Condgen-Seed"
MODEL_HEADER = "X-Condgen-Model"
_MODEL_KEY = MODEL_HEADER.lower().encode()
_SEED_KEY = SEED_HEADER.lower().encode()
_VARY_ACCEPT = (b"vary", b"Accept")


async def _answer(
    request: Request,
    name: str,
    make_plan: Callable[[ModelCard, Settings], Plan],
    truncated: bool = False,
) -> Response:
    """The path every image endpoint shares: model → media type → plan → batcher → encoding.

    The media type is negotiated before any compute, so a 406 costs no session run. Truncated
    latents are drawn off the event loop: their redraw loop costs up to ~0.5 ms a row."""
    served = lookup(request, name)
    media = negotiate(request.headers.get("accept"))
    settings = resources_of(request).settings
    if truncated:
        plan = await asyncio.to_thread(make_plan, served.card, settings)
    else:
        plan = make_plan(served.card, settings)
    images = await infer(
        request,
        served,
        plan.z,
        plan.labels,
        settings.request_timeout_s,
        settings.disconnect_watch_after_ms / 1000.0,
    )
    return await _render(plan, images, media, served.entry.name, settings)


async def _render(
    plan: Plan, images: np.ndarray, media: MediaType, model: str, settings: Settings
) -> Response:
    level = settings.png_compress_level

    def encode() -> bytes:
        if media is MediaType.PNG:
            return png_of_batch(images, plan.layout, level)
        if media is MediaType.NPY:
            return npy_bytes(images)
        payload: dict[str, Any] = {
            "model": model,
            "shape": list(images.shape),
            "seed": plan.seed,
            "layout": list(plan.layout),
            "images": json_images(images, plan.metadata, level),
        }
        if plan.seeds is not None:
            payload["seeds"] = plan.seeds
        return orjson.dumps(payload)

    body = encode() if images.nbytes <= INLINE_ENCODE_MAX_BYTES else await asyncio.to_thread(encode)
    headers = [(_MODEL_KEY, model.encode("latin-1")), _VARY_ACCEPT]
    if plan.seed_header is not None:
        headers.append((_SEED_KEY, plan.seed_header.encode("latin-1")))
    return ImageResponse(body, media, headers)


async def serve_generate(request: Request, body: GenerateRequest) -> Response:
    return await _answer(request, body.model, partial(plan_generate, body), body.truncation is not None)


async def serve_grid(request: Request, body: GridRequest) -> Response:
    return await _answer(request, body.model, partial(plan_grid, body), body.truncation is not None)


async def serve_interpolate(request: Request, body: InterpolateRequest) -> Response:
    return await _answer(request, body.model, partial(plan_interpolate, body), body.truncation is not None)


# The fast path's table: its answers and the routes' below come from the same functions.
FAST_ROUTES = {
    GENERATE: FastRoute(GenerateRequest, serve_generate),
    GRID: FastRoute(GridRequest, serve_grid),
    INTERPOLATE: FastRoute(InterpolateRequest, serve_interpolate),
}

IMAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": ImagesResponse,
        "description": "PNG (default; a grid when several images), JSON, or NPY, chosen by Accept.",
        "content": {
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "application/x-npy": {"schema": {"type": "string", "format": "binary"}},
        },
        "headers": {
            SEED_HEADER: {
                "description": "Seed used (comma-separated pair for /interpolate).",
                "schema": {"type": "string"},
            },
            MODEL_HEADER: {"description": "Model that answered.", "schema": {"type": "string"}},
        },
    },
    **errors(
        {
            404: "Unknown model (type unknown_model).",
            406: "Unsupported Accept header.",
            413: "Body larger than max_body_bytes.",
            422: "Invalid request: the message names the field.",
            429: "Queue full; see Retry-After.",
            500: "Inference failed.",
            503: "Model not ready (model_not_ready), shutting down (shutting_down), or no result in time "
            "(timeout, queue_timeout); see Retry-After.",
        },
        retry_after=(429, 503),
    ),
}

router = APIRouter(tags=["generate"])


@router.post(
    GENERATE,
    response_class=Response,
    responses=IMAGE_RESPONSES,
    summary="Generate images for a label and seed (or explicit latents)",
)
async def generate(
    request: Request, body: Annotated[GenerateRequest, Body(openapi_examples=GENERATE_EXAMPLES)]
) -> Response:
    return await serve_generate(request, body)


@router.post(
    GRID,
    response_class=Response,
    responses=IMAGE_RESPONSES,
    summary="Labels × latents grid: rows are classes, columns share one latent",
)
async def grid(
    request: Request, body: Annotated[GridRequest, Body(openapi_examples=GRID_EXAMPLES)]
) -> Response:
    return await serve_grid(request, body)


@router.post(
    INTERPOLATE,
    response_class=Response,
    responses=IMAGE_RESPONSES,
    summary="Latent interpolation between two seeds or two latents, at a fixed label",
)
async def interpolate(
    request: Request, body: Annotated[InterpolateRequest, Body(openapi_examples=INTERPOLATE_EXAMPLES)]
) -> Response:
    return await serve_interpolate(request, body)
