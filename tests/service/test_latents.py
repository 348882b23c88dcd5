"""Seeds to latents: image i depends on (seed, i) alone; random seeds are drawn and reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.card import ModelCard, load_card
from service.config import Settings
from service.latents import BATCH_SEEDING_ROWS, MAX_SEED, MIN_TRUNCATION, interpolate, latent_for, latents_for
from service.plan import plan_generate, random_seed
from service.schemas import GenerateRequest
from tests.service.conftest import GRAY, UNCOND


def test_each_row_depends_on_seed_and_index_only() -> None:
    block = latents_for(7, 4, 16)
    assert block.dtype == np.float32
    assert block.shape == (4, 16)
    for i in range(4):
        assert np.array_equal(block[i], latent_for(7, i, 16))
    assert np.array_equal(latents_for(7, 1, 16), block[:1])
    assert np.array_equal(latents_for(7, 2, 16, start=2), block[2:])
    assert not np.array_equal(block[0], latent_for(8, 0, 16))


def _numpy_reference(seed: int, index: int, dim: int, truncation: float | None = None) -> np.ndarray:
    """The documented stream, spelled out: numpy's default_rng([seed, index]). Clients and the
    trainer's grids rely on it, so any faster implementation must reproduce it exactly."""
    rng = np.random.default_rng([seed, index])
    z = rng.standard_normal(dim)
    if truncation is not None:
        outside = np.abs(z) > truncation
        while outside.any():
            z[outside] = rng.standard_normal(int(outside.sum()))
            outside = np.abs(z) > truncation
    return z.astype(np.float32)


@pytest.mark.parametrize(
    "seed",
    [0, 1, 7, 2**32 - 1, 2**32, 2**40 + 5, 123_456_789_012, MAX_SEED - 1, MAX_SEED],
)
def test_latents_are_numpys_default_rng_stream_for_seed_and_index(seed: int) -> None:
    # Words of 0 pad SeedSequence's entropy; seeds and indices past 32 bits take two words.
    for index in (0, 1, 2, 63, 1000, 2**32 - 1, 2**32 + 3):
        assert np.array_equal(latent_for(seed, index, 100), _numpy_reference(seed, index, 100))
    assert np.array_equal(latent_for(seed, 5, 64, 0.7), _numpy_reference(seed, 5, 64, 0.7))


@pytest.mark.parametrize("seed", [0, 7, 2**32 - 1, 2**32, 123_456_789_012, MAX_SEED])
@pytest.mark.parametrize("start", [0, 1000, 2**32 - 5])
def test_rows_seeded_together_are_the_same_stream(seed: int, start: int) -> None:
    # Enough rows to take the batched seeding; the last start crosses into two-word indices.
    count = BATCH_SEEDING_ROWS + 3
    block = latents_for(seed, count, 100, start=start)
    for row in range(count):
        assert np.array_equal(block[row], _numpy_reference(seed, start + row, 100)), row
    truncated = latents_for(seed, count, 64, start=start, truncation=0.7)
    assert np.array_equal(truncated[-1], _numpy_reference(seed, start + count - 1, 64, 0.7))
    # Fewer rows take the per-row path: the same numbers.
    assert np.array_equal(latents_for(seed, 2, 100, start=start + 5), block[5:7])


def test_truncation_bounds_every_component_and_stays_reproducible() -> None:
    z = latents_for(3, 32, 64, truncation=0.5)
    assert float(np.abs(z).max()) <= 0.5
    assert np.array_equal(z, latents_for(3, 32, 64, truncation=0.5))
    with pytest.raises(ValueError, match="truncation"):
        latent_for(3, 0, 4, truncation=0.0)


def test_truncation_below_the_floor_is_refused_before_any_draw() -> None:
    # At 1e-5 the redraw loop would take ~10^5 draws a component: refused, not attempted.
    for bound in (1e-5, MIN_TRUNCATION / 2):
        with pytest.raises(ValueError, match=f">= {MIN_TRUNCATION}"):
            latents_for(3, 64, 200, truncation=bound)
    z = latents_for(3, 64, 200, truncation=MIN_TRUNCATION)
    assert float(np.abs(z).max()) <= MIN_TRUNCATION


def test_seed_range_is_enforced() -> None:
    latent_for(MAX_SEED, 0, 2)
    with pytest.raises(ValueError, match="seed"):
        latent_for(MAX_SEED + 1, 0, 2)
    with pytest.raises(ValueError, match="seed"):
        latent_for(-1, 0, 2)


def test_random_seeds_are_63_bit_and_distinct() -> None:
    seeds = {random_seed() for _ in range(64)}
    assert len(seeds) == 64
    assert all(0 <= s <= MAX_SEED for s in seeds)


def test_slerp_endpoints_are_exact_and_norm_is_kept() -> None:
    a, b = latent_for(1, 0, 128), latent_for(2, 0, 128)
    path = interpolate(a, b, 9)
    assert np.array_equal(path[0], a)
    assert np.array_equal(path[-1], b)
    norms = np.linalg.norm(path, axis=1)
    assert norms.min() > 0.9 * min(np.linalg.norm(a), np.linalg.norm(b))
    linear = interpolate(a, b, 9, spherical=False)
    assert np.linalg.norm(linear[4]) < norms[4]


@pytest.fixture
def gray_card(zoo: Path) -> ModelCard:
    return load_card(zoo / GRAY)


def test_plan_draws_a_random_seed_when_none_is_given(gray_card: ModelCard) -> None:
    settings = Settings(models_dir=Path("unused"))
    plan = plan_generate(
        GenerateRequest(model=GRAY, label=1, n=3), gray_card, settings, seed_source=lambda: 42
    )
    assert plan.seed == 42
    assert plan.seed_header == "42"
    assert np.array_equal(plan.z, latents_for(42, 3, 16))
    assert [m["seed"] for m in plan.metadata] == [42, 42, 42]
    assert [m["latent_index"] for m in plan.metadata] == [0, 1, 2]


def test_plan_with_explicit_z_has_no_seed(zoo: Path) -> None:
    card = load_card(zoo / UNCOND)
    z = [[0.5] * 12, [-0.5] * 12]
    plan = plan_generate(GenerateRequest(model=UNCOND, z=z), card, Settings(models_dir=Path("unused")))
    assert plan.seed is None
    assert plan.seed_header is None
    assert plan.z.dtype == np.float32
    assert plan.z.tolist() == z
    assert plan.labels is None
