"""Seeds to latent vectors, reproducibly.

Image ``i`` of a request with seed ``s`` uses a z drawn from a generator keyed by ``(s, i)`` alone,
so an image never depends on what shared its batch, which replica served it, or the process's
history. The trainer uses the same function for its sample grids, so a grid cell can be
reproduced through the service with the seed and index it was drawn with.
"""

from __future__ import annotations

import threading

import numpy as np

MAX_SEED = 2**63 - 1
# The largest latent index a request may reach (offset + n - 1): the batched seeding holds indices
# in uint64, and int64 keeps them exact for every client that parses JSON integers as int64.
MAX_LATENT_INDEX = 2**63 - 1
# The redraw loop costs about 1/P(|z| < truncation) draws a component: at 0.1, 12.5 (a 200-d row
# in ~0.5 ms); below it the cost has no useful bound, so smaller bounds are refused.
MIN_TRUNCATION = 0.1


def latent_for(seed: int, index: int, dim: int, truncation: float | None = None) -> np.ndarray:
    """One standard-normal latent vector (float32, shape ``(dim,)``) for ``(seed, index)``.

    With ``truncation`` (>= :data:`MIN_TRUNCATION`), components whose magnitude exceeds it are
    redrawn from the same stream until they fall inside (the "truncation trick"); the result is
    still a pure function of its arguments.
    """
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    _check(seed, truncation)
    # default_rng([seed, index]) is PCG64(SeedSequence([seed, index])). The sequence's pool comes
    # from numpy; the rest of the seeding is done here in plain integers, because numpy's runs
    # generate_state under an errstate context: 9.6 against 10.7 µs (2-core EPYC).
    pool = np.random.SeedSequence([seed, index]).pool.tolist()
    words = []
    for i in range(8):
        value = (pool[i % _POOL_SIZE] ^ _STATE_HASH_INTS[i]) * _STATE_HASH_INTS[i + 1] & _M32
        words.append(value ^ (value >> 16))
    state, inc = _pcg64_seeding(*(words[2 * j] | words[2 * j + 1] << 32 for j in range(4)))
    return _draw(_seeded(state, inc), dim, truncation)


def latents_for(
    seed: int, count: int, dim: int, start: int = 0, truncation: float | None = None
) -> np.ndarray:
    """Latents for images ``start .. start+count-1`` of seed ``seed``: float32 ``(count, dim)``.

    Row ``r`` is ``latent_for(seed, start + r, dim, truncation)``. From :data:`BATCH_SEEDING_ROWS`
    rows on, the rows' generators are seeded together (:func:`_pcg64_states`): building a
    ``SeedSequence`` and seeding a ``PCG64`` per row was half the cost of a row.
    """
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    out = np.empty((count, dim), dtype=np.float32)
    if count < BATCH_SEEDING_ROWS:
        for row in range(count):
            out[row] = latent_for(seed, start + row, dim, truncation)
        return out
    _check(seed, truncation)
    for row, (state, inc) in enumerate(_pcg64_states(seed, start, count)):
        out[row] = _draw(_seeded(state, inc), dim, truncation)
    return out


def _check(seed: int, truncation: float | None) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be in 0..{MAX_SEED}, got {seed}")
    if truncation is not None and not truncation >= MIN_TRUNCATION:
        raise ValueError(f"truncation must be >= {MIN_TRUNCATION}, got {truncation}")


def _draw(rng: np.random.Generator, dim: int, truncation: float | None) -> np.ndarray:
    z = rng.standard_normal(dim)
    if truncation is not None:
        outside = np.abs(z) > truncation
        while outside.any():
            z[outside] = rng.standard_normal(int(outside.sum()))
            outside = np.abs(z) > truncation
    return z.astype(np.float32)


# --- numpy's seeding, vectorised over rows ----------------------------------------------------
# default_rng([seed, index]) is PCG64(SeedSequence([seed, index])). Below, SeedSequence's entropy
# mixing and generate_state (numpy/random/bit_generator.pyx) and PCG64's seeding
# (pcg64.h: pcg_setseq_128_srandom_r) are spelled out as uint32 array operations over the rows
# of one request; tests/service/test_latents.py holds them to numpy's own streams.
# The array operations cost about 90 µs whatever the row count, then ~5.5 µs per row against
# ~11 µs per row one at a time (2-core EPYC): batching pays from about 16 rows.
BATCH_SEEDING_ROWS = 16

