"""Every registered 28/32 px recipe builds, and its networks have the documented interfaces."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from trainer.nets.auxiliary import AuxClassifier
from trainer.nets.cvae import CVAE
from trainer.recipes import RECIPES

DATASET_RECIPES = sorted(n for n, r in RECIPES.items() if r.dataset != "folder")


def test_the_zoo_recipes_are_all_registered() -> None:
    expected = {
        "cdcgan-mnist", "cvae-mnist", "gan-mnist", "dcgan-mnist", "lsgan-mnist", "cgan-mnist",
        "condgen-mnist", "condgen-fashion",
        *(f"cgan-fashion-{loss}-{e}" for loss in ("bce", "wgangp", "lsgan", "hinge") for e in (10, 32)),
    }  # fmt: skip
    assert expected <= set(RECIPES)
    assert len(expected) == 16


@pytest.mark.parametrize("name", DATASET_RECIPES)
def test_generator_and_discriminator_shapes(name: str) -> None:
    recipe = RECIPES[name]
    model, disc = recipe.build(recipe)
    gen = model.decoder if isinstance(model, CVAE) else model
    gen.eval()
    z = torch.randn(3, recipe.z_dim)
    label = torch.tensor([0, 1, 2]) if recipe.conditional else None
    with torch.no_grad():
        out = gen(z, label)
    assert out.shape == (3, recipe.channels, recipe.image_size, recipe.image_size)
    lo, hi = recipe.value_range
    assert float(out.min()) >= lo
    assert float(out.max()) <= hi
    if disc is not None:
        disc.eval()
        with torch.no_grad():
            assert disc(out, label).shape == (3,)


@pytest.mark.parametrize("name", [n for n in DATASET_RECIPES if RECIPES[n].conditional])
def test_conditional_generators_demand_a_label(name: str) -> None:
    recipe = RECIPES[name]
    model, _ = recipe.build(recipe)
    gen = model.decoder if isinstance(model, CVAE) else model
    with pytest.raises(ValueError, match="conditional"):
        gen.eval()(torch.randn(2, recipe.z_dim), None)


def test_cdcgan_generator_depends_on_z() -> None:
    """The system cdcgan-mnist reproduces ignored z; in this architecture every z unit reaches
    the image (non-zero gradient of the output with respect to each latent component)."""
    recipe = RECIPES["cdcgan-mnist"]
    gen, _ = recipe.build(recipe)
    gen.eval()
    z = torch.randn(4, recipe.z_dim, requires_grad=True)
    gen(z, torch.tensor([3, 3, 3, 3])).square().sum().backward()
    assert z.grad is not None
    assert bool((z.grad.abs().sum(dim=0) > 0).all())


@pytest.mark.parametrize(("channels", "size"), [(1, 28), (1, 32), (3, 64)])
def test_the_auxiliary_classifier_gives_class_logits(channels: int, size: int) -> None:
    aux = AuxClassifier(channels, size, num_classes=10).eval()
    with torch.no_grad():
        assert aux(torch.randn(5, channels, size, size)).shape == (5, 10)
    with pytest.raises(ValueError, match="multiple of 4"):
        AuxClassifier(channels, size + 2, num_classes=10)


def test_an_auxiliary_class_loss_needs_a_conditional_gan() -> None:
    assert RECIPES["cdcgan-mnist"].aux_weight > 0
    with pytest.raises(ValueError, match="conditional GAN"):
        replace(RECIPES["gan-mnist"], aux_weight=1.0)
    with pytest.raises(ValueError, match="conditional GAN"):
        replace(RECIPES["cvae-mnist"], aux_weight=1.0)
    with pytest.raises(ValueError, match=">= 0"):
        replace(RECIPES["cgan-mnist"], aux_weight=-1.0)
    with pytest.raises(ValueError, match="aux_start_epoch"):
        replace(RECIPES["cgan-mnist"], aux_start_epoch=3)  # a start epoch without the loss
    with pytest.raises(ValueError, match="aux_start_epoch"):
        replace(RECIPES["cdcgan-mnist"], aux_start_epoch=-1)
