"""Runner wrappers injected through ``create_app(runner_factory=...)``: the documented seam."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from service.card import ModelCard
from service.config import Settings
from service.registry import RunnerFactory, default_runner_factory
from service.runtime import Runner

GATE_TIMEOUT_S = 10.0


class GatedRunner:
    """Delegates to a real runner, but each run waits for ``gate`` (set = open) and is recorded."""

    def __init__(self, inner: Runner, gate: threading.Event) -> None:
        self.inner = inner
        self.gate = gate
        self.started = threading.Event()
        self.batches: list[int] = []
        self.calls: list[np.ndarray] = []

    def run(self, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        self.batches.append(int(z.shape[0]))
        self.calls.append(z.copy())
        self.started.set()
        if not self.gate.wait(GATE_TIMEOUT_S):
            raise TimeoutError("test gate never opened")
        return self.inner.run(z, labels)


class FailingRunner:
    """A session that always raises, as a broken GPU or a corrupted graph would at run time."""

    def __init__(self) -> None:
        self.calls = 0

    def run(self, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        self.calls += 1
        raise RuntimeError("CUDA error: an illegal memory access was encountered at /secret/path.cu")


def wrapping(wrappers: dict[str, Callable[[Runner], Runner]]) -> RunnerFactory:
    """A factory that loads the real runners, then wraps (or replaces) the named models' ones."""

    def factory(model_dir: Path, card: ModelCard, settings: Settings) -> Runner:
        real = default_runner_factory(model_dir, card, settings)
        wrap = wrappers.get(card.name)
        return real if wrap is None else wrap(real)

    return factory


class Sequenced:
    """A runner factory whose n-th runner for ``model`` is ``makers[n](real runner)``.

    Later loads (session re-creations) of ``model`` get the real runner once ``makers`` is used
    up; ``release`` (when given) holds every re-creation until it is set.
    """

    def __init__(
        self,
        model: str,
        makers: list[Callable[[Runner], Runner]],
        release: threading.Event | None = None,
    ) -> None:
        self.model = model
        self.makers = list(makers)
        self.release = release
        self.loads = 0

    def __call__(self, model_dir: Path, card: ModelCard, settings: Settings) -> Runner:
        real = default_runner_factory(model_dir, card, settings)
        if card.name != self.model:
            return real
        self.loads += 1
        if self.loads > 1 and self.release is not None:
            assert self.release.wait(GATE_TIMEOUT_S), "test never released the re-creation"
        return self.makers.pop(0)(real) if self.makers else real
