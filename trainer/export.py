"""Generator → ONNX + model card + sample grid, with a torch-vs-ONNX-Runtime parity gate.

The exported graph takes ``z`` (float32 N×dim) and, for conditional models, ``label`` (int64 N),
and returns ``image`` (float32 N×C×H×W) in the card's ``image.value_range``. The batch axis is
dynamic. The exact rewrites of :mod:`trainer.graph_passes` run on the exported graph before the
gate, so the gate checks what is served. An export whose ONNX Runtime output differs from torch's
by more than ``PARITY_TOL`` on a fixed batch is refused: nothing is written to the destination.
:func:`optimize_exported` applies the rewrites to a model exported before them, against the same
tolerance.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from service.card import (
    ONNX_FILE,
    SAMPLES_FILE,
    CurvePoints,
    ImageSpec,
    LatentSpec,
    Metric,
    ModelCard,
    OnnxSpec,
    ToneCurve,
    TrainingInfo,
    load_card,
    sha256_file,
    write_card,
)
from service.latents import latents_for

from .data import CLASS_NAMES, load_split, resize_images
from .graph_passes import optimize_model
from .plots import sample_grid
from .recipes import Recipe
from .tone import (
    TONE_SAMPLES,
    TONE_SEGMENTS,
    ToneError,
    append_tone_curve,
    apply_tone_curve,
    fit_label_tone_curves,
    fit_tone_curve,
)
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


def optimize_onnx(path: Path) -> list[str]:
    """Apply the exact graph rewrites to the file in place; returns what was rewritten."""
    model = onnx.load(str(path))
    rewrites = optimize_model(model)
    if rewrites:
        onnx.save(model, str(path))
    return rewrites


def _parity_feeds(z_dim: int, num_classes: int) -> dict[str, np.ndarray]:
    """The fixed parity batch: ``PARITY_BATCH`` latents and, if conditional, labels cycling 0..K−1."""
    feeds = {"z": latents_for(1234, PARITY_BATCH, z_dim)}
    if num_classes:
        feeds["label"] = np.arange(PARITY_BATCH, dtype=np.int64) % num_classes
    return feeds


def _ort_image(onnx_model: Path | bytes, feeds: dict[str, np.ndarray], output: str = "image") -> np.ndarray:
    source = str(onnx_model) if isinstance(onnx_model, Path) else onnx_model
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    out: np.ndarray = session.run([output], feeds)[0]
    return out


def parity(generator: nn.Module, recipe: Recipe, onnx_path: Path) -> float:
    """Max |torch − ORT| over a fixed batch of ``PARITY_BATCH`` (z, label) pairs."""
    feeds = _parity_feeds(recipe.z_dim, recipe.num_classes)
    labels = feeds.get("label")
    with torch.no_grad():
        expected = generator.eval()(
            torch.from_numpy(feeds["z"]), torch.from_numpy(labels) if labels is not None else None
        ).numpy()
    got = _ort_image(onnx_path, feeds)
    if got.shape != expected.shape:
        raise ExportError(f"ONNX output shape {got.shape} != torch {expected.shape}")
    return float(np.max(np.abs(got - expected)))


def optimize_exported(model_dir: Path) -> list[str]:
    """Apply the graph rewrites to an already exported model, in place, behind the parity gate.

    The rewritten graph must reproduce the one it replaces (ORT against ORT, ``PARITY_TOL``); the
    file is replaced atomically and the card's digest and ``onnx.rewrites`` follow it. Returns the
    rewrites made (none: nothing is written, so running it twice is harmless).
    """
    card = verify_export(model_dir)
    onnx_path = model_dir / card.onnx.file
    model = onnx.load(str(onnx_path))
    rewrites = optimize_model(model)
    if not rewrites:
        return []
    rewritten = model.SerializeToString()
    spec = card.onnx
    feeds = _card_parity_feeds(card)
    diff = _max_diff(_ort_image(onnx_path, feeds, spec.output), _ort_image(rewritten, feeds, spec.output))
    if not diff <= PARITY_TOL:
        raise ExportError(f"{model_dir.name}: the rewritten graph differs by {diff:.2e} > {PARITY_TOL:.0e}")
    new_card = card.model_copy(
        update={
            "onnx": spec.model_copy(
                update={
                    "sha256": hashlib.sha256(rewritten).hexdigest(),
                    "rewrites": [*spec.rewrites, *rewrites],
                }
            )
        }
    )
    _replace_graph(model_dir, rewritten, new_card)
    log.info("%s: %s (max |before - after| = %.2e)", model_dir.name, "; ".join(rewrites), diff)
    return rewrites


def _replace_graph(model_dir: Path, graph: bytes, card: ModelCard) -> None:
    onnx_path = model_dir / card.onnx.file
    staged = onnx_path.with_name(f".{onnx_path.name}.rewritten")
    staged.write_bytes(graph)
    # Everything is computed before the file is replaced, so the window in which the file and its
    # card's digest disagree (the registry would refuse the model) is one small card write.
    os.replace(staged, onnx_path)
    write_card(card, model_dir)


def _card_feeds(card: ModelCard, z: np.ndarray, labels: np.ndarray | None) -> dict[str, np.ndarray]:
    feeds = {card.onnx.z_input: z}
    if card.onnx.label_input is not None and labels is not None:
        feeds[card.onnx.label_input] = labels
    return feeds


def _card_parity_feeds(card: ModelCard) -> dict[str, np.ndarray]:
    """The fixed parity batch, under the card's input names."""
    generic = _parity_feeds(card.latent.dim, card.num_classes)
    return _card_feeds(card, generic["z"], generic.get("label"))


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Max |a − b|; infinite when the shapes differ."""
    return float(np.max(np.abs(a - b))) if a.shape == b.shape else float("inf")


def _fit_curve(
    card: ModelCard,
    session: ort.InferenceSession,
    data_dir: Path | None,
    n: int,
    segments: int,
    seed: int | None,
    per_label: bool,
) -> ToneCurve:
    """The curve(s) for ``n`` images of ``session``'s graph, drawn with the training seed (or
    ``seed``), against the training split of the card's dataset: one per label if ``per_label``."""
    seed = seed if seed is not None else (card.training.seed if card.training else 0)
    labels = np.arange(n, dtype=np.int64) % card.num_classes if card.conditional else None
    feeds = _card_feeds(card, latents_for(seed, n, card.latent.dim), labels)
    generated = session.run([card.onnx.output], feeds)[0]
    split = load_split(card.dataset, "train", data_dir)  # type: ignore[arg-type]
    real = split.images
    if real.shape[-1] != card.image.width:
        real = resize_images(real[:, None] if real.ndim == 3 else real, card.image.width)
    value_range = card.image.value_range
    if per_label and labels is not None:
        curves = fit_label_tone_curves(
            generated, labels, real, split.labels, value_range, card.num_classes, segments
        )
        which = f"one curve per label, each on its class's images ({n // card.num_classes} generated)"
    else:
        curves = [fit_tone_curve(generated, real, value_range, segments)]
        which = "one curve for every label" if card.conditional else "one curve"
    return ToneCurve(
        curves=[CurvePoints(x=x, y=y) for x, y in curves],
        fitted_on=(
            f"{card.dataset} train split ({np.mean(real == 0):.1%} of pixels exact black, "
            f"{np.mean(real == 255):.2%} exact white); {n} generated images, latent seed {seed}; "
            f"{segments} segments between the black and the white point; {which}"
        ),
    )


