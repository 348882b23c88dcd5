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
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import Body, Depends, FastAPI, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.types import Message

from service.batcher import DynamicBatcher
from service.card import SAMPLES_FILE, ModelCard, is_valid_name
from service.config import Settings
from service.encode import MediaType, json_images, negotiate, npy_bytes, png_of_batch
from service.errors import (
    ClientDisconnected,
    ModelNotReady,
    NotFound,
    RequestTimeout,
    ShuttingDown,
    Unavailable,
    UnknownModel,
    install_error_handlers,
)
from service.fastpath import FastRoute, GenerationFastPath
from service.metrics import UNKNOWN_MODEL, Metrics
from service.middleware import (
    STATE_MODEL,
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    InflightTracker,
    RequestContextMiddleware,
    is_protected,
)
from service.plan import Plan, plan_generate, plan_grid, plan_interpolate
from service.playground import build_router as playground_router
from service.registry import ModelEntry, ModelRegistry, RunnerFactory, default_runner_factory
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
from service.supervisor import ReloadReport, activate, log_report, reload_repository, start_batchers
from service.v2 import build_router as v2_router

logger = logging.getLogger(__name__)

# Responses above this many pixel bytes are encoded on a worker thread: a 64-image grid takes
# milliseconds of zlib/base64 work that would otherwise stall every other request on the loop.
# Below it, the thread hop (~50-100 µs) costs more than the encoding.
INLINE_ENCODE_MAX_BYTES = 32 * 1024
SEED_HEADER = "X-Condgen-Seed"
MODEL_HEADER = "X-Condgen-Model"


class OrjsonResponse(JSONResponse):
    # A JSONResponse, so that FastAPI documents routes' response models as JSON schemas.
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


@dataclass
class Resources:
    """Everything the lifespan owns; routes get it through :func:`get_resources`."""

    settings: Settings
    registry: ModelRegistry
    batchers: dict[str, DynamicBatcher]
    metrics: Metrics
    runner_factory: RunnerFactory = default_runner_factory
    closing: bool = False
    # time.monotonic() by which a drain (SIGTERM) must be over; None while not draining.
    drain_deadline: float | None = None
    reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Batchers replaced by a reload, finishing the work queued on them.
    retiring: set[asyncio.Task[None]] = field(default_factory=set)

    def begin_drain(self) -> None:
        """SIGTERM: readiness fails and new work is refused at once; queued work may finish."""
        if self.drain_deadline is None:
            self.drain_deadline = time.monotonic() + self.settings.drain_timeout_s
        self.closing = True

    def grace_left_s(self) -> float:
        if self.drain_deadline is None:
            return self.settings.drain_timeout_s
        return max(0.0, self.drain_deadline - time.monotonic())

    async def reload(self, trigger: str) -> ReloadReport:
        """Re-scan the models directory and swap in what changed; see :mod:`service.supervisor`."""
        async with self.reload_lock:
            if self.closing:
                raise ShuttingDown("the service is shutting down; not reloading")
            reloaded = await asyncio.to_thread(
                reload_repository, self.registry, self.batchers, self.settings, self.runner_factory
            )
            old = self.batchers
            # No await from here to the swap: every request sees the old models or the new ones.
            activate(reloaded, old, self.metrics)
            self.registry, self.batchers = reloaded.registry, reloaded.batchers
            for batcher in reloaded.retired:
                task = asyncio.create_task(self._retire(batcher), name=f"retire-{batcher.name}")
                self.retiring.add(task)
                task.add_done_callback(self._retired)
            self.metrics.reloads.labels("ok" if reloaded.report.ok else "partial").inc()
            log_report(reloaded.report, trigger)
            return reloaded.report

    def _retired(self, task: asyncio.Task[None]) -> None:
        self.retiring.discard(task)
        if not self.retiring and not self.closing:
            # The reload is over (the retiring tasks' frames are gone too): collect any cycles
            # left among the replaced sessions, and freeze the new ones with the rest.
            settle_heap()

    async def _retire(self, batcher: DynamicBatcher) -> None:
        await batcher.stop(self.settings.drain_timeout_s)
        if batcher.name not in self.batchers:
            self.metrics.forget_model(batcher.name)

    def model_status(self, entry: ModelEntry) -> tuple[str, str | None]:
        if not entry.loaded:
            return "failed", entry.reason
        batcher = self.batchers.get(entry.name)
        if batcher is None:
            return "not_ready", "no batching worker"
        if self.closing or batcher.state in {"stopping", "stopped"}:
            return "not_ready", "shutting down"
        if not batcher.ready:
            return "not_ready", batcher.dead_reason or "batching worker is not running"
        stuck_s = batcher.run_in_flight_s
        if stuck_s > self.settings.request_timeout_s:
            # No client could get an answer in time; let the load balancer route around us.
            return "not_ready", f"a session run has been in flight for {stuck_s:.0f} s"
        return "ready", None


