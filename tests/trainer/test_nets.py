"""Every registered 28/32 px recipe builds, and its networks have the documented interfaces."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from trainer.nets.auxiliary import AuxClassifier
from trainer.nets.common import SaturatingTanh
from trainer.nets.cvae import CVAE
from trainer.nets.dcgan32 import DCGAN32Generator
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


@pytest.mark.parametrize(("size", "convs", "side"), [(28, 2, 7), (32, 2, 8), (64, 3, 8)])
def test_the_auxiliary_classifier_reads_out_a_map_of_at_most_8x8(size: int, convs: int, side: int) -> None:
    aux = AuxClassifier(1, size, num_classes=50)
    strided = [m for m in aux.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(strided) == convs
    readout = next(m for m in aux.modules() if isinstance(m, torch.nn.Linear))
    assert readout.in_features == strided[-1].out_channels * side * side


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


def test_a_saturating_tanh_reaches_its_ends_at_a_finite_input_with_slope_to_spare() -> None:
    x = torch.linspace(-6.0, 6.0, 241, requires_grad=True)
    assert torch.equal(SaturatingTanh(1.0)(x), torch.tanh(x))

    y = SaturatingTanh(1.1)(x)
    assert y.min().item() == -1.0
    assert y.max().item() == 1.0
    assert bool((x[y == -1.0] < -1.5).all())  # ... past |x| = atanh(1 / 1.1) ≈ 1.52
    # Where the plain tanh still sits a few grey levels off black, this output is already black;
    # short of the clamp it keeps more slope than the plain tanh has there.
    near_black = torch.tensor([-2.8, -1.4], requires_grad=True)
    plain = torch.autograd.grad(torch.tanh(near_black).sum(), near_black)[0]
    gained = torch.autograd.grad(SaturatingTanh(1.1)(near_black).sum(), near_black)[0]
    assert 0.0 < plain[0].item() < 0.02
    assert gained[0].item() == 0.0
    assert gained[1].item() > plain[1].item() > 0.0
    with pytest.raises(ValueError, match="at least 1"):
        SaturatingTanh(0.9)


def test_only_dcgan_mnist_uses_the_saturating_output() -> None:
    def out_gain(name: str) -> float:
        gen, _ = RECIPES[name].build(RECIPES[name])
        assert isinstance(gen, DCGAN32Generator)
        last = gen.net[-1]
        assert isinstance(last, SaturatingTanh)
        return last.gain

    assert out_gain("dcgan-mnist") == RECIPES["dcgan-mnist"].hyperparameters()["output_gain"] > 1.0
    assert out_gain("lsgan-mnist") == 1.0  # its committed export was trained with the plain tanh
