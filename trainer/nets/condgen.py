"""``condgen-mnist`` / ``condgen-fashion``: the flagship conditional GAN.

What the family recipes lack, in one model sized for a CPU:
- a generator with class-conditional BatchNorm (the label sets every block's gain and bias) plus
  the label embedding beside z at the input;
- a spectrally normalised discriminator with a projection head (Miyato & Koyama 2018):
  D(x, y) = ψ(φ(x)) + ⟨embed(y), φ(x)⟩, which conditions far more stably than label channels;
- hinge loss, an exponential moving average of the generator's weights (exported), and a
  mode-seeking term (in the recipe) so z always changes the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from .common import require_label


@dataclass(frozen=True)
class CondGenConfig:
    z_dim: int = 64
    num_classes: int = 10
    embed_dim: int = 32
    g_channels: int = 128  # width at 7×7; halves at 14×14 and 28×28
    d_channels: int = 32


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm without its own affine terms; per-class gain (around 1) and bias instead."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)
        nn.init.zeros_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: Tensor, label: Tensor) -> Tensor:
        g = 1.0 + self.gain(label)[:, :, None, None]
        b = self.bias(label)[:, :, None, None]
        return self.bn(x) * g + b


class UpBlock(nn.Module):
    def __init__(self, cin: int, cout: int, num_classes: int) -> None:
        super().__init__()
        self.norm = ConditionalBatchNorm2d(cin, num_classes)
        self.up = nn.Upsample(scale_factor=2)
        self.conv = nn.Conv2d(cin, cout, 3, 1, 1)

    def forward(self, x: Tensor, label: Tensor) -> Tensor:
        return self.conv(self.up(torch.relu(self.norm(x, label))))


class CondGenGenerator(nn.Module):
    def __init__(self, cfg: CondGenConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.g_channels
        self.embed = nn.Embedding(cfg.num_classes, cfg.embed_dim)
        self.fc = nn.Linear(cfg.z_dim + cfg.embed_dim, c * 7 * 7)
        self.block1 = UpBlock(c, c // 2, cfg.num_classes)  # 7 → 14
        self.block2 = UpBlock(c // 2, c // 4, cfg.num_classes)  # 14 → 28
        self.out_norm = nn.BatchNorm2d(c // 4)
        self.out = nn.Conv2d(c // 4, 1, 3, 1, 1)

    def forward(self, z: Tensor, label: Tensor | None = None) -> Tensor:
        y = require_label(label)
        h = self.fc(torch.cat([z, self.embed(y)], dim=1)).unflatten(1, (self.cfg.g_channels, 7, 7))
        h = self.block2(self.block1(h, y), y)
        return torch.tanh(self.out(torch.relu(self.out_norm(h))))


class CondGenDiscriminator(nn.Module):
    def __init__(self, cfg: CondGenConfig) -> None:
        super().__init__()
        c = cfg.d_channels
        self.features = nn.Sequential(
            spectral_norm(nn.Conv2d(1, c // 2, 3, 1, 1)),
            nn.LeakyReLU(0.1),
            spectral_norm(nn.Conv2d(c // 2, c, 4, 2, 1)),  # 28 → 14
            nn.LeakyReLU(0.1),
            spectral_norm(nn.Conv2d(c, c, 3, 1, 1)),
            nn.LeakyReLU(0.1),
            spectral_norm(nn.Conv2d(c, c * 2, 4, 2, 1)),  # 14 → 7
            nn.LeakyReLU(0.1),
            spectral_norm(nn.Conv2d(c * 2, c * 4, 3, 1, 1)),
            nn.LeakyReLU(0.1),
        )
        self.head = spectral_norm(nn.Linear(c * 4, 1))
        self.project = spectral_norm(nn.Embedding(cfg.num_classes, c * 4))

    def forward(self, x: Tensor, label: Tensor | None = None) -> Tensor:
        phi = self.features(x).sum(dim=(2, 3))  # global sum pooling
        return self.head(phi).view(-1) + (self.project(require_label(label)) * phi).sum(dim=1)
