"""``cgan-fashion-{loss}-{embedding}``: the FashionMNIST conditional GAN family.

z (200) ⊕ label embedding (10 or 32) → FC → BatchNorm → 128×7×7 → (upsample, Conv, BN,
LeakyReLU) ×2 → Conv → tanh. The discriminator sees the image beside a 28×28 label map (two
channels). The WGAN-GP critic has no BatchNorm: the gradient penalty is per-sample and batch
statistics would couple the samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .common import init_dcgan, require_label


@dataclass(frozen=True)
class CGANFashionConfig:
    z_dim: int = 200
    num_classes: int = 10
    embed_dim: int = 10
    bn_momentum: float = 0.2  # Keras BatchNormalization(momentum=0.8)
    critic_batchnorm: bool = True  # False for WGAN-GP
    dropout: float = 0.3
    width: int = 64  # generator channels at 7×7 and 14×14; half of it at 28×28


class CGANFashionGenerator(nn.Module):
    def __init__(self, cfg: CGANFashionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.embed = nn.Embedding(cfg.num_classes, cfg.embed_dim)
        self.fc = nn.Sequential(
            nn.Linear(cfg.z_dim + cfg.embed_dim, w * 7 * 7),
            nn.BatchNorm1d(w * 7 * 7, momentum=cfg.bn_momentum),
            nn.LeakyReLU(0.2),
        )
        self.net = nn.Sequential(
            nn.Upsample(scale_factor=2),  # 7 → 14
            nn.Conv2d(w, w, 3, 1, 1),
            nn.BatchNorm2d(w, momentum=cfg.bn_momentum),
            nn.LeakyReLU(0.2),
            nn.Upsample(scale_factor=2),  # 14 → 28
            nn.Conv2d(w, w // 2, 3, 1, 1),
            nn.BatchNorm2d(w // 2, momentum=cfg.bn_momentum),
            nn.LeakyReLU(0.2),
            nn.Conv2d(w // 2, 1, 3, 1, 1),
            nn.Tanh(),
        )
        init_dcgan(self)

    def forward(self, z: Tensor, label: Tensor | None = None) -> Tensor:
        h = torch.cat([z, self.embed(require_label(label))], dim=1)
        return self.net(self.fc(h).unflatten(1, (self.cfg.width, 7, 7)))


class CGANFashionDiscriminator(nn.Module):
    def __init__(self, cfg: CGANFashionConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(cfg.num_classes, cfg.embed_dim)
        self.label_map = nn.Linear(cfg.embed_dim, 28 * 28)
        norm: nn.Module = (
            nn.BatchNorm2d(128, momentum=cfg.bn_momentum) if cfg.critic_batchnorm else nn.Identity()
        )
        self.net = nn.Sequential(
            nn.Conv2d(2, 64, 3, 2, 1),  # 28 → 14
            nn.LeakyReLU(0.2),
            nn.Dropout(cfg.dropout),
            nn.Conv2d(64, 128, 3, 2, 1),  # 14 → 7
            norm,
            nn.LeakyReLU(0.2),
            nn.Dropout(cfg.dropout),
            nn.Flatten(),
            nn.Linear(128 * 7 * 7, 1),
        )
        init_dcgan(self)

    def forward(self, x: Tensor, label: Tensor | None = None) -> Tensor:
        label_map = self.label_map(self.embed(require_label(label))).view(-1, 1, 28, 28)
        return self.net(torch.cat([x, label_map], dim=1)).view(-1)
