"""Where a dataset's images come from: a server (through :class:`condgen.Client`), or the
exported ONNX directory in this process. Both draw row r from the latent (seed, offset + r) and
run the same session code (:class:`service.runtime.OrtRunner`), so they give the same pixels."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from condgen.client import Client
from condgen.errors import BadRequest, UnknownModel
from service.card import CARD_FILE, load_card
from service.config import Settings
from service.latents import latents_for
from service.runtime import ModelLoadError, OrtRunner


class Source(Protocol):
    name: str  # for the manifest: "server <url>" or "in-process"
    step: int  # images per call that keep it busy

    def card(self, model: str) -> dict[str, Any]: ...

    def prepare(self, model: str) -> None:
        """Whatever must happen once before the first rows (loading a session)."""

    def rows(
        self,
        model: str,
        labels: np.ndarray | None,
        seed: int,
        offset: int,
        truncation: float | None,
        n: int = 0,
    ) -> np.ndarray:
        """uint8 N×C×H×W for the latents (seed, offset + i) and ``labels`` (N = len(labels), or
        ``n`` for an unconditional model)."""


class ServerSource:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.name = f"server {client.config.url}"
        # Several rounds of requests of the server's max_n for every concurrent slot: few barriers.
        self.step = client.max_n() * client.config.concurrency * 4

    def card(self, model: str) -> dict[str, Any]:
        return self.client.card(model)

    def prepare(self, model: str) -> None:
        pass  # the server has its sessions loaded

    def rows(
        self,
        model: str,
        labels: np.ndarray | None,
        seed: int,
        offset: int,
        truncation: float | None,
        n: int = 0,
    ) -> np.ndarray:
        batch = self.client.generate(
            model,
            labels=None if labels is None else labels.tolist(),
            n=n if labels is None else None,
            seed=seed,
            offset=offset,
            truncation=truncation,
        )
        return batch.images


class LocalSource:
    """ONNX Runtime on ``models_dir/<model>/``, configured as the server would be (``CONDGEN_*``)."""

    step = 1024

    def __init__(self, models_dir: Path, settings: Settings | None = None) -> None:
        self.models_dir = models_dir
        self.settings = settings or Settings(models_dir=models_dir, probe_labels=False)
        self.name = "in-process"
        self._runners: dict[str, OrtRunner] = {}

    def _model_dir(self, model: str) -> Path:
        path = self.models_dir / model
        if "/" in model or not (path / CARD_FILE).is_file():
            known = sorted(p.parent.name for p in self.models_dir.glob(f"*/{CARD_FILE}"))
            raise UnknownModel(
                f"no model {model!r} in {self.models_dir}; known: {', '.join(known) or 'none'}",
                error_type="unknown_model",
            )
        return path

    def card(self, model: str) -> dict[str, Any]:
        return load_card(self._model_dir(model)).model_dump(mode="json")

    def prepare(self, model: str) -> None:
        self.runner(model)

    def runner(self, model: str) -> OrtRunner:
        if model not in self._runners:
            model_dir = self._model_dir(model)
            try:
                self._runners[model] = OrtRunner.load(model_dir, load_card(model_dir), self.settings)
            except ModelLoadError as exc:
                raise BadRequest(
                    f"model {model!r} cannot load: {exc}", error_type="model_not_ready"
                ) from None
        return self._runners[model]

    def rows(
        self,
        model: str,
        labels: np.ndarray | None,
        seed: int,
        offset: int,
        truncation: float | None,
        n: int = 0,
    ) -> np.ndarray:
        runner = self.runner(model)
        count = n if labels is None else len(labels)
        z = latents_for(seed, count, runner.card.latent.dim, start=offset, truncation=truncation)
        return runner.run(z, labels)
