"""Run an exported graph the way its card describes it: feed z (and labels), run, take the image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.card import ModelCard
from service.latents import latents_for
from service.runtime import to_uint8

PARITY_BATCH = 32


class CardGraph:
    """One ONNX Runtime session (CPU) over ``graph``, fed under the card's input and output names.

    Callable as a sampler, ``(z, labels) → float images``, as :func:`trainer.plots.sample_grid` wants.
    """

    def __init__(self, card: ModelCard, graph: Path | bytes, threads: int | None = None) -> None:
        self.card = card
        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
        source = str(graph) if isinstance(graph, Path) else graph
        self.session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])

    def feeds(self, z: np.ndarray, labels: np.ndarray | None) -> dict[str, np.ndarray]:
        feeds = {self.card.onnx.z_input: z}
        if self.card.onnx.label_input is not None and labels is not None:
            feeds[self.card.onnx.label_input] = labels
        return feeds

    def __call__(self, z: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        out: np.ndarray = self.session.run([self.card.onnx.output], self.feeds(z, labels))[0]
        return out


def parity_batch(z_dim: int, num_classes: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The fixed parity batch: ``PARITY_BATCH`` latents and, if conditional, labels cycling 0..K−1."""
    z = latents_for(1234, PARITY_BATCH, z_dim)
    labels = np.arange(PARITY_BATCH, dtype=np.int64) % num_classes if num_classes else None
    return z, labels


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Max |a − b|; infinite when the shapes differ."""
    return float(np.max(np.abs(a - b))) if a.shape == b.shape else float("inf")


def pixel_agreement(card: ModelCard, a: bytes | Path, b: bytes | Path, rows: int, seed: int) -> float:
    """Share of uint8 pixels on which graphs ``a`` and ``b`` differ by at most one level, over
    ``rows`` latents ``latents_for(seed, i)`` with balanced labels."""
    z = latents_for(seed, rows, card.latent.dim)
    labels = np.arange(rows, dtype=np.int64) % card.num_classes if card.conditional else None
    ga, gb = CardGraph(card, a, threads=1), CardGraph(card, b, threads=1)
    within = 0
    for i in range(0, rows, 250):
        lab = labels[i : i + 250] if labels is not None else None
        ua = to_uint8(ga(z[i : i + 250], lab), card.image.value_range).astype(np.int16)
        ub = to_uint8(gb(z[i : i + 250], lab), card.image.value_range).astype(np.int16)
        within += int((np.abs(ua - ub) <= 1).sum())
    return within / (rows * card.image.channels * card.image.height * card.image.width)
