"""Score exported generators the way the service runs them, and write the results into their cards.

``python -m trainer evaluate score <model|all>`` loads ``exported/<name>/model.onnx`` in ONNX Runtime,
draws z with :func:`service.latents.latents_for` (seed ``EVAL_SEED``, indices 0..N−1) and, for
conditional models, labels ``i mod classes`` (balanced), maps the output to uint8 with the
service's own :func:`service.runtime.to_uint8`, and measures against the dataset's test split
(:mod:`trainer.eval_data`: MNIST's and FashionMNIST's IDX test split, or the held-out folder of a
64×64 image-folder dataset, ``data/lego-test`` or ``data/faces-test``):

* ``fid_inception``: FID in Inception-v3 pool3 space (:mod:`trainer.fid`), N generated images
  vs the first ``real_n`` test images, whose statistics are cached;
* with the domain classifier (:mod:`trainer.classifier`, :mod:`trainer.folder_classifier`) and
  its penultimate features:
  ``label_accuracy`` (conditional models), ``fid_classifier``, ``intra_fid_classifier`` (mean of
  per-class FIDs), ``precision`` and ``recall`` (k-NN manifolds, k = 5) and ``z_diversity``.

Every :class:`~service.card.Metric` names its extractor, N and the reference set. Only
``model.json`` is rewritten (atomically, other metrics kept); the ONNX file is never touched and
its digest is checked against the card before and after. The same figures for real training
images vs the test split (the reference row a generator is compared with) come from
:func:`reference_metrics`; :mod:`trainer.quality_doc` renders both into ``docs/quality.md``, and
:mod:`trainer.curves` scores the generator kept after every epoch.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from service.card import (
    CARD_FILE,
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
from .data import LabeledImages, resize_images
from .eval_data import EVALUATED_DATASETS, Judge, held_out, is_folder, load_judge, training_sample

if TYPE_CHECKING:
    from .fid import FeatureExtractor

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
    real, reference = held_out(dataset, cfg.data_dir, cfg.real_n, first=True)
    if cfg.real_n > len(real):
        raise EvaluationError(f"--real-n {cfg.real_n} exceeds the {len(real)} {dataset} test images")
    size, native = images.shape[-1], real.images.shape[-1]
    stats_key = real_stats_key(dataset, "test", cfg.real_n, key, size=None if size == native else size)
    real_stats = cached_stats(
        stats_key, lambda: feats(resize_images(real.images, size), desc=f"{dataset} test")
    )
    gen_stats = GaussianStats.of(feats(images, desc="generated"))
    value = fid_from_stats(gen_stats, real_stats)
    colour = "gray tiled to RGB" if images.shape[1] == 1 else "RGB"
    notes = (
        f"{len(images)} generated vs {cfg.real_n} real; {colour}, TF1 bilinear resize {size}→299, (x−128)/128"
    )
    if resampled := _resampling_note(size, native):
        notes = f"{notes}; {resampled}"
    return Metric(
        name=INCEPTION_METRIC,
        value=round(value, 3),
        n_samples=len(images),
        feature_extractor=feats.name,
        reference=reference,
        notes=notes,
    )


_REAL_FEATURES: dict[tuple[str, str, int, int, int], np.ndarray] = {}


def _real_features(judge: Judge, real: LabeledImages, size: int) -> np.ndarray:
    """The judge's features of the real set seen through a ``size``-pixel model's resampling."""
    from .classifier import predict, to_classifier_size

    # The same for every model of one size scored in one process (`all`); a model of another
    # size sees the real images through its own resampling.
    memo_key = (judge.name, real.source, len(real), int(real.labels[:64].sum()), size)
    if memo_key not in _REAL_FEATURES:
        _REAL_FEATURES.clear()
        real_images = to_classifier_size(resize_images(real.images, size), judge.size)
        _REAL_FEATURES[memo_key] = predict(judge.model, real_images)[1]
    return _REAL_FEATURES[memo_key]


def _per_class(names: list[str], per: dict[int, float], most: int = 10) -> str:
    """Per-class figures by name; past ``most`` classes, the ``most`` worst (highest)."""
    if len(per) <= most:
        return ", ".join(f"{names[c]}: {v:.2f}" for c, v in per.items())
    worst = sorted(per.items(), key=lambda cv: -cv[1])[:most]
    return f"the {most} highest of {len(per)}: " + ", ".join(f"{names[c]}: {v:.2f}" for c, v in worst)


def classifier_metrics(
    images: np.ndarray,
    labels: np.ndarray | None,
    dataset: str,
    cfg: EvalConfig,
    what: str = "generated",
) -> list[Metric]:
    """Label accuracy, classifier-space FID / intra-FID, precision, recall and z-diversity of uint8
    N×C×H×W ``images`` against the held-out split, in the dataset's classifier's feature space."""
    from .classifier import predict, to_classifier_size
    from .fid import fid_from_features
    from .quality import PR_K, diversity_ratio, intra_fid, label_accuracy, precision_recall

    real, ref = held_out(dataset, cfg.data_dir, cfg.classifier_real_n)
    judge = load_judge(dataset, cfg.classifier_root)
    size, native = images.shape[-1], real.images.shape[-1]
    logits, feats = predict(judge.model, to_classifier_size(images, judge.size))
    real_feats = _real_features(judge, real, size)
    n = len(images)

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
            feature_extractor=judge.name,
            reference=ref,
            notes=notes,
        )

    out: list[Metric] = []
    if labels is not None:
        share = f"share of {what} images the classifier assigns to the label they were {what} for"
        out.append(metric("label_accuracy", label_accuracy(logits, labels), share))
    out.append(metric("fid_classifier", fid_from_features(feats, real_feats)))
    if labels is not None:
        mean, per = intra_fid(feats, labels, real_feats, real.labels)
        detail = _per_class(judge.class_names, per)
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


def check_labels(card: ModelCard, cfg: EvalConfig) -> None:
    """A conditional model is judged only by a classifier of as many classes and, for an image
    folder (class ids from sorted folder names or attribute bits), the same ones in the same order."""
    if not card.conditional or not cfg.n_classifier:
        return
    names = load_judge(card.dataset, cfg.classifier_root).class_names
    labels = list(card.labels or [])
    by_name = is_folder(card.dataset)
    if len(labels) == len(names) and (labels == names or not by_name):
        return
    differ = next((i for i, (a, b) in enumerate(zip(labels, names, strict=False)) if a != b), None)
    where = (
        f": label {differ} is {labels[differ]!r}, not {names[differ]!r}"
        if by_name and differ is not None
        else ""
    )
    raise EvaluationError(
        f"{card.name}: its {len(labels)} labels are not the {len(names)} classes of the "
        f"{card.dataset} classifier{where}"
    )


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
    check_labels(card, cfg)
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
    """``all`` → every exported model with a test split to score against; else the one named, under
    ``root`` or, where ``which`` is itself a model directory (``runs/export64/cdcgan64-lego``), that."""
    if which != "all":
        if (Path(which) / CARD_FILE).is_file() and not (root / which / CARD_FILE).is_file():
            return [Path(which)]
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
    """Every metric for a fixed random N real *training* images (their own labels) vs the test split.

    What a perfect generator would score at the same N: FIDs that are not zero (two finite
    samples), accuracy = the classifier's on training data, diversity ≈ 1.
    """
    train = training_sample(dataset, max(cfg.n_inception, cfg.n_classifier), cfg.seed, cfg.data_dir)
    metrics = evaluate_images(train.images, train.labels, dataset, cfg, what="drawn")
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
