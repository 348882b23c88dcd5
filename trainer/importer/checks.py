"""What an imported graph must show before it is served: parity with its source, every label,
finite output inside its value range, and (when not given) the value range itself, by sampling."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from service.latents import latents_for

from ..card_graph import PARITY_BATCH, max_diff, parity_batch
from .options import ImportRefused

log = logging.getLogger(__name__)

Generate = Callable[[np.ndarray, np.ndarray | None], np.ndarray]  # (z, labels) → float N×C×H×W
# Largest |source − imported| allowed, as a share of the value range's width.
PARITY_REL_TOL = 1e-4
RANGE_SAMPLES = 256
RANGE_SEED = 4321
LABEL_CHUNK = 256  # rows per run of the every-label check
# Ranges generators end in (tanh, sigmoid, 8-bit), tried tightest first; an output may stray this
# share of the width beyond one and still count as inside it.
KNOWN_RANGES: tuple[tuple[float, float], ...] = ((0.0, 1.0), (-1.0, 1.0), (0.0, 255.0))
RANGE_SLACK = 1e-3


@dataclass(frozen=True)
class RangeFinding:
    value_range: tuple[float, float]
    low: float  # the smallest output seen
    high: float
    samples: int

    def describe(self) -> str:
        lo, hi = self.value_range
        return (
            f"--value-range={lo:g},{hi:g}  (sampled {self.samples} images: outputs span "
            f"[{self.low:.4g}, {self.high:.4g}]; pass --value-range LO,HI if its range is another)"
        )


def sample_rows(latent_dim: int, num_classes: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    z = latents_for(seed, n, latent_dim)
    labels = np.arange(n, dtype=np.int64) % num_classes if num_classes else None
    return z, labels


def infer_value_range(generate: Generate, latent_dim: int, num_classes: int) -> RangeFinding:
    """The tightest known range that every sampled output falls in; refused when none does."""
    images = generate(*sample_rows(latent_dim, num_classes, RANGE_SAMPLES, RANGE_SEED))
    _require_finite(images, "sampled")
    low, high = float(images.min()), float(images.max())
    for lo, hi in KNOWN_RANGES:
        slack = RANGE_SLACK * (hi - lo)
        if low >= lo - slack and high <= hi + slack:
            return RangeFinding((lo, hi), low, high, RANGE_SAMPLES)
    raise ImportRefused(
        f"outputs of {RANGE_SAMPLES} sampled images span [{low:.4g}, {high:.4g}], no usual range "
        "([0, 1], [-1, 1], [0, 255]): pass --value-range LO,HI"
    )


def _require_finite(images: np.ndarray, which: str) -> None:
    bad = ~np.isfinite(images)
    if bad.any():
        raise ImportRefused(
            f"the {which} outputs hold {int(bad.sum())} non-finite values (NaN or inf) of {images.size}: "
            "the source is broken for these inputs"
        )


def check_parity(
    imported: Generate, source: Generate, latent_dim: int, num_classes: int, width: float
) -> float:
    """Max |source − imported| on the fixed parity batch; refused above ``PARITY_REL_TOL`` of ``width``."""
    z, labels = parity_batch(latent_dim, num_classes)
    got = imported(z, labels)
    _require_finite(got, "parity batch's")
    diff = max_diff(got, source(z, labels))
    limit = PARITY_REL_TOL * width
    if not diff <= limit:
        raise ImportRefused(
            f"the imported graph differs from its source by {diff:.3g} > {limit:.3g} (1e-4 of the value "
            f"range) on {PARITY_BATCH} images: check --layout, --label-encoding and --image"
        )
    return diff


def check_labels(
    imported: Generate, source: Generate, latent_dim: int, num_classes: int, width: float
) -> float:
    """Every label id runs, on one shared z, and matches the source; returns the max difference."""
    if not num_classes:
        return 0.0
    z0 = latents_for(RANGE_SEED + 1, 1, latent_dim)
    worst = 0.0
    for start in range(0, num_classes, LABEL_CHUNK):
        labels = np.arange(start, min(start + LABEL_CHUNK, num_classes), dtype=np.int64)
        got = imported(np.repeat(z0, len(labels), axis=0), labels)
        _require_finite(got, f"labels {labels[0]}..{labels[-1]}'")
        worst = max(worst, max_diff(got, source(np.repeat(z0, len(labels), axis=0), labels)))
    if not worst <= PARITY_REL_TOL * width:
        raise ImportRefused(
            f"with every label on one z, the imported graph differs from its source by {worst:.3g}"
        )
    return worst


def range_warning(
    imported: Generate, latent_dim: int, num_classes: int, value_range: tuple[float, float]
) -> str | None:
    """None when sampled outputs are finite and inside ``value_range``; else what strays, in figures."""
    images = imported(*sample_rows(latent_dim, num_classes, RANGE_SAMPLES, RANGE_SEED))
    _require_finite(images, "sampled")
    lo, hi = value_range
    slack = RANGE_SLACK * (hi - lo)
    outside = (images < lo - slack) | (images > hi + slack)
    if not outside.any():
        return None
    return (
        f"{outside.mean():.2%} of the output values of {RANGE_SAMPLES} sampled images fall outside "
        f"[{lo:g}, {hi:g}] (min {images.min():.4g}, max {images.max():.4g}); the service clips them"
    )
