"""Ray Serve peer: the same ``model.onnx`` behind ``@serve.batch``, what one picks to outgrow a machine.

One deployment with a FastAPI ingress, in Ray's documented shape: ``/generate`` parses condgen's
request body (``{"model", "label", "seed", "n"}``), draws the latents, awaits the batched
``infer`` and encodes the PNG. ``infer`` takes one request's rows per call and runs the ONNX
Runtime session on up to ``max_batch_size`` rows at once (``batch_size_fn`` counts rows, as
BentoML's ``batch_dim=0`` and condgen's batcher do); the session runs inside the batch handler,
as Ray's examples do, so the requests that arrive during a run make up the next batch.

Session settings, latents, uint8 conversion and PNG encoding are condgen's own, so the answer is
the same bytes as condgen's. The batch window is condgen's ``max_wait_ms`` (0 by default).
``/stats`` counts session runs and their rows, to see batches form.

Started by its driver, :mod:`bench.peers.ray_driver`, which owns Ray's processes.
"""

# No ``from __future__ import annotations``: Serve's ingress rebuilds the route methods, and FastAPI
# would then read the body's string annotation as a query parameter.
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field
from ray import serve
from ray.serve.schema import LoggingConfig
from starlette.responses import Response

from service.card import load_card
from service.config import Settings
from service.encode import png_of_batch
from service.latents import latents_for
from service.runtime import OrtRunner

APP_NAME = "condgen-peer"
PNG_COMPRESS_LEVEL = 1  # condgen's default
# Requests a replica holds at once (Serve's default is 5, which would cap a batch at 5 requests):
# condgen's default per-model queue bound, so batches can fill as they do in condgen.
MAX_ONGOING_REQUESTS: int = Settings.model_fields["max_queue_requests"].default
# Warnings only, as condgen and the other peers run (no access log).
QUIET = LoggingConfig(log_level="WARNING", enable_access_log=False)


@dataclass(frozen=True)
class PeerConfig:
    """What the replica needs; pickled by Ray into the replica's worker process."""

    model_dir: Path
    threads: int = 1  # ONNX Runtime intra-op threads
    max_batch_size: int = 64  # rows per session run (condgen's default)
    max_wait_ms: float = 0.0  # condgen's batch window
    settings: Settings = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "settings",
            Settings(
                providers=["CPUExecutionProvider"],
                intra_op_threads=self.threads,
                max_batch_size=self.max_batch_size,
                max_n=self.max_batch_size,
                max_grid_images=self.max_batch_size,
                max_wait_ms=self.max_wait_ms,
            ),
        )


class GenerateBody(BaseModel):
    model: str
    label: int = Field(default=0, ge=0)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    n: int = Field(default=1, ge=1)


def _rows(items: list[tuple[np.ndarray, np.ndarray]]) -> int:
    """A batch's size for ``@serve.batch``: its rows, not its requests."""
    return sum(z.shape[0] for z, _ in items)


app = FastAPI(title="condgen Ray Serve peer")


@serve.deployment(max_ongoing_requests=MAX_ONGOING_REQUESTS, logging_config=QUIET)
@serve.ingress(app)
class Generator:
    def __init__(self, config: PeerConfig) -> None:
        self.config = config
        self.card = load_card(config.model_dir)
        self.runner = OrtRunner.load(config.model_dir, self.card, config.settings)
        self.runs = 0  # session runs and the rows they served: /stats, to see batches form
        self.rows = 0
        # The decorator's numbers are placeholders: these apply from the first call (Ray's setters,
        # absent from its type hints).
        self.infer.set_max_batch_size(config.max_batch_size)  # type: ignore[attr-defined]
        self.infer.set_batch_wait_timeout_s(config.settings.max_wait_s)  # type: ignore[attr-defined]

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.0, batch_size_fn=_rows)
    async def infer(self, items: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """Each item is one request's (latents, labels); one session run for all their rows."""
        z = np.concatenate([z for z, _ in items])
        labels = np.concatenate([labels for _, labels in items]) if self.card.conditional else None
        # On the replica's event loop, as Ray's examples run a model: arrivals queue for the next batch.
        images = self.runner.run(z, labels)
        self.runs += 1
        self.rows += z.shape[0]
        bounds = np.cumsum([z.shape[0] for z, _ in items])[:-1]
        return list(np.split(images, bounds))

    @app.get("/readyz")
    async def readyz(self) -> dict[str, str]:
        return {"status": "ready", "model": self.card.name}

    @app.get("/stats")
    async def stats(self) -> dict[str, int]:
        return {"runs": self.runs, "rows": self.rows}

    @app.post("/generate")
    async def generate(self, body: GenerateBody) -> Response:
        if body.model != self.card.name:
            raise HTTPException(404, f"unknown model {body.model!r}; this peer serves {self.card.name!r}")
        if body.n > self.config.max_batch_size:
            raise HTTPException(422, f"n must be in 1..{self.config.max_batch_size}")
        if self.card.conditional and body.label >= self.card.num_classes:
            raise HTTPException(422, f"label must be < {self.card.num_classes}")
        z = latents_for(body.seed, body.n, self.card.latent.dim)
        labels = np.full(body.n, body.label, dtype=np.int64)
        images = await self.infer((z, labels))
        png = png_of_batch(images, None, PNG_COMPRESS_LEVEL)
        return Response(content=png, media_type="image/png")
