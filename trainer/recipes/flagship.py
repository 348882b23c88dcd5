"""The flagships, condgen-mnist and condgen-fashion: one recipe, two datasets."""

from __future__ import annotations

from typing import Literal

from ..nets.condgen import CondGenConfig
from .recipe import CardField, Recipe


def _flagship(dataset: Literal["mnist", "fashion-mnist"], net: CondGenConfig, epochs: int) -> Recipe:
    short = "mnist" if dataset == "mnist" else "fashion"
    return Recipe(
        name=f"condgen-{short}",
        family="condgen",
        kind="gan",
        dataset=dataset,
        description=(
            "Flagship: conditional-BatchNorm generator, spectral-norm projection discriminator, "
            "hinge loss, EMA generator, mode-seeking term."
        ),
        net=net,
        loss="hinge",
        batch_size=64,
        # Two time-scale update rule (Heusel et al. 2017): a faster discriminator stands in for
        # the several critic steps per generator step that a CPU budget cannot afford.
        lr_g=1e-4,
        lr_d=4e-4,
        betas=(0.0, 0.9),
        ms_weight=0.5,
        # The class term joins for the last epochs, when label accuracy had settled short of the
        # goals (docs/recipes.md).
        aux_weight=1.0,
        aux_start_epoch=12,
        ema_decay=0.999,
        # Constant rates until the last epochs: the constant-rate FID stopped improving after epoch 6.
        lr_decay_epochs=4,
        # MNIST's generator stops short of black; FashionMNIST's histogram measured worse with a curve.
        tone_curve=dataset == "mnist",
        epochs=epochs,
        card_fields=(CardField("g_channels"), CardField("d_channels", only_changed=True)),
    )


RECIPES = [
    _flagship("mnist", CondGenConfig(g_channels=128, d_channels=32), epochs=18),
    # FashionMNIST's textures ask more of the discriminator: width 64 (docs/recipes.md).
    _flagship("fashion-mnist", CondGenConfig(g_channels=128, d_channels=64), epochs=30),
]
FLAGSHIP = RECIPES[1]  # the flagship's training, without MNIST's tone curve, for other networks
