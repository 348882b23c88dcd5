"""Seeds to latent vectors, reproducibly.

Image ``i`` of a request with seed ``s`` uses a z drawn from a generator keyed by ``(s, i)`` alone,
so an image never depends on what shared its batch, which replica served it, or the process's
history. The trainer uses the same function for its sample grids, so a grid cell can be
reproduced through the service with the seed and index it was drawn with.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

MAX_SEED = 2**63 - 1

# The stream for (s, i) is numpy's ``default_rng([s, i])``: PCG64 seeded from a SeedSequence. Building
# that generator costs 11 µs, two thirds of a latent's cost, mostly in turning the SeedSequence
# into PCG64's 128-bit state and increment. The same arithmetic below (numpy's
# ``SeedSequence.generate_state`` and PCG64's ``srandom``, both fixed by numpy's stream
# compatibility policy) sets the state of a reused generator in a third of the time;
# tests/service/test_latents.py checks the streams are identical.
_M32 = 0xFFFFFFFF
_M128 = (1 << 128) - 1
_SS_INIT_B = 0x8B51F9DD  # SeedSequence: the hash constants of generate_state
_SS_MULT_B = 0x58F38DED
_PCG64_MULT = (2549297995355413924 << 64) + 4865540595714422341  # PCG_DEFAULT_MULTIPLIER_128


def _pcg64_state(seed: int, index: int) -> Any:  # numpy types it with a private TypedDict
    """PCG64's ``state`` for ``default_rng([seed, index])``."""
    pool = np.random.SeedSequence([seed, index]).pool.tolist()
    words = []
    hash_const = _SS_INIT_B
    for i in range(8):  # generate_state(4, uint64): 8 uint32 words from the 4-word pool
        value = pool[i & 3] ^ hash_const
        hash_const = (hash_const * _SS_MULT_B) & _M32
        value = (value * hash_const) & _M32
        words.append(value ^ (value >> 16))
    init_state = (words[0] | words[1] << 32) << 64 | (words[2] | words[3] << 32)
    init_seq = (words[4] | words[5] << 32) << 64 | (words[6] | words[7] << 32)
    inc = ((init_seq << 1) | 1) & _M128
    state = ((inc + init_state) * _PCG64_MULT + inc) & _M128  # srandom: two steps from state 0
    return {"bit_generator": "PCG64", "state": {"state": state, "inc": inc}, "has_uint32": 0, "uinteger": 0}


class _Reseeded(threading.local):
    """A PCG64 and its Generator per thread, given a new state for every latent."""

    def __init__(self) -> None:
        self.bits = np.random.PCG64(0)
        self.generator = np.random.Generator(self.bits)

    def at(self, seed: int, index: int) -> np.random.Generator:
        self.bits.state = _pcg64_state(seed, index)
        return self.generator


_streams = _Reseeded()


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
    rng = _streams.at(seed, index)
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
