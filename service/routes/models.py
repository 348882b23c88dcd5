"""``GET /models``, ``/models/{name}`` and its ``samples.png``: the cards and their status."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.responses import FileResponse

from service.card import SAMPLES_FILE, ModelCard
from service.errors import NotFound
from service.registry import ModelEntry
from service.routes.docs import STARTING, ModelPath, errors
from service.schemas import ModelsResponse
from service.serving import OrjsonResponse, Resources, ResourcesDep

MODEL_ERRORS = errors(
    {
        404: "No such model (type unknown_model), or no samples.png.",
        422: "Invalid request.",
        503: "The model failed to load (model_not_ready), or the service is starting.",
    }
)

router = APIRouter(tags=["models"])


def _providers(resources: Resources, entry: ModelEntry) -> list[str] | None:
    """The execution providers the model's session really runs on (the batcher's current runner)."""
    batcher = resources.batchers.get(entry.name)
    runner = batcher.runner if batcher is not None else entry.runner
    providers = getattr(runner, "providers", None)
    return list(providers) if isinstance(providers, list) else None


def _status_json(resources: Resources, entry: ModelEntry) -> dict[str, Any]:
    state = resources.state_of(entry)
    return {
        "name": entry.name,
        "status": state.status,
        "reason": state.reason,
        "providers": _providers(resources, entry) if entry.loaded else None,
        "card": entry.card.model_dump(mode="json") if entry.card is not None else None,
        "samples_url": f"/models/{entry.name}/{SAMPLES_FILE}" if entry.samples_path else None,
    }


@router.get("/models", response_model=ModelsResponse, responses=STARTING, summary="Every model, with status")
async def list_models(resources: ResourcesDep) -> OrjsonResponse:
    settings = resources.settings
    return OrjsonResponse(
        {
            "models": [_status_json(resources, e) for e in resources.registry],
            "limits": {"max_n": settings.max_n, "max_grid_images": settings.max_grid_images},
        }
    )


@router.get("/models/{name}", response_model=ModelCard, responses=MODEL_ERRORS, summary="A model's card")
async def get_model(name: ModelPath, resources: ResourcesDep) -> OrjsonResponse:
    entry, card = resources.card_of(name)
    status = resources.state_of(entry).status
    return OrjsonResponse(card.model_dump(mode="json"), headers={"X-Condgen-Model-Status": status})


@router.get(
    f"/models/{{name}}/{SAMPLES_FILE}",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}}, **MODEL_ERRORS},
    summary="The sample grid committed with the model",
)
async def get_samples(name: ModelPath, resources: ResourcesDep) -> FileResponse:
    path = resources.entry(name).samples_path
    if path is None:
        raise NotFound(f"model {name!r} has no {SAMPLES_FILE}")
    return FileResponse(path, media_type="image/png")
