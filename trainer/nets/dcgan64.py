"""``dcgan64-folder`` and ``wgangp64-folder``: the 64×64 convolutional GAN (Radford et al. 2015).

Generator: z (100) as a 1×1 map → ConvTranspose 4×4 to 512×4×4 → (ConvTranspose 4×4 stride 2,
BatchNorm, ReLU) 512→256→128→64 at 8, 16, 32 → ConvTranspose to C×64×64 → tanh.
Critic: (Conv 4×4 stride 2, norm, LeakyReLU 0.2, Dropout) with 64→128→256→512 channels at 32, 16,
8, 4 → Flatten → Linear → one raw score (the loss applies any sigmoid).

The two recipes share these networks and differ in the critic's normalisation: BatchNorm for the
BCE DCGAN, layer norm for WGAN-GP, whose gradient penalty is computed per sample and must not be
coupled to the rest of the batch through batch statistics (Gulrajani et al. 2017, §4). The trunks
take extra input features / channels so :mod:`trainer.nets.cgan64` can add labels beside z and
beside the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from .common import init_dcgan

CriticNorm = Literal["batch", "layer", "none"]
IMAGE_SIZE = 64  # pixels; the strides below fix it (4 · 2⁴)


@dataclass(frozen=True)
class DCGAN64Config:
    z_dim: int = 100
    channels: int = 3
    g_width: int = 64  # generator channels at 32×32; doubles per halving, 512 at 4×4
    d_width: int = 64  # critic channels at 32×32; doubles per halving, 512 at 4×4
    # Keras BatchNormalization(momentum=0.9) keeps 0.9 of the running statistic per step; PyTorch's
    # momentum is the weight of the *new* batch, so the same average is momentum=0.1.
    bn_momentum: float = 0.1
    critic_norm: CriticNorm = "batch"
    dropout: float = 0.3  # critic only, after every block


def generator_trunk(in_features: int, cfg: DCGAN64Config) -> nn.Sequential:
    """in_features×1×1 → channels×64×64 in [-1, 1]."""
    w = cfg.g_width

    def up(cin: int, cout: int, stride: int, padding: int) -> list[nn.Module]:
        return [
            nn.ConvTranspose2d(cin, cout, 4, stride, padding, bias=False),  # BN's shift replaces the bias
            nn.BatchNorm2d(cout, momentum=cfg.bn_momentum),
            nn.ReLU(inplace=True),
        ]

    return nn.Sequential(
        *up(in_features, w * 8, 1, 0),  # 1 → 4
        *up(w * 8, w * 4, 2, 1),  # 4 → 8
        *up(w * 4, w * 2, 2, 1),  # 8 → 16
        *up(w * 2, w, 2, 1),  # 16 → 32
        nn.ConvTranspose2d(w, cfg.channels, 4, 2, 1),  # 32 → 64
        nn.Tanh(),
    )


def _norm(kind: CriticNorm, channels: int, momentum: float) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels, momentum=momentum)
    if kind == "layer":
        # One group = layer norm over (C, H, W) per sample, with per-channel gain and shift, so it
        # does not depend on the spatial size.
        return nn.GroupNorm(1, channels)
    return nn.Identity()


def critic_trunk(in_channels: int, cfg: DCGAN64Config) -> nn.Sequential:
    """in_channels×64×64 → one raw score per sample (N×1)."""
    w = cfg.d_width

    def down(cin: int, cout: int, norm: bool) -> list[nn.Module]:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, 2, 1)]
        if norm:
            layers.append(_norm(cfg.critic_norm, cout, cfg.bn_momentum))
        layers += [nn.LeakyReLU(0.2, inplace=True), nn.Dropout(cfg.dropout)]
        return layers

    return nn.Sequential(
        # No normalisation on the first block (Radford et al.): it sees the raw pixels.
        *down(in_channels, w, norm=False),  # 64 → 32
        *down(w, w * 2, norm=True),  # 32 → 16
        *down(w * 2, w * 4, norm=True),  # 16 → 8
        *down(w * 4, w * 8, norm=True),  # 8 → 4
        nn.Flatten(),
        nn.Linear(w * 8 * 4 * 4, 1),
    )


class DCGAN64Generator(nn.Module):
    def __init__(self, cfg: DCGAN64Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.net = generator_trunk(cfg.z_dim, cfg)
        init_dcgan(self)

    def forward(self, z: Tensor, label: Tensor | None = None) -> Tensor:
        out: Tensor = self.net(z[:, :, None, None])
        return out


class DCGAN64Discriminator(nn.Module):
    def __init__(self, cfg: DCGAN64Config) -> None:
        super().__init__()
        self.net = critic_trunk(cfg.channels, cfg)
        init_dcgan(self)

    def forward(self, x: Tensor, label: Tensor | None = None) -> Tensor:
        return self.net(x).view(-1)
