"""``cvae-mnist``: a conditional VAE with a 2-D latent; the service serves its decoder.

The system it reproduces trained on MSE alone, which is an autoencoder with noise, not a VAE; this
one optimises the evidence lower bound (Bernoulli reconstruction + KL to N(0, I)), so sampling
z ~ N(0, I) gives digits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .common import OneHot, require_label


@dataclass(frozen=True)
class CVAEConfig:
    z_dim: int = 2
    num_classes: int = 10
    hidden: tuple[int, ...] = (512, 256, 128)
    decoder_hidden: tuple[int, ...] = (128, 256, 512)
    dropout: float = 0.25


class CVAEEncoder(nn.Module):
    def __init__(self, cfg: CVAEConfig) -> None:
        super().__init__()
        self.onehot = OneHot(cfg.num_classes)
        layers: list[nn.Module] = []
        width = 28 * 28 + cfg.num_classes  # 794
        for h in cfg.hidden:
            layers += [nn.Linear(width, h), nn.LayerNorm(h), nn.ReLU(), nn.Dropout(cfg.dropout)]
            width = h
        self.body = nn.Sequential(*layers)
        self.mu = nn.Linear(width, cfg.z_dim)
        self.logvar = nn.Linear(width, cfg.z_dim)

    def forward(self, x: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        h = self.body(torch.cat([x.flatten(1), self.onehot(label)], dim=1))
        return self.mu(h), self.logvar(h)


class CVAEDecoder(nn.Module):
    """z ⊕ one-hot (12) → four Linear layers → 784 → sigmoid, as 1×28×28 images in [0, 1]."""

    def __init__(self, cfg: CVAEConfig) -> None:
        super().__init__()
        self.onehot = OneHot(cfg.num_classes)
        layers: list[nn.Module] = []
        width = cfg.z_dim + cfg.num_classes
        for h in cfg.decoder_hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 28 * 28))
        self.body = nn.Sequential(*layers)

    def logits(self, z: Tensor, label: Tensor) -> Tensor:
        return self.body(torch.cat([z, self.onehot(label)], dim=1))

    def forward(self, z: Tensor, label: Tensor | None = None) -> Tensor:
        return torch.sigmoid(self.logits(z, require_label(label))).view(-1, 1, 28, 28)


class CVAE(nn.Module):
    def __init__(self, cfg: CVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = CVAEEncoder(cfg)
        self.decoder = CVAEDecoder(cfg)

    def loss(self, x01: Tensor, label: Tensor, beta: float = 1.0) -> tuple[Tensor, dict[str, Tensor]]:
        """Negative ELBO per image: Bernoulli reconstruction (nats) + beta · KL(q(z|x,y) ‖ N(0, I))."""
        mu, logvar = self.encoder(x01, label)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        logits = self.decoder.logits(z, label)
        recon = nn.functional.binary_cross_entropy_with_logits(logits, x01.flatten(1), reduction="sum")
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        n = x01.shape[0]
        total = (recon + beta * kl) / n
        # Detached tensors, not floats: reading a value waits for the device (see training.py).
        return total, {"recon": recon.detach().double() / n, "kl": kl.detach().double() / n}
