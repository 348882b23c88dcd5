"""``condgen64-folder`` (``cdcgan64-lego``): the flagship recipe's networks at 64×64.

The same parts as :mod:`trainer.nets.condgen` (class-conditional BatchNorm in every up-block, the
label embedding beside z, a spectrally normalised projection discriminator), with a 4×4 base and
four up-blocks instead of 7×7 and two, and ``channels`` output planes (gray renders or RGB).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from .common import require_label
from .condgen import UpBlock

BASE = 4  # the generator's first map; four doublings make 64


@dataclass(frozen=True)
class CondGen64Config:
    z_dim: int = 64
    num_classes: int = 50  # the recipe sets it from the data's class folders
    channels: int = 1
    embed_dim: int = 32
    g_channels: int = 256  # width at 4×4; halves at every doubling, g_channels/16 at 64×64
    d_channels: int = 32  # width at 32×32; doubles at every halving


class CondGen64Generator(nn.Module):
    def __init__(self, cfg: CondGen64Config) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.g_channels
        self.embed = nn.Embedding(cfg.num_classes, cfg.embed_dim)
        self.fc = nn.Linear(cfg.z_dim + cfg.embed_dim, c * BASE * BASE)
        widths = [c, c // 2, c // 4, c // 8, c // 16]  # 4, 8, 16, 32, 64
        self.blocks = nn.ModuleList(
            UpBlock(cin, cout, cfg.num_classes) for cin, cout in itertools.pairwise(widths)
        )
        self.out_norm = nn.BatchNorm2d(widths[-1])
        self.out = nn.Conv2d(widths[-1], cfg.channels, 3, 1, 1)

    def forward(self, z: Tensor, label: Tensor | None = None) -> Tensor:
        y = require_label(label)
        h = self.fc(torch.cat([z, self.embed(y)], dim=1)).unflatten(1, (self.cfg.g_channels, BASE, BASE))
        for block in self.blocks:
            h = block(h, y)
        return torch.tanh(self.out(torch.relu(self.out_norm(h))))


class CondGen64Discriminator(nn.Module):
    def __init__(self, cfg: CondGen64Config) -> None:
        super().__init__()
        c = cfg.d_channels

        def down(cin: int, cout: int) -> list[nn.Module]:
            return [spectral_norm(nn.Conv2d(cin, cout, 4, 2, 1)), nn.LeakyReLU(0.1)]

        self.features = nn.Sequential(
            spectral_norm(nn.Conv2d(cfg.channels, c // 2, 3, 1, 1)),
            nn.LeakyReLU(0.1),
            *down(c // 2, c),  # 64 → 32
            *down(c, c * 2),  # 32 → 16
            *down(c * 2, c * 4),  # 16 → 8
            *down(c * 4, c * 8),  # 8 → 4
        )
        self.head = spectral_norm(nn.Linear(c * 8, 1))
        self.project = spectral_norm(nn.Embedding(cfg.num_classes, c * 8))

    def forward(self, x: Tensor, label: Tensor | None = None) -> Tensor:
        phi = self.features(x).sum(dim=(2, 3))  # global sum pooling
        return self.head(phi).view(-1) + (self.project(require_label(label)) * phi).sum(dim=1)
