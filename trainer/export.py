"""Generator → ONNX + model card + sample grid, with a torch-vs-ONNX-Runtime parity gate.

The exported graph takes ``z`` (float32 N×dim) and, for conditional models, ``label`` (int64 N),
and returns ``image`` (float32 N×C×H×W) in the card's ``image.value_range``. The batch axis is
dynamic. An export whose ONNX Runtime output differs from torch's by more than ``PARITY_TOL`` on a
fixed batch is refused: nothing is written to the destination.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from service.card import (
    ONNX_FILE,
    SAMPLES_FILE,
    ImageSpec,
    LatentSpec,
    Metric,
    ModelCard,
    OnnxSpec,
    TrainingInfo,
    load_card,
    sha256_file,
    write_card,
)
from service.latents import latents_for

from .plots import sample_grid
from .recipes import Recipe
from .training import generator_from_checkpoint, library_versions

log = logging.getLogger(__name__)

OPSET = 17
PARITY_TOL = 1e-4  # max |torch − ORT| on the parity batch, in output units
PARITY_BATCH = 32


class ExportError(RuntimeError):
    """The exported graph does not reproduce the torch generator."""


class _Unconditional(nn.Module):
    """Wraps an unconditional generator so the graph has only the ``z`` input."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.generator(z, None)
        return out


def export_onnx(generator: nn.Module, recipe: Recipe, path: Path) -> None:
    generator = generator.eval()
    z = torch.from_numpy(latents_for(0, 2, recipe.z_dim))
    dynamic: dict[str, dict[int, str]] = {"z": {0: "batch"}, "image": {0: "batch"}}
    module: nn.Module
    if recipe.conditional:
        args: tuple[torch.Tensor, ...] = (z, torch.zeros(2, dtype=torch.long))
        names = ["z", "label"]
        dynamic["label"] = {0: "batch"}
        module = generator
    else:
        args, names, module = (z,), ["z"], _Unconditional(generator)
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated upstream but is exact for these small static
        # graphs and exports in well under a second; its warnings are noise here.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=names,
            output_names=["image"],
            dynamic_axes=dynamic,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def parity(generator: nn.Module, recipe: Recipe, onnx_path: Path) -> float:
    """Max |torch − ORT| over a fixed batch of ``PARITY_BATCH`` (z, label) pairs."""
    z = latents_for(1234, PARITY_BATCH, recipe.z_dim)
    feeds: dict[str, np.ndarray] = {"z": z}
    labels = None
    if recipe.conditional:
        labels = np.arange(PARITY_BATCH, dtype=np.int64) % recipe.num_classes
        feeds["label"] = labels
    with torch.no_grad():
        expected = generator.eval()(
            torch.from_numpy(z), torch.from_numpy(labels) if labels is not None else None
        ).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (got,) = session.run(["image"], feeds)
    if got.shape != expected.shape:
        raise ExportError(f"ONNX output shape {got.shape} != torch {expected.shape}")
    return float(np.max(np.abs(got - expected)))


def export_checkpoint(
    checkpoint: Path, out_root: Path, name: str | None = None, metrics: list[Metric] | None = None
) -> Path:
    """Export a checkpoint to ``out_root/<name>/`` (model.onnx, model.json, samples.png)."""
    generator, recipe, ckpt = generator_from_checkpoint(checkpoint)
    name = name or recipe.name
    dest = out_root / name
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=out_root if out_root.exists() else None) as tmp:
        stage = Path(tmp)
        onnx_path = stage / ONNX_FILE
        export_onnx(generator, recipe, onnx_path)
        diff = parity(generator, recipe, onnx_path)
        if not diff <= PARITY_TOL:
            raise ExportError(f"{name}: ONNX Runtime differs from torch by {diff:.2e} > {PARITY_TOL:.0e}")
        log.info("%s: parity max |torch - ORT| = %.2e over %d images", name, diff, PARITY_BATCH)

        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])

        def generate(z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
            feeds: dict[str, np.ndarray] = {"z": z}
            if labels is not None:
                feeds["label"] = labels
            out: np.ndarray = session.run(["image"], feeds)[0]
            return out

        sample_grid(generate, recipe.z_dim, recipe.num_classes, recipe.value_range, stage / SAMPLES_FILE)
        card = build_card(recipe, ckpt, name, onnx_path, metrics or [])
        write_card(card, stage)
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(stage, dest)
        # The staging directory is private (0700); the served copy must be readable by a
        # service running as another user (the container's non-root user, for one).
        dest.chmod(0o755)
    log.info("exported %s → %s", name, dest)
    return dest


def build_card(
    recipe: Recipe, ckpt: dict[str, Any], name: str, onnx_path: Path, metrics: list[Metric]
) -> ModelCard:
    state = ckpt["state"]
    class_names = recipe.class_names if recipe.conditional else None
    if recipe.conditional and class_names is None:
        class_names = [str(i) for i in range(recipe.num_classes)]
    return ModelCard(
        name=name,
        version="1",
        kind=recipe.kind,
        family=recipe.family,
        description=recipe.description,
        reproduces=recipe.reproduces,
        dataset=recipe.dataset,
        image=ImageSpec(
            channels=recipe.channels,  # type: ignore[arg-type]
            height=recipe.image_size,
            width=recipe.image_size,
            value_range=recipe.value_range,
        ),
        latent=LatentSpec(dim=recipe.z_dim),
        labels=class_names,
        onnx=OnnxSpec(
            opset=OPSET,
            label_input="label" if recipe.conditional else None,
            sha256=sha256_file(onnx_path),
        ),
        training=TrainingInfo(
            recipe=recipe.name,
            dataset=recipe.dataset,
            loss=recipe.loss,
            epochs=int(state["epoch"]),
            steps=int(state["step"]),
            batch_size=recipe.batch_size,
            seconds=round(float(state["seconds"]), 1),
            seed=int(ckpt.get("seed", 0)),
            libraries=ckpt.get("libraries") or library_versions(),
            hyperparameters=recipe.hyperparameters(),
        ),
        metrics=metrics,
    )


def verify_export(model_dir: Path) -> ModelCard:
    """Re-read an exported model: card valid, digest matches, graph runs on one batch."""
    card = load_card(model_dir)
    if sha256_file(model_dir / card.onnx.file) != card.onnx.sha256:
        raise ExportError(f"{model_dir}: sha256 of {card.onnx.file} does not match its card")
    return card
