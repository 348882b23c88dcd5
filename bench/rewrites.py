"""The float32 graph rewrites against the graphs they replaced: raw limit and pixels, per model.

The exported graphs carry rewrites (``trainer/graph_passes.py``, exact, and float16 weight
storage, gated on pixels; each card lists its ``rewrites``). Their baseline is the zoo as committed
at :data:`BASELINE_COMMIT`, the last commit before the first rewrite: each model's ``model.onnx``
and card from then are read out of git into a scratch directory (a checkout without that commit,
such as a shallow clone, fails the whole run in one line). A model trained again since then has
no baseline (its training record differs) and is reported as such. Per model, in one process with
one intra-op thread:

- the raw limit of both graphs, alternated and timed in thread CPU time (:mod:`bench.graph_ratio`);
- how many uint8 pixels of ``images`` outputs (the same latents and labels) lie within one level
  of the baseline's.

``python -m bench.rewrites cdcgan-mnist cgan-fashion-bce-10``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.graph_ratio import RatioConfig, measure
from service.card import ModelCard, load_card
from service.config import Settings
from service.runtime import OrtRunner

# The zoo before the first graph rewrite (d0f4f1b stored the zoo with the passes applied).
BASELINE_COMMIT = "82f16b4"
# Images per model behind the pixel agreement: 784,000 pixels for a 28×28 model.
AGREEMENT_IMAGES = 1000
AGREEMENT_BATCH = 100


def check_commit(repo: Path, commit: str) -> None:
    """Raise ValueError unless ``repo``'s history holds ``commit``."""
    found = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True, check=False
    )
    if found.returncode != 0:
        words = found.stderr.decode(errors="replace").strip() or "not found"
        raise ValueError(f"the baseline commit {commit} is not in {repo}'s history ({words})")


def baseline(repo: Path, commit: str, model: str, dest: Path) -> Path | None:
    """``exported/<model>`` as committed at ``commit``, written under ``dest``; None if it had none."""
    out = dest / model
    out.mkdir(parents=True, exist_ok=True)
    for name in ("model.onnx", "model.json"):
        shown = subprocess.run(
            ["git", "-C", str(repo), "show", f"{commit}:exported/{model}/{name}"],
            capture_output=True,
            check=False,
        )
        if shown.returncode != 0:
            return None
        (out / name).write_bytes(shown.stdout)
    return out


def same_training(before: ModelCard, now: ModelCard) -> bool:
    """The same trained weights: the training records (steps, seconds, seed) agree."""
    a, b = before.training, now.training
    if a is None or b is None:
        return False
    return (a.steps, a.seconds, a.seed, a.epochs) == (b.steps, b.seconds, b.seed, b.epochs)


def _runner(model_dir: Path, card: ModelCard) -> OrtRunner:
    settings = Settings(providers=["CPUExecutionProvider"], intra_op_threads=1, warmup=False)
    return OrtRunner.load(model_dir, card, settings)


def pixel_agreement(before_dir: Path, now_dir: Path, images: int = AGREEMENT_IMAGES) -> dict[str, Any]:
    """Share of uint8 pixels within one level of the baseline's, and the largest difference."""
    before_card, now_card = load_card(before_dir), load_card(now_dir)
    before, now = _runner(before_dir, before_card), _runner(now_dir, now_card)
    rng = np.random.default_rng(0)
    within = total = 0
    worst = 0
    for start in range(0, images, AGREEMENT_BATCH):
        rows = min(AGREEMENT_BATCH, images - start)
        z = rng.standard_normal((rows, now_card.latent.dim)).astype(np.float32)
        labels = None
        if now_card.conditional:
            labels = rng.integers(0, now_card.num_classes, rows).astype(np.int64)
        diff = np.abs(before.run(z, labels).astype(np.int16) - now.run(z, labels).astype(np.int16))
        within += int((diff <= 1).sum())
        total += diff.size
        worst = max(worst, int(diff.max()))
    return {"images": images, "pixels": total, "within_one_level": within / total, "max_level_diff": worst}


def compare(
    repo: Path, models_dir: Path, model: str, commit: str, scratch: Path, timing: RatioConfig | None = None
) -> dict[str, Any]:
    now_dir = models_dir / model
    now_card = load_card(now_dir)
    row: dict[str, Any] = {"model": model, "commit": commit, "rewrites": list(now_card.onnx.rewrites)}
    before_dir = baseline(repo, commit, model, scratch)
    if before_dir is None:
        return {**row, "baseline": f"not in the zoo at {commit}"}
    if not same_training(load_card(before_dir), now_card):
        return {**row, "baseline": f"trained again since {commit}"}
    speed = measure([before_dir, now_dir], timing or RatioConfig())
    agreement = pixel_agreement(before_dir, now_dir)
    return {**row, "baseline": "ok", "graphs": speed["graphs"], "agreement": agreement}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rewrites", description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="model names under --models-dir")
    parser.add_argument("--models-dir", type=Path, default=Path("exported"))
    parser.add_argument("--repo", type=Path, default=Path("."), help="the git checkout holding the baseline")
    parser.add_argument("--commit", default=BASELINE_COMMIT)
    args = parser.parse_args(argv)
    try:
        check_commit(args.repo, args.commit)
    except ValueError as exc:
        parser.exit(2, f"{exc}\n")
    rows = []
    with tempfile.TemporaryDirectory(prefix="condgen-rewrites-") as scratch:
        for model in args.models:
            try:
                rows.append(compare(args.repo, args.models_dir, model, args.commit, Path(scratch)))
            except Exception as exc:  # one model that does not load must not cost the others' rows
                rows.append(
                    {"model": model, "commit": args.commit, "rewrites": [], "baseline": f"failed: {exc}"}
                )
    sys.stdout.write(json.dumps({"commit": args.commit, "models": rows}) + "\n")


if __name__ == "__main__":
    main()
