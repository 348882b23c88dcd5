"""The HTTP API: ``create_app(settings)`` and the lifespan that owns the models and their batchers.

Request path: schemas (pydantic) -> plan (card checks, seed -> latents) -> batcher (per model,
one session run per batch on a worker thread) -> encode (PNG / grid / NPY / JSON) -> response.
Resources are built in the lifespan and handed to routes as FastAPI dependencies; nothing is
created at import time, so tests can build as many independent apps as they like.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import Body, FastAPI, Request
from starlette.responses import FileResponse, Response

from service.card import SAMPLES_FILE, ModelCard
from service.config import Settings
from service.encode import MediaType, json_images, negotiate, npy_bytes, png_of_batch
from service.errors import NotFound, ShuttingDown, install_error_handlers
from service.fastpath import FastRoute, GenerationFastPath
from service.metrics import Metrics
from service.middleware import (
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    InflightTracker,
    RequestContextMiddleware,
    is_protected,
)
from service.plan import Plan, plan_generate, plan_grid, plan_interpolate
from service.playground import build_router as playground_router
from service.registry import ModelEntry, ModelRegistry, RunnerFactory, default_runner_factory
from service.routes import v2 as v2_routes
from service.schemas import (
    GENERATE_EXAMPLES,
    GRID_EXAMPLES,
    INTERPOLATE_EXAMPLES,
    ErrorBody,
    GenerateRequest,
    GridRequest,
    Health,
    ImagesResponse,
    InterpolateRequest,
    ModelsResponse,
    ReadinessBody,
    ReloadResponse,
)
from service.serving import (
    ImageResponse,
    OrjsonResponse,
    Resources,
    ResourcesDep,
    infer,
    lookup,
    resources_of,
    resources_or_none,
    settle_heap,
)
from service.supervisor import start_batchers

logger = logging.getLogger(__name__)

# Responses above this many pixel bytes are encoded on a worker thread: a 64-image grid takes
# milliseconds of zlib/base64 work that would otherwise stall every other request on the loop.
# Below it, the thread hop (~50-100 µs) costs more than the encoding.
INLINE_ENCODE_MAX_BYTES = 32 * 1024
SEED_HEADER = "X-Condgen-Seed"
MODEL_HEADER = "X-Condgen-Model"


async def _answer(
    request: Request,
    resources: Resources,
    name: str,
    make_plan: Callable[[ModelCard, Settings], Plan],
) -> Response:
    """The path every image endpoint shares: model → media type → plan → batcher → encoding.

    The media type is negotiated before any compute, so a 406 costs no session run."""
    served = lookup(request, name)
    media = negotiate(request.headers.get("accept"))
    settings = resources.settings
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


_MODEL_KEY = MODEL_HEADER.lower().encode()
_SEED_KEY = SEED_HEADER.lower().encode()
_VARY_ACCEPT = (b"vary", b"Accept")


async def serve_generate(request: Request, body: GenerateRequest) -> Response:
    return await _answer(request, resources_of(request), body.model, partial(plan_generate, body))


async def serve_grid(request: Request, body: GridRequest) -> Response:
    return await _answer(request, resources_of(request), body.model, partial(plan_grid, body))


async def serve_interpolate(request: Request, body: InterpolateRequest) -> Response:
    return await _answer(request, resources_of(request), body.model, partial(plan_interpolate, body))


# The generation endpoints on the fast path (service/fastpath.py); their FastAPI routes below
# call the same functions, and answer whatever the fast path passes on.
FAST_ROUTES = {
    "/generate": FastRoute(GenerateRequest, serve_generate),
    "/grid": FastRoute(GridRequest, serve_grid),
    "/interpolate": FastRoute(InterpolateRequest, serve_interpolate),
}
GENERATION_PATHS = frozenset(FAST_ROUTES)


def _errors(texts: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for error statuses, each with the one error body."""
    return {code: {"model": ErrorBody, "description": text} for code, text in texts.items()}


_ERRORS = _errors(
    {
        404: "Unknown model (type unknown_model).",
        406: "Unsupported Accept header.",
        413: "Body larger than max_body_bytes.",
        422: "Invalid request: the message names the field.",
        429: "Queue full; see Retry-After.",
        500: "Inference failed.",
        503: "Model not ready (model_not_ready), shutting down (shutting_down), or no result in time "
        "(timeout, queue_timeout); see Retry-After.",
    }
)
_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "string"}}
}
for _code in (429, 503):
    _ERRORS[_code]["headers"] = _RETRY_AFTER
_STARTING = _errors({503: "The service is starting or shutting down; see Retry-After."})
_MODEL_ERRORS = _errors(
    {
        404: "No such model (type unknown_model), or no samples.png.",
        422: "Invalid request.",
        503: "The model failed to load (model_not_ready), or the service is starting.",
    }
)
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
    **_ERRORS,
}