def settle_heap() -> None:
    """Collect garbage, then freeze what is left out of the cyclic collector's reach.

    After start-up (and after a reload has retired old sessions) nearly every object in the
    process (modules, sessions, cards, ~70,000 of them) lives as long as the process. Frozen, they
    are no longer walked by the full collections that request traffic triggers, which would
    otherwise stall the event loop, and every request waiting on it, for milliseconds at a time.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def resources_of(request: Request) -> Resources:
    resources: Resources | None = getattr(request.app.state, "resources", None)
    if resources is None:
        raise Unavailable("the service is starting; models are not loaded yet", retry_after_s=1.0)
    return resources


async def get_resources(request: Request) -> Resources:
    """The dependency. async on purpose: FastAPI runs a plain ``def`` dependency in its thread
    pool, a thread hop per request that cost 17% of the CPU profile at n=1 for a getattr."""
    return resources_of(request)


ResourcesDep = Annotated[Resources, Depends(get_resources)]


def _serving(resources: Resources, name: str, request: Request) -> tuple[ModelEntry, DynamicBatcher]:
    """The entry and batcher for ``name``, or the error a client should see."""
    entry = resources.registry.get(name) if is_valid_name(name) else None
    setattr(request.state, STATE_MODEL, name if entry is not None else UNKNOWN_MODEL)
    if entry is None:
        known = ", ".join(resources.registry.names[:20]) or "none"
        raise UnknownModel(f"unknown model {name!r}; known models: {known}")
    if not entry.loaded or entry.card is None:
        raise ModelNotReady(f"model {name!r} failed to load: {entry.reason}", retry_after_s=None)
    if resources.closing:
        raise ShuttingDown("the service is shutting down")
    batcher = resources.batchers[name]
    status, reason = resources.model_status(entry)
    if status != "ready":
        if reason == "shutting down":
            raise ShuttingDown(f"model {name!r} is shutting down")
        raise ModelNotReady(f"model {name!r} is not ready: {reason}", retry_after_s=5.0)
    return entry, batcher


async def _watch_disconnect(receive: Any, give_up: Callable[[str], None]) -> None:
    """Give up on the result when the client disconnects (the body has been read; nothing else
    arrives but the disconnect)."""
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            give_up("disconnected")
            return


async def _await_result(
    request: Request, future: asyncio.Future[np.ndarray], timeout_s: float, watch_after_s: float = 0.0
) -> np.ndarray:
    """Wait for the batcher's result; give up on timeout or client disconnect.

    Either way the future is cancelled, so a request still queued is dropped before compute. The
    disconnect watcher (a task reading ``receive``) starts after ``watch_after_s``: most results
    come sooner, and for them it would be pure overhead. The future is awaited directly, with
    timers that cancel it: ``asyncio.wait`` builds a waiter future, a set and callbacks per
    request, about 11 µs against 3 µs here on a 2-core EPYC under uvloop.
    """
    if future.done() and not future.cancelled():
        return future.result()
    loop = asyncio.get_running_loop()
    reasons: list[str] = []
    watcher: asyncio.Task[None] | None = None

    def give_up(reason: str) -> None:
        if not future.done():
            reasons.append(reason)
            future.cancel()

    def watch() -> None:
        nonlocal watcher
        watcher = loop.create_task(_watch_disconnect(request.receive, give_up))

    deadline = loop.call_later(timeout_s, give_up, "timeout")
    watching = loop.call_later(watch_after_s, watch) if watch_after_s < timeout_s else None
    try:
        # A cancellation of this task cancels the awaited future too: the batcher drops it.
        return await future
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # this request's own task was cancelled (server shutdown): not ours to word
        if reasons == ["disconnected"]:
            raise ClientDisconnected("client disconnected before the result was ready") from None
        raise RequestTimeout(
            f"no result within {timeout_s:g} s; the model is overloaded", retry_after_s=1.0
        ) from None
    finally:
        deadline.cancel()
        if watching is not None:
            watching.cancel()
        if watcher is not None:
            watcher.cancel()


async def _answer(
    request: Request,
    resources: Resources,
    name: str,
    make_plan: Callable[[ModelCard, Settings], Plan],
) -> Response:
    """The path every image endpoint shares: model → media type → plan → batcher → encoding.

    The media type is negotiated before any compute, so a 406 costs no session run."""
    entry, batcher = _serving(resources, name, request)
    media = negotiate(request.headers.get("accept"))
    assert entry.card is not None
    settings = resources.settings
    plan = make_plan(entry.card, settings)
    future = batcher.submit(plan.z, plan.labels)
    images = await _await_result(
        request, future, settings.request_timeout_s, settings.disconnect_watch_after_ms / 1000.0
    )
    return await _render(plan, images, media, entry.name, settings)


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
_MEDIA_TYPES = {media: media.value.encode() for media in MediaType}


class ImageResponse(Response):
    """A 200 whose raw headers are assembled here, in the order ``Response`` would produce them.

    ``Response.__init__`` takes headers as a mapping and lower-cases, encodes and scans them
    for content-length and content-type on every call: several µs per request, for headers
    this module already knows the exact bytes of.
    """

    def __init__(self, body: bytes, media: MediaType, headers: list[tuple[bytes, bytes]]) -> None:
        self.status_code = 200
        self.background = None
        self.media_type = media.value
        self.body = body
        self.raw_headers = [
            *headers,
            (b"content-length", str(len(body)).encode()),
            (b"content-type", _MEDIA_TYPES[media]),
        ]


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
        metered_paths=GENERATION_PATHS,
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
        status, reason = resources.model_status(entry)
        return {
            "name": entry.name,
            "status": status,
            "reason": reason,
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

    def _entry(resources: Resources, name: str) -> ModelEntry:
        # Names index a dict, never the file system; anything that is not a model name is unknown.
        entry = resources.registry.get(name) if is_valid_name(name) else None
        if entry is None:
            raise UnknownModel(
                f"unknown model {name!r}; known models: {', '.join(resources.registry.names) or 'none'}"
            )
        return entry

    @app.get(
        "/models/{name}",
        tags=["models"],
        response_model=ModelCard,
        responses=_MODEL_ERRORS,
        summary="A model's card",
    )
    async def get_model(name: str, resources: ResourcesDep) -> OrjsonResponse:
        entry = _entry(resources, name)
        if entry.card is None:
            raise ModelNotReady(f"model {name!r} failed to load: {entry.reason}", retry_after_s=None)
        status, _ = resources.model_status(entry)
        return OrjsonResponse(entry.card.model_dump(mode="json"), headers={"X-Condgen-Model-Status": status})

    @app.get(
        f"/models/{{name}}/{SAMPLES_FILE}",
        tags=["models"],
        response_class=FileResponse,
        responses={200: {"content": {"image/png": {}}}, **_MODEL_ERRORS},
        summary="The sample grid committed with the model",
    )
    async def get_samples(name: str, resources: ResourcesDep) -> FileResponse:
        entry = _entry(resources, name)
        path = entry.samples_path
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
        resources: Resources | None = request.app.state.resources
        if resources is None:
            message = "starting: models are not loaded yet"
            return _readiness(False, message, {})
        models = {}
        for entry in resources.registry:
            status, reason = resources.model_status(entry)
            detail: dict[str, Any] = {"status": status, "reason": reason}
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
    app.include_router(v2_router(get_resources=resources_of, serving=_serving, await_result=_await_result))

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
