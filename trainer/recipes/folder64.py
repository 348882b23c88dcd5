"""The 64×64 image-folder recipes: ``dcgan64-folder``, ``wgangp64-folder`` and ``cgan64-folder``.

They train on a folder of images a user provides (CelebA, renders, photos; see
:mod:`trainer.imagefolder`), RGB 64×64 by default; gray images are converted to RGB. The
conditional recipe's classes come from the folder's class subfolders (the ImageFolder layout), or
from attribute columns (``--attributes Blond_Hair,Male``: 2^k classes), so its ``num_classes`` here
is a placeholder that training replaces with the data's before building.

Epoch counts are sized for CelebA (202,599 images: about 3,200 steps of 64 per epoch).
"""

from __future__ import annotations

from dataclasses import replace

from ..nets.cgan64 import CGAN64Config
from ..nets.condgen64 import CondGen64Config
from ..nets.dcgan64 import DCGAN64Config
from .flagship import FLAGSHIP
from .recipe import CardField, Recipe

_KERAS_DCGAN = (CardField("bn_momentum"), CardField("dropout"))

DCGAN64 = Recipe(
    name="dcgan64-folder",
    family="dcgan64",
    kind="gan",
    dataset="folder",
    description=(
        "64×64 DCGAN on an image folder: BatchNorm (Keras momentum 0.9), dropout 0.3 in the "
        "discriminator, BCE with one-sided label smoothing (real target 0.9); unconditional."
    ),
    reproduces="64×64 DCGAN with noisy labels on CelebA",
    net=DCGAN64Config(),
    image_size=64,
    channels=3,
    loss="bce",
    batch_size=64,
    lr_g=2e-4,
    lr_d=2e-4,
    betas=(0.5, 0.999),
    # "Noisy labels": real images are scored against 0.9, which keeps the discriminator from
    # becoming over-confident and starving the generator of gradient (Salimans et al. 2016).
    real_target=0.9,
    epochs=5,
    card_fields=_KERAS_DCGAN,
)
WGANGP64 = Recipe(
    name="wgangp64-folder",
    family="wgangp64",
    kind="gan",
    dataset="folder",
    description=(
        "64×64 WGAN-GP on an image folder: DCGAN shapes, layer-norm critic (no BatchNorm), "
        "gradient penalty 10, 5 critic steps per generator step; unconditional."
    ),
    reproduces="64×64 WGAN-GP on CelebA",
    net=DCGAN64Config(critic_norm="layer", dropout=0.0),
    image_size=64,
    channels=3,
    loss="wgan-gp",
    batch_size=64,
    # Gulrajani et al. 2017, Algorithm 1: α = 1e-4, β = (0, 0.9), λ = 10, n_critic = 5. The
    # critic has no dropout either: a random critic makes the penalty's gradient norm noise.
    lr_g=1e-4,
    lr_d=1e-4,
    betas=(0.0, 0.9),
    critic_steps=5,
    gp_weight=10.0,
    # An epoch counts critic steps, so a WGAN-GP epoch holds a fifth of a DCGAN epoch's
    # generator steps: twice the epochs still gives fewer generator updates.
    epochs=10,
    card_fields=(CardField("critic_norm"),),
)
CGAN64 = Recipe(
    name="cgan64-folder",
    family="cgan64",
    kind="gan",
    dataset="folder",
    description=(
        "64×64 conditional GAN on an image folder, its classes the class subfolders or attributes "
        "(2^k classes for k): one-hot beside z and as label maps beside the image; BCE, real target 0.9."
    ),
    reproduces="64×64 CGAN on CelebA attributes",
    net=CGAN64Config(),  # num_classes: a placeholder, replaced by the data's class count
    image_size=64,
    channels=3,
    loss="bce",
    batch_size=64,
    lr_g=2e-4,
    lr_d=2e-4,
    betas=(0.5, 0.999),
    real_target=0.9,
    epochs=5,
    card_fields=_KERAS_DCGAN,
)
# The flagship's training (two time-scale rates, hinge, EMA, mode seeking, auxiliary class loss:
# trainer/recipes/flagship.py) on the 64×64 networks; shorter class-loss lead-in and decay.
CONDGEN64 = replace(
    FLAGSHIP,
    name="condgen64-folder",
    family="condgen64",
    dataset="folder",
    description=(
        "64×64 flagship on an image folder's class subfolders: conditional-BatchNorm generator, "
        "spectral-norm projection discriminator, hinge loss, EMA generator, mode-seeking term, "
        "auxiliary class loss."
    ),
    net=CondGen64Config(channels=3),  # num_classes: a placeholder, replaced by the data's class count
    image_size=64,
    channels=3,
    aux_start_epoch=2,
    lr_decay_epochs=2,
    tone_curve=False,
    epochs=8,
    card_fields=(CardField("g_channels"), CardField("d_channels")),
)

RECIPES = [DCGAN64, WGANGP64, CGAN64, CONDGEN64]