def create_app(
    settings: Settings | None = None,
    *,
    runner_factory: RunnerFactory | None = None,
    handle_sighup: bool = False,
) -> FastAPI:
    """Build the ASGI app. ``runner_factory`` is the seam for wrapping or replacing model runners.

    ``handle_sighup``: reload the model repository on SIGHUP (``python -m service`` sets it; an app
    embedded in another process leaves that process's signals alone).
    """
    settings = settings or Settings()
    factory = runner_factory or default_runner_factory
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry = await asyncio.to_thread(ModelRegistry.scan, settings.models_dir, settings, factory)
        batchers = start_batchers(registry, settings, metrics, factory)
        metrics.register_models(ready=list(batchers), failed=[e.name for e in registry.failed])
        resources = Resources(
            settings=settings, registry=registry, batchers=batchers, metrics=metrics, runner_factory=factory
        )
        app.state.resources = resources
        logger.info(
            "serving %d model(s) from %s: %s%s",
            len(batchers),
            settings.models_dir,
            ", ".join(batchers) or "none",
            f"; skipped: {', '.join(e.name for e in registry.failed)}" if registry.failed else "",
        )
        # From here on the models live in ``resources`` only: locals of this generator would keep
        # the first sessions alive for the process's lifetime, long after a reload replaced them.
        del registry, batchers
        settle_heap()
        unhook = _reload_on_sighup(resources) if handle_sighup else None
        try:
            yield
        finally:
            if unhook is not None:
                unhook()
            resources.closing = True
            async with resources.reload_lock:  # a reload in progress finishes its swap first
                grace = resources.grace_left_s()
                await asyncio.gather(
                    *(b.stop(grace) for b in resources.batchers.values()), *list(resources.retiring)
                )
            logger.info("all batchers stopped")
            gc.unfreeze()  # what this app held may now be garbage like anything else

    app = FastAPI(
        title="condgen",
        version="0.1.0",
        summary="Conditional image generators (GANs and VAE decoders) served from ONNX.",
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
        redoc_url=None,
        telemetry={
            "tracing": settings.otel_telemetry,
            "metrics": settings.otel_telemetry,
            "logs": settings.otel_telemetry,
        },
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.resources = None
    app.state.inflight = InflightTracker()
    install_error_handlers(app)

    def is_known_model(name: str) -> bool:
        resources: Resources | None = app.state.resources
        return resources is not None and name in resources.registry

    # Added innermost first. Outermost, every response gets its request ID and access line (and a
    # generation request its metrics, 401s and 413s included); the API key is checked before the
    # body is read.
    if settings.fast_path:
        app.add_middleware(GenerationFastPath, routes=FAST_ROUTES)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    if settings.api_key is not None:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key.get_secret_value())
    app.add_middleware(
        RequestContextMiddleware,
        tracker=app.state.inflight,
        metrics=metrics,
        is_known_model=is_known_model,
    )

    # ------------------------------------------------------------------ generation
    @app.post(
        "/generate",
        tags=["generate"],
        response_class=Response,
        responses=IMAGE_RESPONSES,
        summary="Generate images for a label and seed (or explicit latents)",
    )
    async def generate(
        request: Request, body: Annotated[GenerateRequest, Body(openapi_examples=GENERATE_EXAMPLES)]
    ) -> Response:
        return await serve_generate(request, body)

    @app.post(
        "/grid",
        tags=["generate"],
        response_class=Response,
        responses=IMAGE_RESPONSES,
        summary="Labels × latents grid: rows are classes, columns share one latent",
    )
    async def grid(
        request: Request, body: Annotated[GridRequest, Body(openapi_examples=GRID_EXAMPLES)]
    ) -> Response:
        return await serve_grid(request, body)

    @app.post(
        "/interpolate",
        tags=["generate"],
        response_class=Response,
        responses=IMAGE_RESPONSES,
        summary="Latent interpolation between two seeds or two latents, at a fixed label",
    )
    async def interpolate(
        request: Request, body: Annotated[InterpolateRequest, Body(openapi_examples=INTERPOLATE_EXAMPLES)]
    ) -> Response:
        return await serve_interpolate(request, body)

    # ------------------------------------------------------------------ models
    def _status_json(resources: Resources, entry: ModelEntry) -> dict[str, Any]:
        state = resources.state_of(entry)
        return {
            "name": entry.name,
            "status": state.status,
            "reason": state.reason,
            "card": entry.card.model_dump(mode="json") if entry.card is not None else None,
            "samples_url": f"/models/{entry.name}/{SAMPLES_FILE}" if entry.samples_path else None,
        }

    @app.get(
        "/models",
        tags=["models"],
        response_model=ModelsResponse,
        responses=_STARTING,
        summary="Every model, with status",
    )
    async def list_models(resources: ResourcesDep) -> OrjsonResponse:
        return OrjsonResponse({"models": [_status_json(resources, e) for e in resources.registry]})

    @app.get(
        "/models/{name}",
        tags=["models"],
        response_model=ModelCard,
        responses=_MODEL_ERRORS,
        summary="A model's card",
    )
    async def get_model(name: str, resources: ResourcesDep) -> OrjsonResponse:
        entry, card = resources.card_of(name)
        status = resources.state_of(entry).status
        return OrjsonResponse(card.model_dump(mode="json"), headers={"X-Condgen-Model-Status": status})

    @app.get(
        f"/models/{{name}}/{SAMPLES_FILE}",
        tags=["models"],
        response_class=FileResponse,
        responses={200: {"content": {"image/png": {}}}, **_MODEL_ERRORS},
        summary="The sample grid committed with the model",
    )
    async def get_samples(name: str, resources: ResourcesDep) -> FileResponse:
        path = resources.entry(name).samples_path
        if path is None:
            raise NotFound(f"model {name!r} has no {SAMPLES_FILE}")
        return FileResponse(path, media_type="image/png")

    # ------------------------------------------------------------------ operations
    @app.get("/healthz", tags=["operations"], response_model=Health, summary="Liveness: the process answers")
    async def healthz() -> OrjsonResponse:
        return OrjsonResponse({"status": "ok"})

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness: at least one model ready, workers alive",
        response_model=ReadinessBody,
        responses={
            503: {
                "model": ReadinessBody,
                "description": "Not ready (starting, draining, no model ready); the body says why.",
                "headers": _RETRY_AFTER,
            }
        },
    )
    async def readyz(request: Request) -> OrjsonResponse:
        resources = resources_or_none(request)
        if resources is None:
            message = "starting: models are not loaded yet"
            return _readiness(False, message, {})
        models = {}
        for entry in resources.registry:
            state = resources.state_of(entry)
            detail: dict[str, Any] = {"status": state.status, "reason": state.reason}
            batcher = resources.batchers.get(entry.name)
            if batcher is not None:
                detail.update(
                    queued_images=batcher.queued_images,
                    queued_requests=batcher.queued_requests,
                    session_runs=batcher.session_runs,
                )
            models[entry.name] = detail
        ready = [n for n, d in models.items() if d["status"] == "ready"]
        if resources.closing:
            message = "shutting down"
        elif resources.registry.problem and not ready:
            message = resources.registry.problem
        elif not ready:
            message = "no model is ready: " + "; ".join(f"{n}: {d['reason']}" for n, d in models.items())
        else:
            message = f"{len(ready)} of {len(models)} model(s) ready"
        return _readiness(bool(ready) and not resources.closing, message, models)

    @app.get("/metrics", tags=["operations"], response_class=Response, summary="Prometheus metrics")
    async def metrics_endpoint() -> Response:
        body, content_type = metrics.render()
        return Response(content=body, media_type=content_type)

    @app.post(
        "/admin/reload",
        tags=["operations"],
        response_model=ReloadResponse,
        responses=_STARTING,
        summary="Reload the model repository: new and changed models swap in, queued work drains",
    )
    async def admin_reload(resources: ResourcesDep) -> OrjsonResponse:
        # Shielded: a client that hangs up must not leave a reload half done.
        report = await asyncio.shield(asyncio.ensure_future(resources.reload("POST /admin/reload")))
        return OrjsonResponse(report.to_json())

    if settings.api_key is not None:
        _document_api_key(app)

    # The playground page at / and the Open Inference Protocol under /v2 share this serving path.
    app.include_router(playground_router())
    app.include_router(v2_routes.router)

    return app


