"""Adversarial losses in one place: bce, lsgan, wgan-gp and hinge.

Every discriminator here outputs raw scores (logits); the losses apply whatever squashing they
need, so a "sigmoid discriminator" is a BCE-with-logits loss (numerically stable) rather than a
Sigmoid layer followed by BCELoss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

LossName = Literal["bce", "lsgan", "wgan-gp", "hinge"]
LOSSES: tuple[LossName, ...] = ("bce", "lsgan", "wgan-gp", "hinge")


def d_loss(name: LossName, real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
    """Discriminator (critic) loss on real and fake scores.

    ``real_target`` < 1 gives one-sided label smoothing for bce/lsgan (the "noisy labels" of the
    64×64 DCGAN recipe); it is ignored by wgan-gp and hinge.
    """
    if name == "bce":
        return F.binary_cross_entropy_with_logits(
            real, torch.full_like(real, real_target)
        ) + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
    if name == "lsgan":
        return 0.5 * (((real - real_target) ** 2).mean() + (fake**2).mean())
    if name == "wgan-gp":
        return fake.mean() - real.mean()
    if name == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    raise ValueError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}")


def g_loss(name: LossName, fake: Tensor) -> Tensor:
    """Generator loss on the discriminator's scores for generated images."""
    if name == "bce":
        return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
    if name == "lsgan":
        return 0.5 * ((fake - 1.0) ** 2).mean()
    if name in ("wgan-gp", "hinge"):
        return -fake.mean()
    raise ValueError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}")


def gradient_penalty(
    critic: Callable[[Tensor, Tensor | None], Tensor],
    real: Tensor,
    fake: Tensor,
    labels: Tensor | None,
) -> Tensor:
    """WGAN-GP penalty (Gulrajani et al. 2017): E[(‖∇ D(x̂)‖₂ − 1)²] on random interpolates x̂."""
    alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device)
    mixed = (alpha * real.detach() + (1.0 - alpha) * fake.detach()).requires_grad_(True)
    scores = critic(mixed, labels)
    (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()


def mode_seeking(fake_a: Tensor, fake_b: Tensor, z_a: Tensor, z_b: Tensor, eps: float = 1e-5) -> Tensor:
    """Mode-seeking term (Mao et al. 2019) to *minimise*: the inverse of image change per z change.

    Two latents for the same labels should give images as far apart as the latents are; the term
    keeps a conditional generator from ignoring z (the failure of the original MNIST CDCGAN).
    """
    image_gap = (fake_a - fake_b).abs().flatten(1).mean(1)
    z_gap = (z_a - z_b).abs().mean(1)
    return (1.0 / (image_gap / z_gap + eps)).mean()
