"""Generator → ONNX + model card + sample grid, with a torch-vs-ONNX-Runtime parity gate.

The exported graph takes ``z`` (float32 N×dim) and, for conditional models, ``label`` (int64 N),
and returns ``image`` (float32 N×C×H×W) in the card's ``image.value_range``. The batch axis is
dynamic. The exact rewrites of :mod:`trainer.graph_passes` run on the exported graph before the
gate, so the gate checks what is served. An export whose ONNX Runtime output differs from torch's
by more than ``PARITY_TOL`` on a fixed batch is refused: nothing is written to the destination.
:func:`optimize_exported` applies the rewrites to a model exported before them, against the same
tolerance; :func:`store_float16` halves an exported model's file (:mod:`trainer.weight_storage`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
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

from .card_graph import PARITY_BATCH, CardGraph, max_diff, parity_batch, pixel_agreement
from .checkpoint import generator_from_checkpoint, library_versions
from .data import CLASS_NAMES, load_split, resize_images
from .graph_passes import optimize_model
from .model_dir import draw_samples, write_model_dir
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
from .weight_storage import (
    AGREEMENT,
    AGREEMENT_ROWS,
    AGREEMENT_SEED,
    FLOAT16_WEIGHTS,
    is_packed,
    pack_float16,
    unpack_float16,
)

log = logging.getLogger(__name__)

OPSET = 17
PARITY_TOL = 1e-4  # max |torch − ORT| on the parity batch, in output units


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


def parity(generator: nn.Module, card: ModelCard, graph: Path | bytes) -> float:
    """Max |torch − ORT| over a fixed batch of ``PARITY_BATCH`` (z, label) pairs."""
    z, labels = parity_batch(card.latent.dim, card.num_classes)
    with torch.no_grad():
        expected = generator.eval()(
            torch.from_numpy(z), torch.from_numpy(labels) if labels is not None else None
        ).numpy()
    got = CardGraph(card, graph)(z, labels)
    if got.shape != expected.shape:
        raise ExportError(f"ONNX output shape {got.shape} != torch {expected.shape}")
    return float(np.max(np.abs(got - expected)))


def optimize_exported(model_dir: Path) -> list[str]:
    """Apply the graph rewrites to an already exported model, in place, behind the parity gate.

    The rewritten graph must reproduce the one it replaces (ORT against ORT, ``PARITY_TOL``); the
    file is replaced atomically and the card's digest and ``onnx.rewrites`` follow it. Returns the
    rewrites made (none: nothing is written, so running it twice is harmless). A graph with float16
    weights is rewritten on its widened weights and packed again, behind the storage gate.
    """
    card = verify_export(model_dir)
    onnx_path = model_dir / card.onnx.file
    model = onnx.load(str(onnx_path))
    packed = unpack_float16(model) > 0
    before = model.SerializeToString()
    rewrites = optimize_model(model)
    if not rewrites:
        return []
    rewritten = model.SerializeToString()
    batch = parity_batch(card.latent.dim, card.num_classes)
    diff = max_diff(CardGraph(card, before)(*batch), CardGraph(card, rewritten)(*batch))
    if not diff <= PARITY_TOL:
        raise ExportError(f"{model_dir.name}: the rewritten graph differs by {diff:.2e} > {PARITY_TOL:.0e}")
    if packed:
        pack_float16(model)
        rewritten = model.SerializeToString()
        _check_storage(card, onnx_path, rewritten)
    _replace_graph(model_dir, rewritten, _with_rewrites(card, rewritten, rewrites))
    log.info("%s: %s (max |before - after| = %.2e)", model_dir.name, "; ".join(rewrites), diff)
    return rewrites


def store_float16(model_dir: Path) -> float | None:
    """Store an exported model's weights as float16 (:mod:`trainer.weight_storage`), in place.

    Returns the share of uint8 pixels within one level of the float32 graph's, or None when nothing
    was stored (stored that way already, or no tensor large enough). Refused (nothing written)
    below ``AGREEMENT``.
    """
    card = verify_export(model_dir)
    onnx_path = model_dir / card.onnx.file
    model = onnx.load(str(onnx_path))
    if is_packed(model):
        return None
    count = pack_float16(model)
    if not count:
        return None
    packed = model.SerializeToString()
    agreement = _check_storage(card, onnx_path, packed)
    size = onnx_path.stat().st_size
    _replace_graph(model_dir, packed, _with_rewrites(card, packed, [f"{FLOAT16_WEIGHTS} ×{count}"]))
    log.info(
        "%s: %d initializers stored as float16, %d → %d bytes, %.4f%% of pixels within one level",
        model_dir.name,
        count,
        size,
        len(packed),
        100 * agreement,
    )
    return agreement


def _check_storage(card: ModelCard, served: Path, packed: bytes) -> float:
    agreement = pixel_agreement(card, served, packed, AGREEMENT_ROWS, seed=AGREEMENT_SEED)
    if agreement < AGREEMENT:
        raise ExportError(
            f"{card.name}: with float16 weights {100 * agreement:.3f}% of pixels stay within one level, "
            f"under the {100 * AGREEMENT:.1f}% required; the float32 graph is kept"
        )
    return agreement


def _with_rewrites(card: ModelCard, graph: bytes, rewrites: list[str]) -> ModelCard:
    """The card of ``graph``: its digest, and ``rewrites`` added to those it went through."""
    spec = card.onnx
    return card.model_copy(
        update={
            "onnx": spec.model_copy(
                update={"sha256": hashlib.sha256(graph).hexdigest(), "rewrites": [*spec.rewrites, *rewrites]}
            )
        }
    )


def _replace_graph(model_dir: Path, graph: bytes, card: ModelCard) -> None:
    onnx_path = model_dir / card.onnx.file
    staged = onnx_path.with_name(f".{onnx_path.name}.rewritten")
    staged.write_bytes(graph)
    # Everything is computed before the file is replaced, so the window in which the file and its
    # card's digest disagree (the registry would refuse the model) is one small card write.
    os.replace(staged, onnx_path)
    write_card(card, model_dir)


def _fit_curve(card: ModelCard, before: CardGraph, fit: ToneFit) -> ToneCurve:
    """The curve(s) for ``fit.n`` images of the graph against the training split of the card's dataset."""
    data_dir, n, segments, seed, per_label = fit.data_dir, fit.n, fit.segments, fit.seed, fit.per_label
    seed = seed if seed is not None else (card.training.seed if card.training else 0)
    labels = np.arange(n, dtype=np.int64) % card.num_classes if card.conditional else None
    generated = before(latents_for(seed, n, card.latent.dim), labels)
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


