"""The FashionMNIST cGAN family: four losses × two label-embedding widths."""

from __future__ import annotations

from ..losses import LossName
from ..nets.cgan_fashion import CGANFashionConfig
from .recipe import CardField, Recipe

# (loss, embedding width) → epochs the zoo's model was trained for.
EPOCHS: dict[tuple[LossName, int], int] = {
    ("bce", 10): 12,
    ("bce", 32): 18,
    ("wgan-gp", 10): 10,
    ("wgan-gp", 32): 10,
    ("lsgan", 10): 12,
    ("lsgan", 32): 18,
    ("hinge", 10): 12,
    ("hinge", 32): 24,
}


def _fashion(loss: LossName, embed: int) -> Recipe:
    wgan = loss == "wgan-gp"
    # A WGAN-GP critic takes no BatchNorm (the penalty is per sample) and no dropout (noisy gradients).
    cfg = CGANFashionConfig(embed_dim=embed, critic_batchnorm=not wgan, dropout=0.0 if wgan else 0.3)
    return Recipe(
        name=f"cgan-fashion-{loss.replace('-gp', 'gp')}-{embed}",
        family="cgan-fashion",
        kind="gan",
        dataset="fashion-mnist",
        description=f"FashionMNIST conditional GAN, {loss} loss, label embedding {embed} beside z (200).",
        reproduces="FashionMNIST cGAN family (best Inception FID 38.15: BCE, embedding 10, 30 epochs)",
        net=cfg,
        loss=loss,
        batch_size=64,
        # WGAN-GP with a two-time-scale update rule (Heusel et al. 2017) rather than five critic
        # steps per generator step (docs/recipes.md).
        lr_g=1e-4 if wgan else 2e-4,
        lr_d=4e-4 if wgan else 2e-4,
        betas=(0.0, 0.9) if wgan else (0.5, 0.999),
        critic_steps=1,
        gp_weight=10.0 if wgan else 0.0,
        ema_decay=0.999 if wgan else 0.0,
        lr_decay_epochs=2 if wgan else 0,
        epochs=EPOCHS[(loss, embed)],
        card_fields=(CardField("embed_dim"), CardField("dropout", key="critic_dropout")),
    )


RECIPES = [_fashion(loss, embed) for loss, embed in EPOCHS]
