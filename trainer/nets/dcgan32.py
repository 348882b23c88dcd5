"""``dcgan-mnist`` and ``lsgan-mnist``: the 32×32 convolutional GAN (unconditional).

Generator: Linear → 64×8×8 → (upsample, Conv, BN, LeakyReLU) ×2 → Conv → tanh, optionally with a
gain and a clamp (:class:`SaturatingTanh`). Discriminator: four strided Conv blocks with LeakyReLU
and Dropout2d (BN after the first) → one score. The LSGAN variant is the same network with a
least-squares loss; neither applies a sigmoid in the network (the BCE loss applies it).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from .common import SaturatingTanh, init_dcgan


@dataclass(frozen=True)
class DCGAN32Config:
    z_dim: int = 100
    channels: int = 1
    image_size: int = 32
    bn_momentum: float = 0.2  # Keras momentum 0.8
    dropout: float = 0.25
    width: int = 64  # generator channels after the projection; halves once more before the output
    output_gain: float = 1.0  # SaturatingTanh gain; 1 is the plain tanh


class DCGAN32Generator(nn.Module):
    def __init__(self, cfg: DCGAN32Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.init = cfg.image_size // 4
        w = cfg.width
        self.fc = nn.Linear(cfg.z_dim, w * self.init * self.init)
        self.net = nn.Sequential(
            nn.BatchNorm2d(w),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(w, w, 3, 1, 1),
            nn.BatchNorm2d(w, momentum=cfg.bn_momentum),
            nn.LeakyReLU(0.2),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(w, w // 2, 3, 1, 1),
            nn.BatchNorm2d(w // 2, momentum=cfg.bn_momentum),
            nn.LeakyReLU(0.2),
            nn.Conv2d(w // 2, cfg.channels, 3, 1, 1),
            SaturatingTanh(cfg.output_gain),
        )
        init_dcgan(self)

    def forward(self, z: Tensor, label: Tensor | None = None) -> Tensor:
        return self.net(self.fc(z).unflatten(1, (self.cfg.width, self.init, self.init)))


class DCGAN32Discriminator(nn.Module):
    def __init__(self, cfg: DCGAN32Config) -> None:
        super().__init__()

        def block(cin: int, cout: int, bn: bool) -> list[nn.Module]:
            layers: list[nn.Module] = [
                nn.Conv2d(cin, cout, 3, 2, 1),
                nn.LeakyReLU(0.2),
                nn.Dropout2d(cfg.dropout),
            ]
            if bn:
                layers.append(nn.BatchNorm2d(cout, momentum=cfg.bn_momentum))
            return layers

        self.net = nn.Sequential(
            *block(cfg.channels, 16, bn=False),
            *block(16, 32, bn=True),
            *block(32, 64, bn=True),
            *block(64, 128, bn=True),
            nn.Flatten(),
            nn.Linear(128 * (cfg.image_size // 16) ** 2, 1),
        )
        init_dcgan(self)

    def forward(self, x: Tensor, label: Tensor | None = None) -> Tensor:
        return self.net(x).view(-1)
