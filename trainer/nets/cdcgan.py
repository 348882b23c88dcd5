"""``cdcgan-mnist``: the conditional DCGAN with a 5-D latent and label embeddings.

The system it reproduces fed z through its generator but trained it so that z had no visible
effect; here z is projected to as many features as the label (50 each) and the recipe adds a
mode-seeking term, so the latent controls the digit's style.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .common import init_dcgan, require_label


@dataclass(frozen=True)
class CDCGANConfig:
    z_dim: int = 5
    num_classes: int = 10
    z_features: int = 50
    label_features: int = 50
    base_channels: int = 128  # width at 7×7; halves at each upsampling
    dropout: float = 0.3


class CDCGANGenerator(nn.Module):
    def __init__(self, cfg: CDCGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.base_channels
        self.z_proj = nn.Linear(cfg.z_dim, cfg.z_features)
        self.embed = nn.Embedding(cfg.num_classes, cfg.label_features)
        self.fc = nn.Sequential(
            nn.Linear(cfg.z_features + cfg.label_features, c * 7 * 7),
            nn.BatchNorm1d(c * 7 * 7),
            nn.LeakyReLU(0.2),
        )
        self.net = nn.Sequential(
            nn.ConvTranspose2d(c, c // 2, 4, 2, 1),  # 7 → 14
            nn.BatchNorm2d(c // 2),
            nn.LeakyReLU(0.2),
            # Pooling with stride 1 mid-way smooths the checkerboard of strided transposed convs.
            nn.MaxPool2d(3, stride=1, padding=1),
            nn.ConvTranspose2d(c // 2, c // 4, 4, 2, 1),  # 14 → 28
            nn.BatchNorm2d(c // 4),
            nn.LeakyReLU(0.2),
            nn.AvgPool2d(3, stride=1, padding=1),
            nn.ConvTranspose2d(c // 4, 1, 3, 1, 0),  # 28 → 30, center-cropped below
        )
        init_dcgan(self)

    def forward(self, z: Tensor, label: Tensor | None = None) -> Tensor:
        h = torch.cat([self.z_proj(z), self.embed(require_label(label))], dim=1)
        h = self.fc(h).unflatten(1, (self.cfg.base_channels, 7, 7))
        out = self.net(h)[:, :, 1:29, 1:29]  # CenterCrop to 28×28
        return torch.tanh(out)


class CDCGANDiscriminator(nn.Module):
    def __init__(self, cfg: CDCGANConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(cfg.num_classes, 28 * 28)
        self.net = nn.Sequential(
            nn.Conv2d(2, 64, 4, 2, 1),  # 28 → 14
            nn.LeakyReLU(0.2),
            nn.Dropout(cfg.dropout),
            nn.Conv2d(64, 128, 4, 2, 1),  # 14 → 7
            nn.LeakyReLU(0.2),
            nn.Dropout(cfg.dropout),
            nn.Flatten(),
            nn.Linear(128 * 7 * 7, 1),
        )
        init_dcgan(self)

    def forward(self, x: Tensor, label: Tensor | None = None) -> Tensor:
        label_map = self.embed(require_label(label)).view(-1, 1, 28, 28)
        return self.net(torch.cat([x, label_map], dim=1)).view(-1)
