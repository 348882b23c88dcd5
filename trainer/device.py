"""Which torch device the trainer computes on: ``auto`` (CUDA when torch sees one), ``cpu``, ``cuda[:N]``."""

from __future__ import annotations

import torch

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def resolve_device(name: str = "auto") -> torch.device:
    """The device ``name`` stands for; a CUDA device torch cannot see is a ValueError, not a fallback.

    A run that asked for a GPU and quietly trained on the CPU would take hours where minutes were
    planned, so only ``auto`` falls back.
    """
    choice = name.strip().lower()
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(choice)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {name!r}: choose {DEVICE_CHOICES}") from exc
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ValueError(f"unsupported device {name!r}: choose {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        raise ValueError(
            f"device {name!r}: this torch ({torch.__version__}) sees no CUDA device; "
            "use --device cpu, or a CUDA build of torch on a machine with a GPU"
        )
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise ValueError(f"device {name!r}: torch sees {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    return device


def describe(device: torch.device) -> str:
    """What a card records: ``cpu``, or ``cuda`` with the GPU's name (``cuda (NVIDIA H100 80GB HBM3)``)."""
    if device.type != "cuda":
        return device.type
    return f"cuda ({torch.cuda.get_device_name(device)})"


def configure(device: torch.device) -> None:
    """Speed settings for training on ``device``: cuDNN picks kernels per shape (the shapes are
    fixed per recipe) and float32 matrix products may use TF32, as GAN training tolerates."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
