"""Requests to rows: label resolution, grid and interpolation layouts, limits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.card import ModelCard, load_card
from service.config import Settings
from service.errors import InvalidRequest
from service.latents import latent_for, latents_for
from service.plan import plan_generate, plan_grid, plan_interpolate
from service.schemas import GenerateRequest, GridRequest, InterpolateRequest
from tests.service.conftest import GRAY, UNCOND

SETTINGS = Settings(models_dir=Path("unused"), max_n=8, max_grid_images=40)


@pytest.fixture
def gray(zoo: Path) -> ModelCard:
    return load_card(zoo / GRAY)


@pytest.fixture
def uncond(zoo: Path) -> ModelCard:
    return load_card(zoo / UNCOND)


def test_generate_labels_per_image_and_layout(gray: ModelCard) -> None:
    plan = plan_generate(GenerateRequest(model=GRAY, labels=[1, "two", "THREE"], seed=5), gray, SETTINGS)
    assert plan.labels is not None
    assert plan.labels.dtype == np.int64
    assert plan.labels.tolist() == [1, 2, 3]
    assert plan.layout == (2, 2)
    assert [m["label_name"] for m in plan.metadata] == ["one", "two", "three"]
    single = plan_generate(GenerateRequest(model=GRAY, label=0, seed=5), gray, SETTINGS)
    assert single.layout == (1, 1)
    assert single.n == 1


def test_generate_limit_names_the_field(gray: ModelCard) -> None:
    with pytest.raises(InvalidRequest, match=r"^n: at most 8"):
        plan_generate(GenerateRequest(model=GRAY, label=0, n=9), gray, SETTINGS)
    with pytest.raises(InvalidRequest, match=r"^z: at most 8"):
        plan_generate(GenerateRequest(model=GRAY, label=0, z=[[0.0] * 16] * 9), gray, SETTINGS)


def test_grid_repeats_each_column_latent_down_the_rows(gray: ModelCard) -> None:
    plan = plan_grid(GridRequest(model=GRAY, labels=[4, 7], seed=9, columns=3), gray, SETTINGS)
    assert plan.layout == (2, 3)
    assert plan.n == 6
    assert plan.labels is not None
    assert plan.labels.tolist() == [4, 4, 4, 7, 7, 7]
    cols = latents_for(9, 3, 16)
    assert np.array_equal(plan.z[:3], cols)
    assert np.array_equal(plan.z[3:], cols)
    assert plan.metadata[4] == {
        "index": 4,
        "label": 7,
        "label_name": "seven",
        "seed": 9,
        "latent_index": 1,
        "row": 1,
        "column": 1,
    }


def test_grid_defaults_to_every_class_and_checks_its_size(gray: ModelCard, uncond: ModelCard) -> None:
    plan = plan_grid(GridRequest(model=GRAY, seed=1, columns=4), gray, SETTINGS)
    assert plan.layout == (10, 4)
    with pytest.raises(InvalidRequest, match="= 50 images"):
        plan_grid(GridRequest(model=GRAY, seed=1, columns=5), gray, SETTINGS)
    with pytest.raises(InvalidRequest, match=r"^rows: .* row per label"):
        plan_grid(GridRequest(model=GRAY, seed=1, rows=2), gray, SETTINGS)
    explicit = plan_grid(GridRequest(model=GRAY, labels=[0], z=[[0.0] * 16, [1.0] * 16]), gray, SETTINGS)
    assert explicit.layout == (1, 2)
    assert explicit.seed is None


def test_interpolate_between_seeds(gray: ModelCard) -> None:
    plan = plan_interpolate(
        InterpolateRequest(model=GRAY, label="nine", seeds=[3, 4], steps=5), gray, SETTINGS
    )
    assert plan.n == 5
    assert plan.layout == (1, 5)
    assert plan.seed is None
    assert plan.seeds == [3, 4]
    assert plan.seed_header == "3,4"
    assert np.array_equal(plan.z[0], latent_for(3, 0, 16))
    assert np.array_equal(plan.z[-1], latent_for(4, 0, 16))
    assert plan.labels is not None
    assert set(plan.labels.tolist()) == {9}
    assert [m["seed"] for m in plan.metadata] == [3, None, None, None, 4]


def test_interpolate_random_ends_and_wrapping_strip(uncond: ModelCard) -> None:
    seeds = iter([11, 12])
    plan = plan_interpolate(
        InterpolateRequest(model=UNCOND, steps=20), uncond, SETTINGS, seed_source=lambda: next(seeds)
    )
    assert plan.seeds == [11, 12]
    assert plan.layout == (2, 16)  # long paths wrap after 16 images
    assert plan.labels is None


def test_interpolate_label_rules(gray: ModelCard, uncond: ModelCard) -> None:
    with pytest.raises(InvalidRequest, match="conditional"):
        plan_interpolate(InterpolateRequest(model=GRAY, seeds=[1, 2]), gray, SETTINGS)
    with pytest.raises(InvalidRequest, match="unconditional"):
        plan_interpolate(InterpolateRequest(model=UNCOND, label=1, seeds=[1, 2]), uncond, SETTINGS)


def test_offset_shifts_the_latent_indices_of_a_seed(gray: ModelCard) -> None:
    plan = plan_generate(GenerateRequest(model=GRAY, label=1, seed=11, n=3, offset=5), gray, SETTINGS)
    assert np.array_equal(plan.z, latents_for(11, 8, 16)[5:])
    assert [m["latent_index"] for m in plan.metadata] == [5, 6, 7]
    assert [m["index"] for m in plan.metadata] == [0, 1, 2]
    far = plan_generate(GenerateRequest(model=GRAY, label=1, seed=11, n=2, offset=2**63 - 2), gray, SETTINGS)
    assert np.array_equal(far.z[1], latent_for(11, 2**63 - 1, 16))


def test_offset_past_the_last_latent_index_names_the_field(gray: ModelCard) -> None:
    with pytest.raises(InvalidRequest, match=r"^offset: offset \+ n - 1 must be at most 9223372036854775807"):
        plan_generate(GenerateRequest(model=GRAY, label=1, seed=1, n=2, offset=2**63 - 1), gray, SETTINGS)


def test_offset_with_an_explicit_z_is_refused() -> None:
    with pytest.raises(ValueError, match="offset applies to seeded latents"):
        GenerateRequest(model=GRAY, label=1, z=[[0.0] * 16], offset=3)


def test_an_unconditional_grid_is_rows_of_consecutive_latents(uncond: ModelCard) -> None:
    """Image (r, c) is latent r × columns + c of the seed: /generate's n images, laid out in rows."""
    plan = plan_grid(GridRequest(model=UNCOND, seed=5, rows=2, columns=3), uncond, SETTINGS)
    assert plan.layout == (2, 3)
    assert plan.labels is None
    assert np.array_equal(plan.z, latents_for(5, 6, uncond.latent.dim))
    assert plan.metadata[4] == {
        "index": 4,
        "label": None,
        "label_name": None,
        "seed": 5,
        "latent_index": 4,
        "row": 1,
        "column": 1,
    }
    assert plan_grid(GridRequest(model=UNCOND, seed=5), uncond, SETTINGS).layout == (4, 8)
    dim = uncond.latent.dim
    explicit = plan_grid(GridRequest(model=UNCOND, z=[[0.0] * dim, [1.0] * dim]), uncond, SETTINGS)
    assert explicit.layout == (1, 2)
    assert explicit.seed is None


def test_an_unconditional_grid_refuses_labels_and_oversize_in_one_line(uncond: ModelCard) -> None:
    with pytest.raises(InvalidRequest, match=r"^labels: .* takes no labels"):
        plan_grid(GridRequest(model=UNCOND, labels=[1]), uncond, SETTINGS)
    with pytest.raises(
        InvalidRequest, match=r"^rows: 5 rows × 9 columns = 45 images, more than the limit of 40"
    ):
        plan_grid(GridRequest(model=UNCOND, rows=5, columns=9), uncond, SETTINGS)
    with pytest.raises(InvalidRequest, match=r"^rows: explicit z is one row"):
        plan_grid(GridRequest(model=UNCOND, rows=2, z=[[0.0] * uncond.latent.dim]), uncond, SETTINGS)