def _readiness(ready: bool, message: str, models: dict[str, Any]) -> OrjsonResponse:
    # No models_dir here: no response names a path on the server.
    body: dict[str, Any] = {"status": "ready" if ready else "not_ready", "message": message, "models": models}
    if ready:
        return OrjsonResponse(body)
    # Also the common error shape, so clients that only know that one still read the reason.
    body["error"] = {"type": "not_ready", "message": message}
    return OrjsonResponse(body, status_code=503, headers={"Retry-After": "5"})


_background: set[asyncio.Task[Any]] = set()  # strong references to fire-and-forget tasks


def _reload_on_sighup(resources: Resources) -> Callable[[], None] | None:
    """Reload the repository on SIGHUP; returns the function that removes the handler."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGHUP"):
        return None
    loop = asyncio.get_running_loop()

    async def reload() -> None:
        try:
            await resources.reload("SIGHUP")
        except ShuttingDown:
            logger.info("SIGHUP during shutdown: not reloading")
        except Exception:
            logger.exception("reload on SIGHUP failed")

    def on_hangup() -> None:
        task = loop.create_task(reload(), name="reload-sighup")
        _background.add(task)
        task.add_done_callback(_background.discard)

    def unhook() -> None:
        loop.remove_signal_handler(signal.SIGHUP)

    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    return unhook


def _document_api_key(app: FastAPI) -> None:
    """With an API key configured, the schema says which operations need it (and may answer 401)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
            "type": "http",
            "scheme": "bearer",
            "description": "CONDGEN_API_KEY",
        }
        unauthorized = {
            "description": "Missing or wrong API key; see WWW-Authenticate.",
            "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        }
        for path, operations in schema.get("paths", {}).items():
            if not is_protected(path.replace("{", "").replace("}", "")):
                continue
            for operation in operations.values():
                operation["security"] = [{"bearer": []}]
                operation.setdefault("responses", {})["401"] = unauthorized
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
