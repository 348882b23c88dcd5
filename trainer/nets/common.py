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
