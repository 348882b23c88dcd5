"""``gan-mnist`` and ``cgan-mnist``: the fully connected GAN and its one-hot conditional form.

Unconditional: z (100) → 256 → 512 → 1024 → 784, tanh. Conditional: the one-hot label is
concatenated to the noise in the generator and to the flattened image in the discriminator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .common import OneHot, require_label


@dataclass(frozen=True)
class MLPGANConfig:
    z_dim: int = 100
    num_classes: int = 0  # 0 → unconditional
    g_hidden: tuple[int, ...] = (256, 512, 1024)
    d_hidden: tuple[int, ...] = (512, 256)
    dropout: float = 0.3
    bn_momentum: float = 0.2  # Keras' BatchNormalization(momentum=0.8) in PyTorch's convention


class MLPGenerator(nn.Module):
    def __init__(self, cfg: MLPGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.onehot = OneHot(cfg.num_classes) if cfg.num_classes else None
        layers: list[nn.Module] = []
        width = cfg.z_dim + cfg.num_classes
        for i, h in enumerate(cfg.g_hidden):
            layers.append(nn.Linear(width, h))
            if i > 0:  # no normalisation straight after the noise, as in the reference MLP GANs
                layers.append(nn.BatchNorm1d(h, momentum=cfg.bn_momentum))
            layers.append(nn.LeakyReLU(0.2))
            width = h
        layers += [nn.Linear(width, 28 * 28), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor, label: Tensor | None = None) -> Tensor:
        h = z if self.onehot is None else torch.cat([z, self.onehot(require_label(label))], dim=1)
        return self.net(h).view(-1, 1, 28, 28)


class MLPDiscriminator(nn.Module):
    def __init__(self, cfg: MLPGANConfig) -> None:
        super().__init__()
        self.onehot = OneHot(cfg.num_classes) if cfg.num_classes else None
        layers: list[nn.Module] = []
        width = 28 * 28 + cfg.num_classes
        for h in cfg.d_hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2), nn.Dropout(cfg.dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, label: Tensor | None = None) -> Tensor:
        h = x.flatten(1)
        if self.onehot is not None:
            h = torch.cat([h, self.onehot(require_label(label))], dim=1)
        return self.net(h).view(-1)
