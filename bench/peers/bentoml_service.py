"""BentoML peer: the same ``model.onnx`` behind BentoML's adaptive batching.

BentoML batches the inputs of one ``@bentoml.api(batchable=True)`` method, and only when that
method is reached through BentoML's dispatcher (an HTTP call, or a call from another service).
The request body here is condgen's (``{"model", "label", "seed", "n"}``), which is not an array,
so this is BentoML's documented two-service shape: ``Frontend`` parses the request, draws the
latents and encodes the PNG; ``Generator`` owns the ONNX Runtime session and its ``infer`` is
batchable over rows. Each runs in its own worker process, as ``bentoml serve`` lays them out.

Rows are ``z`` with the label appended as a last float column, so one array carries both inputs
(a batchable method takes exactly one batched argument). Latents, the uint8 conversion and the
PNG encoding are condgen's own functions, so the answer is the same bytes as condgen's.

Configured by environment (read at import, in every worker): ``BENCH_MODEL_DIR`` (one exported
model directory), ``BENCH_THREADS`` (ONNX Runtime intra-op threads), ``BENCH_MAX_BATCH_SIZE``
(rows per run, default 64), ``BENCH_MAX_LATENCY_MS`` (BentoML's latency budget, default 10000).

Run: ``BENCH_MODEL_DIR=exported/cdcgan-mnist bentoml serve bench.peers.bentoml_service:Frontend``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import bentoml
import numpy as np
from bentoml.validators import ContentType

from service.card import load_card
from service.config import Settings
from service.encode import png_of_batch
from service.latents import latents_for
from service.runtime import OrtRunner

MODEL_DIR = Path(os.environ.get("BENCH_MODEL_DIR", "exported/cdcgan-mnist"))
THREADS = int(os.environ.get("BENCH_THREADS", "1"))
MAX_BATCH_SIZE = int(os.environ.get("BENCH_MAX_BATCH_SIZE", "64"))
# BentoML answers 503 when its estimate of queue wait + compute exceeds this budget; generous, so
# that errors mean failures rather than a tight budget.
MAX_LATENCY_MS = int(os.environ.get("BENCH_MAX_LATENCY_MS", "10000"))
PNG_COMPRESS_LEVEL = 1  # condgen's default


def _settings() -> Settings:
    return Settings(
        providers=["CPUExecutionProvider"],
        intra_op_threads=THREADS,
        max_batch_size=MAX_BATCH_SIZE,
        max_n=MAX_BATCH_SIZE,
        max_grid_images=MAX_BATCH_SIZE,
    )


# Access logs off, as condgen and the torch peer run them (uvicorn at log level warning).
SERVICE_CONFIG: dict = {"workers": 1, "logging": {"access": {"enabled": False}}}
# Since BentoML 1.4.31 the caller's client to a dependency replaces its HTTP session every
# `runner_connection.max_requests` calls (default 100) or `max_age` seconds, closing the old one
# under the calls still in flight on it: under concurrent load those fail ("Connector is closed",
# "Server disconnected"; bentoml/BentoML#5540), about a fifth of all requests at c=32 here. The
# documented setting, on the callee, keeps one session for a whole benchmark run.
RUNNER_CONNECTION: dict = {"max_requests": 2**31 - 1, "max_age": 7 * 24 * 3600.0}


@bentoml.service(**SERVICE_CONFIG, runner_connection=RUNNER_CONNECTION)
class Generator:
    def __init__(self) -> None:
        self.card = load_card(MODEL_DIR)
        self.runner = OrtRunner.load(MODEL_DIR, self.card, _settings())

    @bentoml.api(batchable=True, batch_dim=0, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS)
    def infer(self, rows: np.ndarray) -> np.ndarray:
        """float32 (N, dim + 1): latents with the label as a last column → uint8 (N, C, H, W)."""
        z = np.ascontiguousarray(rows[:, :-1], dtype=np.float32)
        labels = rows[:, -1].astype(np.int64) if self.card.conditional else None
        return self.runner.run(z, labels)


@bentoml.service(**SERVICE_CONFIG)
class Frontend:
    generator = bentoml.depends(Generator)

    def __init__(self) -> None:
        self.card = load_card(MODEL_DIR)

    @bentoml.api(route="/generate")
    async def generate(
        self, model: str, label: int = 0, seed: int = 0, n: int = 1
    ) -> Annotated[bytes, ContentType("image/png")]:
        if model != self.card.name:
            raise bentoml.exceptions.NotFound(f"unknown model {model!r}; this peer serves {self.card.name!r}")
        if not 1 <= n <= MAX_BATCH_SIZE:
            raise bentoml.exceptions.InvalidArgument(f"n must be in 1..{MAX_BATCH_SIZE}")
        dim = self.card.latent.dim
        rows = np.empty((n, dim + 1), dtype=np.float32)
        rows[:, :dim] = latents_for(seed, n, dim)
        rows[:, dim] = label
        images = await self.generator.to_async.infer(rows)
        return png_of_batch(np.asarray(images, dtype=np.uint8), None, PNG_COMPRESS_LEVEL)
