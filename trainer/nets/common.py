"""Small building blocks shared by the families."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class OneHot(nn.Module):
    """Label ids → one-hot rows, as a fixed-weight lookup (exports to a plain ONNX Gather)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("eye", torch.eye(num_classes), persistent=False)
        self.num_classes = num_classes

    def forward(self, label: Tensor) -> Tensor:
        return self.get_buffer("eye")[label]


class SaturatingTanh(nn.Module):
    """``clamp(gain · tanh(x), -1, 1)``: a tanh output that reaches ±1 at a finite input.

    Real MNIST is mostly exact 0 background and exact 255 ink. A plain tanh gets there only as its
    input runs off to ±∞, with a gradient (1 - y²) that fades on the way: at 1/255 above black it
    is 0.016 of its mid-range value, so the discriminator's push against faint background dust
    barely reaches the generator. With a gain above 1 the output saturates where tanh still has
    slope (gain 1.1: at |x| = 1.52, slope 0.17); gain 1 is the plain tanh.
    """

    def __init__(self, gain: float) -> None:
        super().__init__()
        if gain < 1.0:
            raise ValueError(f"gain must be at least 1, got {gain}")
        self.gain = gain

    def forward(self, x: Tensor) -> Tensor:
        y = torch.tanh(x)
        return y if self.gain == 1.0 else (self.gain * y).clamp(-1.0, 1.0)


def init_dcgan(module: nn.Module) -> None:
    """DCGAN initialisation (Radford et al. 2015): conv weights N(0, 0.02), BN gains N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def require_label(label: Tensor | None) -> Tensor:
    if label is None:
        raise ValueError("this model is conditional: pass a label tensor")
    return label