def calibrate_exported(
    model_dir: Path,
    data_dir: Path | None = None,
    n: int = TONE_SAMPLES,
    segments: int = TONE_SEGMENTS,
    seed: int | None = None,
    per_label: bool = True,
) -> ToneCurve:
    """Append a tone curve fitted to the training split (:mod:`trainer.tone`), in place.

    The curve is fitted on ``n`` images drawn with the training seed (or ``seed``), never the
    evaluator's latents; a conditional model gets one per label unless ``per_label`` is False.
    The new graph must equal the curve applied to the old graph's output within ``PARITY_TOL``; the
    card gains ``onnx.tone_curve`` and ``tone_curve`` among its hyperparameters and drops its
    metrics (they measured the old graph: run the evaluator again), and the sample grid is redrawn.
    """
    if n < 1:
        raise ExportError(f"a tone curve needs at least one generated image to fit on, got n={n}")
    card = verify_export(model_dir)
    if card.onnx.tone_curve is not None:
        raise ExportError(
            f"{model_dir.name}: already ends with a tone curve ({card.onnx.tone_curve.fitted_on})"
        )
    if card.dataset not in CLASS_NAMES:
        raise ExportError(f"{model_dir.name}: no training split to fit a tone curve on ({card.dataset!r})")
    if per_label and card.conditional and n < card.num_classes:
        raise ExportError(f"one curve per label needs n ≥ {card.num_classes} images to fit on, got n={n}")
    onnx_path = model_dir / card.onnx.file
    before = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    curve = _fit_curve(card, before, data_dir, n, segments, seed, per_label)
    points = [(c.x, c.y) for c in curve.curves]
    model = onnx.load(str(onnx_path))
    try:
        append_tone_curve(model, card.onnx.output, points, card.onnx.label_input)
    except ToneError as e:
        raise ExportError(f"{model_dir.name}: {e}") from e
    graph = model.SerializeToString()
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    feeds = _card_parity_feeds(card)
    expected = apply_tone_curve(
        before.run([card.onnx.output], feeds)[0], points, feeds.get(card.onnx.label_input or "")
    )
    diff = _max_diff(session.run([card.onnx.output], feeds)[0], expected)
    if not diff <= PARITY_TOL:
        raise ExportError(
            f"{model_dir.name}: the graph with its curve differs by {diff:.2e} > {PARITY_TOL:.0e}"
        )

    training = card.training
    if training is not None:
        training = training.model_copy(
            update={"hyperparameters": {**training.hyperparameters, "tone_curve": True}}
        )
    new_card = card.model_copy(
        update={
            "onnx": card.onnx.model_copy(
                update={"sha256": hashlib.sha256(graph).hexdigest(), "tone_curve": curve}
            ),
            "training": training,
            "metrics": [],
        }
    )

    def generate(z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        out: np.ndarray = session.run([card.onnx.output], _card_feeds(card, z, labels))[0]
        return out

    grid = model_dir / f".new-{SAMPLES_FILE}"
    try:
        sample_grid(generate, card.latent.dim, card.num_classes, card.image.value_range, grid)
        _replace_graph(model_dir, graph, new_card)
        os.replace(grid, model_dir / SAMPLES_FILE)
    finally:
        grid.unlink(missing_ok=True)  # only there when something above failed
    log.info(
        "%s: %d tone curve(s), %d points (max |expected - ORT| = %.2e)",
        model_dir.name,
        len(points),
        sum(len(x) for x, _ in points),
        diff,
    )
    return curve


def export_checkpoint(
    checkpoint: Path,
    out_root: Path,
    name: str | None = None,
    metrics: list[Metric] | None = None,
    data_dir: Path | None = None,
) -> Path:
    """Export a checkpoint to ``out_root/<name>/`` (model.onnx, model.json, samples.png), with
    a tone curve fitted to the training split (read from ``data_dir``) where the recipe asks."""
    generator, recipe, ckpt = generator_from_checkpoint(checkpoint)
    name = name or recipe.name
    dest = out_root / name
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=out_root if out_root.exists() else None) as tmp:
        stage = Path(tmp)
        onnx_path = stage / ONNX_FILE
        export_onnx(generator, recipe, onnx_path)
        rewrites = optimize_onnx(onnx_path)
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
        card = build_card(recipe, ckpt, name, onnx_path, metrics or [], rewrites)
        write_card(card, stage)
        if recipe.tone_curve:
            calibrate_exported(stage, data_dir)
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
    recipe: Recipe,
    ckpt: dict[str, Any],
    name: str,
    onnx_path: Path,
    metrics: list[Metric],
    rewrites: list[str] | None = None,
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
            rewrites=rewrites or [],
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
            # Runs from before devices were recorded all trained on the CPU.
            device=", ".join(state.get("devices") or ["cpu"]),
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
