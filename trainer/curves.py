"""Quality against epoch: the generator kept after every epoch (``runs/<recipe>/epochs/``), each
exported and scored like a served model, as ``<name>-curve.json`` and ``-curve.png``."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from service.card import sha256_file

from .evaluate import INCEPTION_METRIC, EvalConfig, OnnxGenerator, evaluate_images
from .recipes import Recipe

log = logging.getLogger(__name__)


def evaluate_checkpoints(
    checkpoints: list[Path], cfg: EvalConfig, out_dir: Path, name: str, append: bool = False
) -> Path:
    """Export each checkpoint to a temporary ONNX file, score it like a served model, and write
    ``out_dir/<name>-curve.json`` and ``-curve.png`` (Inception FID and, beside it, label accuracy
    or, for an unconditional model, classifier FID by epoch; see :func:`curve_panels`).

    Training keeps the generator of every epoch in ``runs/<recipe>/epochs/epoch_NNN.pt``
    (``TrainConfig.keep_epochs``); pass them here in order. With ``append`` the curve's other
    epochs are kept (a run continued later, scored for its new epochs only); an epoch scored
    again replaces its old point.
    """
    from .export import build_card, export_onnx
    from .training import generator_from_checkpoint

    json_path = out_dir / f"{name}-curve.json"
    kept: list[dict[str, object]] = []
    if append and json_path.is_file():
        kept = json.loads(json_path.read_text(encoding="utf-8"))
    points: list[dict[str, object]] = []
    # The last checkpoint's: its aux_start_epoch and the epochs its run was continued at mark the plot.
    recipe: Recipe | None = None
    last_state: dict[str, Any] = {}
    for path in checkpoints:
        generator, recipe, ckpt = generator_from_checkpoint(path)
        with tempfile.TemporaryDirectory(prefix="condgen-eval-") as tmp:
            onnx_path = Path(tmp) / "model.onnx"
            export_onnx(generator, recipe, onnx_path)
            card = build_card(recipe, ckpt, recipe.name, sha256_file(onnx_path), [])
            images, labels = OnnxGenerator(Path(tmp), card).generate(
                max(cfg.n_inception, cfg.n_classifier), cfg.seed
            )
        metrics = evaluate_images(images, labels, card.dataset, cfg)
        state = last_state = ckpt["state"]
        points.append(
            {
                "checkpoint": path.name,
                "epoch": int(state["epoch"]),
                "step": int(state["step"]),
                "metrics": [m.model_dump() for m in metrics],
            }
        )
        log.info("%s epoch %s: %s", name, state["epoch"], ", ".join(f"{m.name}={m.value}" for m in metrics))
    scored = {p["epoch"] for p in points}
    points = sorted(
        [p for p in kept if p["epoch"] not in scored] + points,
        key=lambda p: int(p["epoch"]),  # type: ignore[call-overload]
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(points, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    plot_curve(points, out_dir / f"{name}-curve.png", name, curve_marks(last_state, recipe))
    return json_path


def continuation_marks(state: dict[str, Any], recipe: Recipe | None) -> dict[int, str]:
    """Plot marks for the epochs after which a finished run was trained on (``RunState.continued_at``)."""
    restored = recipe is not None and recipe.lr_decay_epochs > 0
    text = "run continued, rates restored" if restored else "run continued"
    epochs: list[int] = state.get("continued_at", [])
    return dict.fromkeys(epochs, text)


def curve_marks(state: dict[str, Any], recipe: Recipe | None) -> dict[int, str]:
    """Every plot mark of a run: where its auxiliary class term joins and where it was continued
    (:func:`continuation_marks`); both after one epoch share its line, a label each."""
    marks: dict[int, str] = {}
    if recipe is not None and recipe.aux_start_epoch > 0:
        marks[recipe.aux_start_epoch] = "class term joins"
    for epoch, text in continuation_marks(state, recipe).items():
        marks[epoch] = f"{marks[epoch]}\n{text}" if epoch in marks else text
    return marks


def curve_panels(points: list[dict[str, object]]) -> list[tuple[str, str]]:
    """The metrics a curve plots, as (metric, axis label): Inception FID, then label accuracy, or
    classifier FID where no point has a label accuracy (an unconditional model has none to give).
    A metric no point measured gets no panel (both, if neither was measured: they say so)."""
    names = {m["name"] for p in points for m in p["metrics"]}  # type: ignore[attr-defined]
    second = ("label_accuracy", "label accuracy (domain classifier)")
    if "label_accuracy" not in names and "fid_classifier" in names:
        second = ("fid_classifier", "classifier FID (domain classifier)")
    panels = [(INCEPTION_METRIC, "Inception FID"), second]
    return [p for p in panels if p[0] in names] or panels


def plot_curve(
    points: list[dict[str, object]], path: Path, title: str, marks: dict[int, str] | None = None
) -> Path:
    """The :func:`curve_panels` metrics by epoch; ``marks``: epochs after which the recipe changes
    (a dashed line with its label, e.g. where an auxiliary class term joins)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(metric: str) -> tuple[list[int], list[float], int | None, str]:
        xs, ys, n, reference = [], [], None, ""
        for p in points:
            for m in p["metrics"]:  # type: ignore[attr-defined]
                if m["name"] == metric:
                    xs.append(int(p["epoch"]))  # type: ignore[call-overload]
                    ys.append(float(m["value"]))
                    n, reference = int(m["n_samples"]), str(m.get("reference") or "")
        return xs, ys, n, reference

    panels = curve_panels(points)
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), dpi=100, squeeze=False)
    for ax, (metric, label) in zip(axes[0], panels, strict=True):
        xs, ys, n, reference = series(metric)
        ax.plot(xs, ys, marker="o")
        # Each label below the one before: marks a few epochs apart would overprint.
        top = 0.97
        for epoch, text in sorted((marks or {}).items()):
            ax.axvline(epoch + 0.5, color="grey", linestyle="--", linewidth=1)
            ax.annotate(text, (epoch + 0.6, top), xycoords=("data", "axes fraction"), fontsize=8, va="top")
            top -= 0.05 * (text.count("\n") + 1)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        # The real set belongs in the title: an FID is only comparable at equal N on both sides.
        heading = f"{label}\nN={n} generated vs {reference}" if n else f"{label}: not measured"
        ax.set_title(heading, fontsize=10)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
