"""Operations: ``/healthz`` (alive), ``/readyz`` (ready, per model), ``/metrics``, ``/admin/reload``."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from service.metrics import Metrics
from service.routes.docs import RETRY_AFTER, STARTING
from service.schemas import Health, ReadinessBody, ReloadResponse
from service.serving import OrjsonResponse, Resources, ResourcesDep, resources_or_none

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> OrjsonResponse:
    return OrjsonResponse({"status": "ok"})


@router.get(
    "/readyz",
    summary="Readiness: at least one model ready, workers alive",
    response_model=ReadinessBody,
    responses={
        503: {
            "model": ReadinessBody,
            "description": "Not ready (starting, draining, no model ready); the body says why.",
            "headers": RETRY_AFTER,
        }
    },
)
async def readyz(request: Request) -> OrjsonResponse:
    resources = resources_or_none(request)
    if resources is None:
        return _readiness(False, "starting: models are not loaded yet", {})
    models = _model_details(resources)
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


def _model_details(resources: Resources) -> dict[str, dict[str, Any]]:
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
    return models


def _readiness(ready: bool, message: str, models: dict[str, Any]) -> OrjsonResponse:
    # No models_dir here: no response names a path on the server.
    body: dict[str, Any] = {"status": "ready" if ready else "not_ready", "message": message, "models": models}
    if ready:
        return OrjsonResponse(body)
    # Also the common error shape, so clients that only know that one still read the reason.
    body["error"] = {"type": "not_ready", "message": message}
    return OrjsonResponse(body, status_code=503, headers={"Retry-After": "5"})


@router.get("/metrics", response_class=Response, summary="Prometheus metrics")
async def metrics_endpoint(request: Request) -> Response:
    metrics: Metrics = request.app.state.metrics
    body, content_type = metrics.render()
    return Response(content=body, media_type=content_type)


@router.post(
    "/admin/reload",
    response_model=ReloadResponse,
    responses=STARTING,
    summary="Reload the model repository: new and changed models swap in, queued work drains",
)
async def admin_reload(resources: ResourcesDep) -> OrjsonResponse:
    # Shielded: a client that hangs up must not leave a reload half done.
    report = await asyncio.shield(asyncio.ensure_future(resources.reload("POST /admin/reload")))
    return OrjsonResponse(report.to_json())
