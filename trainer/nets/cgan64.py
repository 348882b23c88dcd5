"""``cgan64-folder``: the 64×64 conditional GAN (Mirza & Osindero 2014 on the DCGAN64 networks).

The class (one combination of attributes, see :mod:`trainer.attributes`) enters both networks as a
one-hot vector: concatenated to z in the generator (z ⊕ one-hot as a 1×1 map), and as
``num_classes`` constant 64×64 maps beside the image in the critic, so every critic filter sees
the label at every position. Both one-hots are fixed lookups, not learned embeddings: with
combinations of binary attributes the classes have no more structure to learn than their ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .common import OneHot, init_dcgan, require_label
from .dcgan64 import IMAGE_SIZE, DCGAN64Config, critic_trunk, generator_trunk


@dataclass(frozen=True)
class CGAN64Config(DCGAN64Config):
    num_classes: int = 2  # 2^k for k attributes; the recipe sets it from the data


class CGAN64Generator(nn.Module):
    def __init__(self, cfg: CGAN64Config) -> None:
        super().__init__()
        if cfg.num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {cfg.num_classes}")
        self.cfg = cfg
        self.one_hot = OneHot(cfg.num_classes)
        self.net = generator_trunk(cfg.z_dim + cfg.num_classes, cfg)
        init_dcgan(self)

    def forward(self, z: Tensor, label: Tensor | None = None) -> Tensor:
        h = torch.cat([z, self.one_hot(require_label(label))], dim=1)
        out: Tensor = self.net(h[:, :, None, None])
        return out


class CGAN64Discriminator(nn.Module):
    def __init__(self, cfg: CGAN64Config) -> None:
        super().__init__()
        if cfg.num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {cfg.num_classes}")
        self.one_hot = OneHot(cfg.num_classes)
        self.net = critic_trunk(cfg.channels + cfg.num_classes, cfg)
        init_dcgan(self)

    def forward(self, x: Tensor, label: Tensor | None = None) -> Tensor:
        onehot = self.one_hot(require_label(label))
        maps = onehot[:, :, None, None].expand(-1, -1, IMAGE_SIZE, IMAGE_SIZE)
        return self.net(torch.cat([x, maps], dim=1)).view(-1)
