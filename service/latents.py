"""Seeds to latent vectors, reproducibly.

Image ``i`` of a request with seed ``s`` uses a z drawn from a generator keyed by ``(s, i)`` alone,
so an image never depends on what shared its batch, which replica served it, or the process's
history. The trainer uses the same function for its sample grids, so a grid cell can be
reproduced through the service with the seed and index it was drawn with.
"""

from __future__ import annotations

import numpy as np

MAX_SEED = 2**63 - 1


def latent_for(seed: int, index: int, dim: int, truncation: float | None = None) -> np.ndarray:
    """One standard-normal latent vector (float32, shape ``(dim,)``) for ``(seed, index)``.

    With ``truncation`` (> 0), components whose magnitude exceeds it are redrawn from the same
    stream until they fall inside (the "truncation trick"); the result is still a pure function of
    its arguments.
    """
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be in 0..{MAX_SEED}, got {seed}")
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    rng = np.random.default_rng([seed, index])
    z = rng.standard_normal(dim)
    if truncation is not None:
        if not truncation > 0:
            raise ValueError(f"truncation must be > 0, got {truncation}")
        outside = np.abs(z) > truncation
        while outside.any():
            z[outside] = rng.standard_normal(int(outside.sum()))
            outside = np.abs(z) > truncation
    return z.astype(np.float32)


def latents_for(
    seed: int, count: int, dim: int, start: int = 0, truncation: float | None = None
) -> np.ndarray:
    """Latents for images ``start .. start+count-1`` of seed ``seed``: float32 ``(count, dim)``."""
    out = np.empty((count, dim), dtype=np.float32)
    for row in range(count):
        out[row] = latent_for(seed, start + row, dim, truncation)
    return out


def interpolate(z0: np.ndarray, z1: np.ndarray, steps: int, spherical: bool = True) -> np.ndarray:
    """``steps`` latents from ``z0`` to ``z1`` inclusive: float32 ``(steps, dim)``.

    Spherical interpolation (slerp) keeps intermediate points at the norm a Gaussian prior expects;
    linear interpolation drifts towards the origin, where generators give washed-out images.
    """
    if steps < 2:
        raise ValueError("steps must be >= 2")
    a = np.asarray(z0, dtype=np.float64)
    b = np.asarray(z1, dtype=np.float64)
    t = np.linspace(0.0, 1.0, steps)[:, None]
    if spherical:
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        if na > 0 and nb > 0:
            cos = float(np.clip(np.dot(a / na, b / nb), -1.0, 1.0))
            omega = np.arccos(cos)
            if omega > 1e-6:
                so = np.sin(omega)
                out = (np.sin((1.0 - t) * omega) / so) * a + (np.sin(t * omega) / so) * b
                return out.astype(np.float32)
    return ((1.0 - t) * a + t * b).astype(np.float32)
