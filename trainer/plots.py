"""Pictures of a run: label × z sample grids and loss curves (PNG)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from service.encode import tile
from service.latents import latents_for
from service.runtime import to_uint8

log = logging.getLogger(__name__)

GRID_SEED = 0  # grids use latents_for(GRID_SEED, ...): any cell can be asked of the service again


def save_png(picture: np.ndarray, path: Path, scale: int = 1) -> Path:
    """Save a uint8 (C, H, W) picture, enlarged ``scale`` times (nearest neighbour) for viewing."""
    img = Image.fromarray(picture[0] if picture.shape[0] == 1 else picture.transpose(1, 2, 0))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, optimize=True)
    return path


def grid_inputs(z_dim: int, num_classes: int, columns: int = 8) -> tuple[np.ndarray, np.ndarray | None]:
    """Inputs for a label × z grid: row = label, column = latent ``latents_for(GRID_SEED, ...)[col]``.

    Unconditional models get an 8×8 grid of distinct latents instead.
    """
    if num_classes:
        z = latents_for(GRID_SEED, columns, z_dim)
        zs = np.tile(z, (num_classes, 1))
        labels = np.repeat(np.arange(num_classes, dtype=np.int64), columns)
        return zs, labels
    return latents_for(GRID_SEED, columns * columns, z_dim), None


def sample_grid(
    generate: Callable[[np.ndarray, np.ndarray | None], np.ndarray],
    z_dim: int,
    num_classes: int,
    value_range: tuple[float, float],
    path: Path,
    columns: int = 8,
) -> Path:
    """Render ``generate(z, labels)`` (float N×C×H×W) on the standard grid and save it as PNG."""
    z, labels = grid_inputs(z_dim, num_classes, columns)
    # The service's own conversion and tiling: a grid cell is byte-for-byte what /generate returns.
    images = to_uint8(generate(z, labels), value_range)
    rows = -(-images.shape[0] // columns)
    return save_png(tile(images, rows, columns), path, scale=2)


def loss_curves(history: Sequence[dict[str, float]], path: Path, title: str) -> Path | None:
    """Plot every numeric series in ``history`` (one dict per logged step) against the step."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on training machines
    import matplotlib.pyplot as plt

    keys = [k for k in history[0] if k not in ("step", "epoch")]
    steps = [h.get("step", i) for i, h in enumerate(history)]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for key in keys:
        values = np.array([h.get(key, np.nan) for h in history], dtype=np.float64)
        # A moving average over ~2% of the run keeps the trend readable without hiding divergence.
        k = max(1, len(values) // 50)
        smooth = np.convolve(values, np.ones(k) / k, mode="valid") if k > 1 else values
        ax.plot(steps[len(steps) - len(smooth) :], smooth, label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