_M32 = 0xFFFFFFFF
_M128 = (1 << 128) - 1
_PCG64_MULTIPLIER = (2549297995355413924 << 64) + 4865540595714422341


def _hash_constants(init: int, multiplier: int, steps: int) -> list[int]:
    """SeedSequence's running hash constant: step k XORs with entry k, multiplies by entry k+1."""
    values = [init]
    for _ in range(steps):
        values.append(values[-1] * multiplier & _M32)
    return values


_MIX_HASH = [np.uint32(v) for v in _hash_constants(0x43B0D7E5, 0x931E8875, 16)]  # 4 words + 12 mixes
_STATE_HASH_INTS = _hash_constants(0x8B51F9DD, 0x58F38DED, 8)  # 8 output words (4 uint64)
_STATE_HASH = [np.uint32(v) for v in _STATE_HASH_INTS]
_MIX_L, _MIX_R = np.uint32(0xCA01F9DD), np.uint32(0x4973F715)
_SHIFT = np.uint32(16)
_POOL_SIZE = 4
_local = threading.local()


def _seeded(state: int, inc: int) -> np.random.Generator:
    """This thread's generator, its PCG64 set to ``(state, inc)`` (the service plans on its loop,
    the trainer anywhere: one generator per thread)."""
    rng: np.random.Generator | None = getattr(_local, "rng", None)
    if rng is None:
        rng = _local.rng = np.random.Generator(np.random.PCG64(0))
    rng.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": state, "inc": inc},
        "has_uint32": 0,
        "uinteger": 0,
    }
    return rng


def _pcg64_seeding(
    initstate_high: int, initstate_low: int, initseq_high: int, initseq_low: int
) -> tuple[int, int]:
    """PCG64's ``(state, inc)`` seeded from generate_state's four uint64 words, as
    pcg_setseq_128_srandom_r does it: state = 0, inc = seq*2+1; step; state += initstate; step."""
    inc = (((initseq_high << 64) | initseq_low) << 1 | 1) & _M128
    state = ((inc + ((initstate_high << 64) | initstate_low)) * _PCG64_MULTIPLIER + inc) & _M128
    return state, inc


def _hashmix(value: np.ndarray, constants: list[np.uint32], step: int) -> np.ndarray:
    value = (value ^ constants[step]) * constants[step + 1]  # uint32 arrays wrap silently
    return value ^ (value >> _SHIFT)


def _pcg64_states(seed: int, start: int, count: int) -> list[tuple[int, int]]:
    """PCG64's ``(state, inc)`` after seeding from ``SeedSequence([seed, start + r])``, per row r."""
    index = np.arange(start, start + count, dtype=np.uint64)
    low = (index & np.uint64(_M32)).astype(np.uint32)
    high = (index >> np.uint64(32)).astype(np.uint32)
    # The entropy is each integer's 32-bit words, low first (one word below 2**32), zero-padded
    # to the pool size: so a zero high word of the index is the same as no word.
    if seed > _M32:
        entropy = [np.full(count, seed & _M32, np.uint32), np.full(count, seed >> 32, np.uint32), low, high]
    else:
        entropy = [np.full(count, seed, np.uint32), low, high, np.zeros(count, np.uint32)]
    pool = [_hashmix(entropy[i], _MIX_HASH, i) for i in range(_POOL_SIZE)]
    step = _POOL_SIZE
    for source in range(_POOL_SIZE):
        for target in range(_POOL_SIZE):
            if source != target:
                mixed: np.ndarray = pool[target] * _MIX_L - _hashmix(pool[source], _MIX_HASH, step) * _MIX_R
                pool[target] = mixed ^ (mixed >> _SHIFT)
                step += 1
    words = [_hashmix(pool[i % _POOL_SIZE], _STATE_HASH, i).astype(np.uint64) for i in range(8)]
    seeds = [(words[2 * j] | (words[2 * j + 1] << np.uint64(32))).tolist() for j in range(4)]
    return [_pcg64_seeding(*row) for row in zip(*seeds, strict=True)]


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
