"""The HTTP app: ``create_app(settings)`` wires settings, metrics, the lifespan, middleware, routers.

The lifespan owns the models: it scans the repository into :class:`service.serving.Resources`
(registry, one batcher per model) and hands them to routes as a FastAPI dependency; nothing is
created at import time, so tests can build as many independent apps as they like. How a request
travels from here is in :mod:`service.routes`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from service import openapi
from service.config import Settings
from service.errors import ShuttingDown, install_error_handlers
from service.fastpath import GenerationFastPath
from service.metrics import Metrics
from service.middleware import (
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    InflightTracker,
    RequestContextMiddleware,
)
from service.paths import is_protected
from service.registry import ModelRegistry, RunnerFactory, default_runner_factory
from service.routes import apidocs, generate, models, operations, playground, v2
from service.serving import OrjsonResponse, Resources, settle_heap
from service.supervisor import start_batchers

logger = logging.getLogger(__name__)


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
        resources = await _load(settings, metrics, factory)
        app.state.resources = resources
        settle_heap()
        unhook = _reload_on_sighup(resources) if handle_sighup else None
        try:
            yield
        finally:
            if unhook is not None:
                unhook()
            await _shut_down(resources)
            resources.heap.cancel()
            gc.unfreeze()  # what this app held may now be garbage like anything else

    app = FastAPI(
        title="condgen",
        version="0.1.0",
        summary="Conditional image generators (GANs and VAE decoders) served from ONNX.",
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
        # /docs and /redoc are served from vendored assets (service.routes.apidocs), not a CDN.
        docs_url=None,
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
        app.add_middleware(GenerationFastPath, routes=generate.FAST_ROUTES)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    if settings.api_key is not None:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key.get_secret_value())
    app.add_middleware(
        RequestContextMiddleware, tracker=app.state.inflight, metrics=metrics, is_known_model=is_known_model
    )

    playground.page_files()  # a release without its page fails here, not on the first visit
    apidocs.vendor_files()
    routers = (
        generate.router,
        models.router,
        operations.router,
        playground.router,
        apidocs.router,
        v2.router,
    )
    for router in routers:
        app.include_router(router)
    openapi.install(app)
    if settings.api_key is not None:
        _document_api_key(app)
    return app


async def _load(settings: Settings, metrics: Metrics, factory: RunnerFactory) -> Resources:
    """Scan the repository and start a batcher per loaded model (start-up, on the event loop)."""
    registry = await asyncio.to_thread(ModelRegistry.scan, settings.models_dir, settings, factory)
    batchers = start_batchers(registry, settings, metrics, factory)
    metrics.register_models(ready=list(batchers), failed=[e.name for e in registry.failed])
    logger.info(
        "serving %d model(s) from %s: %s%s",
        len(batchers),
        settings.models_dir,
        ", ".join(batchers) or "none",
        f"; skipped: {', '.join(e.name for e in registry.failed)}" if registry.failed else "",
    )
    # From here on the models live in the returned resources only: a caller's locals would keep
    # the first sessions alive for the process's lifetime, long after a reload replaced them.
    return Resources(
        settings=settings, registry=registry, batchers=batchers, metrics=metrics, runner_factory=factory
    )


async def _shut_down(resources: Resources) -> None:
    """Refuse new work, let each batcher drain within what is left of the grace, stop them all."""
    resources.closing = True
    # A reload in progress may finish its swap within the grace; one still loading by then is left
    # behind (it sees `closing` and swaps nothing), so the drain keeps its bound.
    try:
        await asyncio.wait_for(resources.reload_lock.acquire(), resources.grace_left_s())
    except TimeoutError:
        logger.warning("drain: a reload still running after the grace period is abandoned")
    else:
        resources.reload_lock.release()
    grace = resources.grace_left_s()
    await asyncio.gather(*(b.stop(grace) for b in resources.batchers.values()), *list(resources.retiring))
    logger.info("all batchers stopped")


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
        for path, path_item in schema.get("paths", {}).items():
            if not is_protected(path.replace("{", "").replace("}", "")):
                continue
            for operation in path_item.values():
                operation["security"] = [{"bearer": []}]
                operation.setdefault("responses", {})["401"] = unauthorized
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
