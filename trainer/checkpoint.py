"""The checkpoint format: what a run writes, how it is read back, and the generator it holds.

A checkpoint is a ``torch.save`` dict. Its generator part (all a per-epoch snapshot in
``epochs/epoch_NNN.pt`` keeps) names the recipe, the overrides the data implied (classes of a
folder), the network config (``net``), the generator's weights (and their EMA), the run state,
seed and library versions; ``checkpoint.pt`` adds what resuming needs (discriminator, optimisers,
random states). The stored network config rebuilds the same networks after the recipe's settings
change. Checkpoints written before it was stored (no ``format`` key) take the registered recipe's.
"""

from __future__ import annotations

import pickle
import platform
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.torch_version import TorchVersion

from .nets.build import config_from_dict, config_to_dict
from .nets.cvae import CVAE
from .recipes import Recipe, get_recipe

CHECKPOINT = "checkpoint.pt"
EPOCHS_DIR = "epochs"  # per-epoch generator snapshots
FORMAT = 2  # 1 (no key): no network config stored


def library_versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    versions = {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "numpy": np.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    if torch.version.cuda and torch.cuda.is_available():
        versions["cuda"] = torch.version.cuda
    return versions


def generator_part(
    recipe: Recipe,
    overrides: dict[str, Any],
    model: nn.Module,
    ema: nn.Module | None,
    state: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """What a per-epoch snapshot holds: all that rebuilds and describes the generator."""
    return {
        "format": FORMAT,
        "recipe": recipe.name,
        "overrides": overrides,
        "net": config_to_dict(recipe.net),
        "model": model.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "state": state,
        "seed": seed,
        "libraries": library_versions(),
    }


def save_checkpoint(obj: dict[str, Any], path: Path) -> None:
    """Written beside ``path`` and renamed over it: a killed run never leaves half a file."""
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Tensors and plain data only (``weights_only``): reading a checkpoint from elsewhere runs no
    code of its. ``TorchVersion``, a ``str``, is how earlier checkpoints stored torch's version."""
    with torch.serialization.safe_globals([TorchVersion]):
        ckpt: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return ckpt


def checkpoint_recipe(ckpt: dict[str, Any], recipe: Recipe | None = None) -> Recipe:
    """The recipe a checkpoint was trained with: ``recipe`` (default: the registered one of its
    name) with the data's overrides and, where stored, the checkpoint's own network config."""
    if ckpt.get("format", 1) > FORMAT:
        raise ValueError(f"checkpoint format {ckpt['format']} is newer than this trainer reads ({FORMAT})")
    recipe = (recipe or get_recipe(ckpt["recipe"])).with_overrides(ckpt.get("overrides"))
    if ckpt.get("net") is not None:
        recipe = replace(recipe, net=config_from_dict(ckpt["net"]))
    return recipe


# What ``export`` says of a file that is not one of its checkpoints (one line, then the way out).
NOT_CONDGEN = (
    "{path} is not a condgen checkpoint: expected the dict `python -m trainer train` writes "
    "(keys 'recipe', 'net', 'model'), found {found}.\n"
    "To serve a generator trained elsewhere (ONNX, TorchScript, or a PyTorch class and its "
    "state_dict), use `python -m trainer import SOURCE --name NAME`."
)


def _describe(obj: object) -> str:
    if isinstance(obj, dict):
        keys = ", ".join(repr(k) for k in list(obj)[:4])
        more = f" and {len(obj) - 4} more" if len(obj) > 4 else ""
        return f"a dict with keys {keys}{more}" if obj else "an empty dict"
    return f"a {type(obj).__module__}.{type(obj).__qualname__}"


def load_condgen_checkpoint(path: Path) -> dict[str, Any]:
    """:func:`load_checkpoint`, refusing with a pointer to ``trainer import`` anything else."""
    try:
        with warnings.catch_warnings():
            # A TorchScript file is loaded anyway (and refused below): torch's note on it is noise.
            warnings.filterwarnings("ignore", message=".*TorchScript archive")
            ckpt: object = load_checkpoint(path)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        found = f"no torch.save file ({first[:80]})"
        if first.startswith("Weights only load failed"):
            found = (
                "a torch.save file holding more than tensors and plain data, left unread (it could run code)"
            )
        raise ValueError(NOT_CONDGEN.format(path=path, found=found)) from None
    if not isinstance(ckpt, dict) or "recipe" not in ckpt or "model" not in ckpt:
        raise ValueError(NOT_CONDGEN.format(path=path, found=_describe(ckpt)))
    return ckpt


def generator_from_checkpoint(path: Path) -> tuple[nn.Module, Recipe, dict[str, Any]]:
    """Rebuild the generator a checkpoint holds (its EMA weights when the recipe keeps them)."""
    ckpt = load_condgen_checkpoint(path)
    recipe = checkpoint_recipe(ckpt)
    model, _ = recipe.build()
    model.load_state_dict(ckpt["model"])
    if ckpt.get("ema") is not None:
        model.load_state_dict(ckpt["ema"])
    generator = model.decoder if isinstance(model, CVAE) else model
    return generator.eval(), recipe, ckpt