def _check_calibration(card: ModelCard, n: int, per_label: bool) -> None:
    name = card.name
    if card.onnx.tone_curve is not None:
        raise ExportError(f"{name}: already ends with a tone curve ({card.onnx.tone_curve.fitted_on})")
    if card.dataset not in CLASS_NAMES:
        raise ExportError(f"{name}: no training split to fit a tone curve on ({card.dataset!r})")
    if per_label and card.conditional and n < card.num_classes:
        raise ExportError(f"one curve per label needs n ≥ {card.num_classes} images to fit on, got n={n}")


@dataclass(frozen=True)
class ToneFit:
    """How a tone curve is fitted: on ``n`` images drawn with the training seed (or ``seed``), with
    ``segments`` segments, one curve per label of a conditional model unless ``per_label`` is False."""

    data_dir: Path | None = None
    n: int = TONE_SAMPLES
    segments: int = TONE_SEGMENTS
    seed: int | None = None
    per_label: bool = True


def with_tone_curve(graph: bytes, card: ModelCard, fit: ToneFit) -> tuple[bytes, ModelCard]:
    """``graph`` ended with a tone curve fitted to the training split (:mod:`trainer.tone`), and its card.

    Pure: nothing is read but the training split, nothing written. The new graph must equal the
    curve applied to the old graph's output within ``PARITY_TOL``; the card gains
    ``onnx.tone_curve`` and ``tone_curve`` among its hyperparameters, and drops its metrics (they
    measured the old graph).
    """
    if fit.n < 1:
        raise ExportError(f"a tone curve needs at least one generated image to fit on, got n={fit.n}")
    _check_calibration(card, fit.n, fit.per_label)
    before = CardGraph(card, graph)
    curve = _fit_curve(card, before, fit)
    points = [(c.x, c.y) for c in curve.curves]
    model = onnx.load_from_string(graph)
    try:
        append_tone_curve(model, card.onnx.output, points, card.onnx.label_input)
    except ToneError as e:
        raise ExportError(f"{card.name}: {e}") from e
    curved = model.SerializeToString()
    z, labels = parity_batch(card.latent.dim, card.num_classes)
    expected = apply_tone_curve(before(z, labels), points, labels if card.onnx.label_input else None)
    diff = max_diff(CardGraph(card, curved)(z, labels), expected)
    if not diff <= PARITY_TOL:
        raise ExportError(f"{card.name}: the graph with its curve differs by {diff:.2e} > {PARITY_TOL:.0e}")
    log.info(
        "%s: %d tone curve(s), %d points (max |expected - ORT| = %.2e)",
        card.name,
        len(points),
        sum(len(x) for x, _ in points),
        diff,
    )
    training = card.training
    if training is not None:
        training = training.model_copy(
            update={"hyperparameters": {**training.hyperparameters, "tone_curve": True}}
        )
    onnx_spec = card.onnx.model_copy(
        update={"sha256": hashlib.sha256(curved).hexdigest(), "tone_curve": curve}
    )
    return curved, card.model_copy(update={"onnx": onnx_spec, "training": training, "metrics": []})


