"""Domain classifiers for the 64×64 image-folder datasets: LEGO part renders and synthetic faces.

``python -m trainer classifier lego|faces`` trains one on the dataset's training folder and
writes ``trainer/classifiers/<key>.pt`` (≤ 600 KB, committed) and ``<key>.json``: its accuracy,
measured once on the whole held-out folder after training and never used to pick anything. Like
the MNIST classifiers (:mod:`trainer.classifier`) they judge whether a conditional generator drew
the class it was asked for, and their 128-d penultimate layer is the feature space of the
classifier FID, precision/recall and diversity.

Network: the 64×64 image box-averaged to ``input_size`` (32 for both datasets; see ``CONFIGS``),
``stages`` of 3×3 conv + batch norm + ReLU, each stage ending in a 2×2 max-pool, then
global average pooling and FC → 128 (the features) → dropout → FC to the class logits and, for
faces, the auxiliary attribute logits. Global pooling keeps the weights small (a flattened 4×4×96
map into FC 128 alone would be 196k parameters, 0.8 MB). Training: AdamW with a one-cycle
schedule, random shifts and horizontal flips (a mirrored render shows the mirrored part, and none
of the 50 parts comes in left and right versions; faces are symmetric), cross-entropy on the
classes plus binary cross-entropy on the auxiliary attributes.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from service.card import sha256_file

from .classifier import CLASSIFIER_DIR, augment, predict, to_input, weights_path
from .folder_datasets import FolderDataset, FolderSplit, folder_dataset, load_folder_split

log = logging.getLogger(__name__)

MAX_WEIGHTS_BYTES = 600 * 1024  # each committed file; the tracked tree is near its size limit


@dataclass(frozen=True)
class FolderClassifierConfig:
    channels: int
    num_classes: int
    aux_outputs: int = 0  # auxiliary attribute logits after the class logits
    input_size: int = 64  # images are box-averaged down to this first
    stages: tuple[tuple[int, ...], ...] = ((32,), (64,), (64, 96))  # conv widths per stage
    feature_dim: int = 128
    dropout: float = 0.2

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FolderClassifierConfig:
        """Inverse of ``asdict`` (JSON and torch.save turn the stage tuples into lists)."""
        return cls(**{**d, "stages": tuple(tuple(s) for s in d["stages"])})


@dataclass(frozen=True)
class FolderTraining:
    epochs: int
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    shift: int = 4  # augmentation: random translation, pixels at 64×64
    hflip: bool = True
    train_limit: int | None = None  # the first N training images (None: all)
    aux_weight: float = 0.5  # weight of the auxiliary attributes' loss beside the classes'
    seed: int = 0


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class FolderClassifier(nn.Module):
    """uint8-scaled 64×64 images (gray or RGB) → class logits (+ auxiliary attribute logits)."""

    def __init__(self, config: FolderClassifierConfig, image_size: int = 64) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        if image_size != config.input_size:
            layers.append(nn.AvgPool2d(image_size // config.input_size))
        cin = config.channels
        for stage in config.stages:
            for cout in stage:
                layers += _conv(cin, cout)
                cin = cout
            layers.append(nn.MaxPool2d(2))
        self.body = nn.Sequential(
            *layers,
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(cin, config.feature_dim, bias=False),
            nn.BatchNorm1d(config.feature_dim),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(
            nn.Dropout(config.dropout),
            nn.Linear(config.feature_dim, config.num_classes + config.aux_outputs),
        )

    def features(self, x: Tensor) -> Tensor:
        out: Tensor = self.body(x)
        return out

    def outputs(self, features: Tensor) -> Tensor:
        """Class logits, then the auxiliary attribute logits."""
        out: Tensor = self.head(features)
        return out

    def class_logits(self, features: Tensor) -> Tensor:
        return self.outputs(features)[:, : self.config.num_classes]

    def forward(self, x: Tensor) -> Tensor:
        return self.class_logits(self.features(x))


# 32×32 for both: 64×64 scored 42% vs 36% after 4 equal epochs but at 2.4× the time; 15 min is the cap.
CONFIGS: dict[str, FolderClassifierConfig] = {
    "lego": FolderClassifierConfig(
        channels=1, num_classes=50, input_size=32, stages=((32,), (64,), (64, 96))
    ),
    "faces": FolderClassifierConfig(
        channels=3, num_classes=2, aux_outputs=7, input_size=32, stages=((32,), (64,), (64, 96))
    ),
}
TRAINING: dict[str, FolderTraining] = {
    "lego": FolderTraining(epochs=10),
    "faces": FolderTraining(epochs=8, shift=2, train_limit=40_000),
}


def _loss(
    model: FolderClassifier, x: Tensor, y: Tensor, aux: Tensor, aux_weight: float
) -> tuple[Tensor, Tensor]:
    out = model.outputs(model.features(x))
    k = model.config.num_classes
    loss = nn.functional.cross_entropy(out[:, :k], y)
    if model.config.aux_outputs:
        loss = loss + aux_weight * nn.functional.binary_cross_entropy_with_logits(out[:, k:], aux)
    return loss, out[:, :k]


def _fit(model: FolderClassifier, train: FolderSplit, training: FolderTraining, key: str) -> None:
    gen = torch.Generator().manual_seed(training.seed)
    x, y = torch.from_numpy(train.images), torch.from_numpy(train.labels)
    aux = torch.from_numpy(train.aux)
    opt = torch.optim.AdamW(model.parameters(), lr=training.lr, weight_decay=training.weight_decay)
    steps_per_epoch = -(-len(x) // training.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=training.lr, total_steps=training.epochs * steps_per_epoch
    )
    for epoch in range(training.epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        bar = tqdm(range(steps_per_epoch), desc=f"{key} classifier {epoch + 1}/{training.epochs}")
        correct = seen = 0
        for step in bar:
            idx = order[step * training.batch_size : (step + 1) * training.batch_size]
            xb = augment(to_input(x[idx]), training.shift, training.hflip, gen)
            loss, logits = _loss(model, xb, y[idx], aux[idx], training.aux_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            correct += int((logits.argmax(1) == y[idx]).sum())
            seen += len(idx)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}", train_acc=f"{correct / seen:.4f}")
        log.info("%s classifier epoch %d: train accuracy %.4f (augmented)", key, epoch + 1, correct / seen)


@torch.inference_mode()
def _aux_accuracy(model: FolderClassifier, ds: FolderDataset, test: FolderSplit) -> dict[str, float]:
    """Held-out accuracy of each auxiliary attribute (logit > 0 ⇔ present)."""
    if not ds.aux_attributes:
        return {}
    model.eval()
    k = model.config.num_classes
    out = np.concatenate(
        [
            model.outputs(model.features(to_input(test.images[i : i + 500])))[:, k:].numpy()
            for i in range(0, len(test), 500)
        ]
    )
    hits = ((out > 0) == (test.aux > 0.5)).mean(axis=0)
    return {a: round(float(h), 4) for a, h in zip(ds.aux_attributes, hits, strict=True)}


def train_folder_classifier(
    key: str,
    data_dir: Path | None = None,
    out_dir: Path | None = None,
    training: FolderTraining | None = None,
    config: FolderClassifierConfig | None = None,
    test_limit: int | None = None,
) -> dict[str, Any]:
    """Train on ``key``'s training folder, test once on its held-out folder, write ``.pt`` + ``.json``."""
    ds = folder_dataset(key)
    training = training or TRAINING[ds.key]
    config = config or CONFIGS[ds.key]
    torch.manual_seed(training.seed)
    train = load_folder_split(ds, "train", data_dir, limit=training.train_limit, aux=True)
    test = load_folder_split(ds, "test", data_dir, limit=test_limit, aux=True)
    if train.class_names != test.class_names or len(train.class_names) != config.num_classes:
        raise ValueError(
            f"{ds.name}: {config.num_classes} classes expected; train has {len(train.class_names)}, "
            f"held-out {len(test.class_names)}, and both must name them alike"
        )
    model = FolderClassifier(config, ds.image_size)
    start = time.monotonic()
    _fit(model, train, training, ds.key)
    seconds = time.monotonic() - start

    logits, _ = predict(model, test.images)
    accuracy = float((logits.argmax(1) == test.labels).mean())
    out_dir = out_dir or CLASSIFIER_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    path = weights_path(ds.key, out_dir)
    blob = {"config": asdict(config), "class_names": train.class_names, "state_dict": model.state_dict()}
    torch.save(blob, path)
    record = {
        "dataset": ds.name,
        "test_accuracy": round(accuracy, 6),
        "test_images": len(test),
        "test_split": test.source,
        "judged": "class subfolders" if not ds.attributes else f"attribute {'+'.join(ds.attributes)}",
        "class_names": train.class_names,
        "aux_test_accuracy": _aux_accuracy(model, ds, test),
        "train_images": len(train),
        "train_split": train.source
        + (f", the first {training.train_limit} images" if training.train_limit else ""),
        "epochs": training.epochs,
        "seconds": round(seconds, 1),
        "threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "config": asdict(config),
        "training": asdict(training),
        "weights": path.name,
        "weights_bytes": path.stat().st_size,
        "sha256": sha256_file(path),
        "torch": torch.__version__,
    }
    text = json.dumps(record, indent=2) + "\n"
    path.with_suffix(".json").write_text(text, encoding="utf-8")
    log.info("%s classifier: test accuracy %.4f on %d images → %s", ds.key, accuracy, len(test), path)
    return dict(json.loads(text))  # as the file has it: the config's tuples are lists there


def load_folder_classifier(key: str, root: Path | None = None) -> tuple[FolderClassifier, list[str]]:
    """The committed classifier for ``key`` (eval mode) and its class names; FileNotFoundError says
    how to train one."""
    ds = folder_dataset(key)
    path = weights_path(ds.key, root)
    if not path.is_file():
        raise FileNotFoundError(
            f"no classifier for {ds.name} at {path}: train one with `python -m trainer classifier {ds.key}`"
        )
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = FolderClassifier(FolderClassifierConfig.from_dict(blob["config"]), ds.image_size)
    model.load_state_dict(blob["state_dict"])
    return model.eval(), list(blob["class_names"])
