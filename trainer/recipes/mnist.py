"""The MNIST families: conditional DCGAN, conditional VAE, fully connected GANs and 32×32 DCGANs."""

from __future__ import annotations

from dataclasses import replace

from ..losses import LossName
from ..nets.cdcgan import CDCGANConfig
from ..nets.cvae import CVAEConfig
from ..nets.dcgan32 import DCGAN32Config
from ..nets.mlpgan import MLPGANConfig
from .recipe import CardField, Recipe


def _dcgan32(name: str, loss: LossName, published_fid: str, cfg: DCGAN32Config, epochs: int) -> Recipe:
    family = name.split("-")[0]
    return Recipe(
        name=name,
        family=family,
        kind="gan",
        dataset="mnist",
        description=f"32×32 convolutional GAN ({loss} loss), unconditional.",
        reproduces=f"MNIST {family.upper()}, Inception FID {published_fid} after 200 epochs",
        net=cfg,
        image_size=32,
        loss=loss,
        epochs=epochs,
        card_fields=(CardField("output_gain", only_changed=True),),
    )


RECIPES = [
    Recipe(
        name="cdcgan-mnist",
        family="cdcgan",
        kind="gan",
        dataset="mnist",
        description="Conditional DCGAN, 5-D latent, label embeddings; z controls the digit's style.",
        reproduces="MNIST CDCGAN whose generator ignored its latent vector",
        net=CDCGANConfig(),
        loss="bce",
        batch_size=100,
        # A quarter-weight mode-seeking term with an EMA generator and a closing rate decay trades
        # some spread for class fidelity (docs/recipes.md); the class term asks for readable digits.
        ms_weight=0.25,
        aux_weight=1.0,
        ema_decay=0.999,
        lr_decay_epochs=3,
        epochs=10,
    ),
    Recipe(
        name="cvae-mnist",
        family="cvae",
        kind="vae-decoder",
        dataset="mnist",
        description="Conditional VAE, 2-D latent, trained on the ELBO (Bernoulli + KL); serves the decoder.",
        reproduces="MNIST CVAE trained with MSE alone",
        net=CVAEConfig(),
        value_range=(0.0, 1.0),
        loss="elbo",
        batch_size=128,
        lr_g=1e-3,
        betas=(0.9, 0.999),
        epochs=10,
    ),
    Recipe(
        name="gan-mnist",
        family="gan",
        kind="gan",
        dataset="mnist",
        description="Fully connected GAN (z 100 → 256 → 512 → 1024 → 784), unconditional.",
        reproduces="MNIST GAN, Inception FID 103.69 after 200 epochs",
        net=MLPGANConfig(),
        epochs=20,
    ),
    Recipe(
        name="cgan-mnist",
        family="cgan",
        kind="gan",
        dataset="mnist",
        description="Fully connected conditional GAN: one-hot label beside the noise and beside the image.",
        reproduces="MNIST CGAN, Inception FID 79.92 after 200 epochs",
        net=MLPGANConfig(num_classes=10),
        epochs=30,
    ),
    # Label smoothing, the mode-seeking term, an EMA generator and a saturating tanh (gain 1.1,
    # black from a finite input) end the plain recipe's background dust (docs/recipes.md).
    replace(
        _dcgan32("dcgan-mnist", "bce", "44.99", DCGAN32Config(output_gain=1.1), epochs=7),
        real_target=0.9,
        ms_weight=0.5,
        ema_decay=0.999,
        lr_decay_epochs=2,
    ),
    _dcgan32("lsgan-mnist", "lsgan", "94.01", DCGAN32Config(), epochs=7),
]