def calibrate_exported(
    model_dir: Path,
    data_dir: Path | None = None,
    n: int = TONE_SAMPLES,
    segments: int = TONE_SEGMENTS,
    seed: int | None = None,
    per_label: bool = True,
) -> ToneCurve:
    """Append a tone curve fitted to the training split to an exported model, in place
    (:func:`with_tone_curve`), and redraw its sample grid.

    The curve is fitted on ``n`` images drawn with the training seed (or ``seed``), never the
    evaluator's latents; a conditional model gets one per label unless ``per_label`` is False.
    The card drops its metrics: run the evaluator again.
    """
    if n < 1:
        raise ExportError(f"a tone curve needs at least one generated image to fit on, got n={n}")
    card = verify_export(model_dir)
    fit = ToneFit(data_dir, n, segments, seed, per_label)
    graph, new_card = with_tone_curve((model_dir / card.onnx.file).read_bytes(), card, fit)
    grid = model_dir / f".new-{SAMPLES_FILE}"
    try:
        _samples(CardGraph(new_card, graph), grid)
        _replace_graph(model_dir, graph, new_card)
        os.replace(grid, model_dir / SAMPLES_FILE)
    finally:
        grid.unlink(missing_ok=True)  # only there when something above failed
    assert new_card.onnx.tone_curve is not None
    return new_card.onnx.tone_curve


def _samples(graph: CardGraph, path: Path) -> None:
    draw_samples(graph, path)


def export_checkpoint(
    checkpoint: Path,
    out_root: Path,
    name: str | None = None,
    metrics: list[Metric] | None = None,
    data_dir: Path | None = None,
) -> Path:
    """Export a checkpoint to ``out_root/<name>/`` (model.onnx, model.json, samples.png), with
    a tone curve fitted to the training split (read from ``data_dir``) where the recipe asks.

    The graph and its card are finished in memory (parity-gated, tone curve appended) and the
    directory is written once (:func:`trainer.model_dir.write_model_dir`).
    """
    generator, recipe, ckpt = generator_from_checkpoint(checkpoint)
    name = name or recipe.name
    with tempfile.TemporaryDirectory(prefix=f".{name}-traced-") as tmp:
        traced = Path(tmp) / ONNX_FILE
        export_onnx(generator, recipe, traced)
        rewrites = optimize_onnx(traced)
        graph = traced.read_bytes()
    card = build_card(recipe, ckpt, name, hashlib.sha256(graph).hexdigest(), metrics or [], rewrites)
    diff = parity(generator, card, graph)
    if not diff <= PARITY_TOL:
        raise ExportError(f"{name}: ONNX Runtime differs from torch by {diff:.2e} > {PARITY_TOL:.0e}")
    log.info("%s: parity max |torch - ORT| = %.2e over %d images", name, diff, PARITY_BATCH)
    if recipe.tone_curve:
        graph, card = with_tone_curve(graph, card, ToneFit(data_dir))
    dest = write_model_dir(out_root, graph, card)
    log.info("exported %s → %s", name, dest)
    return dest


def _dataset_words(recipe: Recipe, ckpt: dict[str, Any]) -> tuple[str, str]:
    """The card's dataset name and description: an image folder's as its run recorded them."""
    data = ckpt.get("data") or {}
    if recipe.dataset != "folder" or not data.get("name"):
        return recipe.dataset, recipe.description
    words = data.get("description")
    return str(data["name"]), recipe.description + (f" Data: {words}." if words else "")


def build_card(
    recipe: Recipe,
    ckpt: dict[str, Any],
    name: str,
    sha256: str,
    metrics: list[Metric],
    rewrites: list[str] | None = None,
) -> ModelCard:
    """The card of a graph with digest ``sha256``, exported from checkpoint ``ckpt`` of ``recipe``."""
    state = ckpt["state"]
    dataset, description = _dataset_words(recipe, ckpt)
    class_names = recipe.class_names if recipe.conditional else None
    if recipe.conditional and class_names is None:
        class_names = [str(i) for i in range(recipe.num_classes)]
    return ModelCard(
        name=name,
        version="1",
        kind=recipe.kind,
        family=recipe.family,
        description=description,
        reproduces=recipe.reproduces,
        dataset=dataset,
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
            sha256=sha256,
            rewrites=rewrites or [],
        ),
        training=TrainingInfo(
            recipe=recipe.name,
            dataset=dataset,
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
