"""Domain classifiers for MNIST and FashionMNIST: the judges of label accuracy and a feature space.

``python -m trainer classifier mnist|fashion-mnist`` trains a small CNN on the training split and
writes ``trainer/classifiers/<dataset>.pt`` (≈1 MB, committed) and ``<dataset>.json`` (its test
accuracy, measured once on the whole test split after training, never used to pick anything).
The evaluator uses it twice: its argmax judges whether a conditional generator drew the class it
was asked for, and its 128-d penultimate layer is a domain-specific feature space for FID,
precision/recall and diversity (Inception-v3, trained on ImageNet photos, sees 28×28 digits through
a 299×299 upsampling; a classifier trained on the domain sees them as they are).

Network: conv 1→32 → pool → conv 32→64 → conv 64→64 → pool → conv 64→128 → pool → FC 1152→128
(the features) → dropout → FC 128→10; every conv and the FC features use batch norm. Training:
AdamW with a one-cycle schedule, batch 128, light augmentation (random shifts of ±2 px; horizontal
flips for FashionMNIST, whose classes are mirror-symmetric, never for digits).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from service.card import sha256_file

from .data import CLASS_NAMES, load_split

log = logging.getLogger(__name__)

CLASSIFIER_DIR = Path(__file__).parent / "classifiers"


@dataclass(frozen=True)
class ClassifierConfig:
    num_classes: int = 10
    width: int = 32
    feature_dim: int = 128
    dropout: float = 0.3


@dataclass(frozen=True)
class ClassifierTraining:
    epochs: int = 6
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    shift: int = 2  # augmentation: random translation, pixels
    hflip: bool = False
    seed: int = 0


# Per-dataset training settings: flips only where the classes are mirror-symmetric.
TRAINING: dict[str, ClassifierTraining] = {
    "mnist": ClassifierTraining(epochs=4),
    "fashion-mnist": ClassifierTraining(epochs=7, hflip=True),
}


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class DomainClassifier(nn.Module):
    """uint8-scaled 28×28 gray images → logits; :meth:`features` gives the penultimate layer."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.body = nn.Sequential(
            *_conv(1, w),
            nn.MaxPool2d(2),  # 14×14
            *_conv(w, 2 * w),
            *_conv(2 * w, 2 * w),
            nn.MaxPool2d(2),  # 7×7
            *_conv(2 * w, 4 * w),
            nn.MaxPool2d(2),  # 3×3
            nn.Flatten(),
            nn.Linear(4 * w * 9, config.feature_dim, bias=False),
            nn.BatchNorm1d(config.feature_dim),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(
            nn.Dropout(config.dropout), nn.Linear(config.feature_dim, config.num_classes)
        )

    def features(self, x: Tensor) -> Tensor:
        out: Tensor = self.body(x)
        return out

    def class_logits(self, features: Tensor) -> Tensor:
        out: Tensor = self.head(features)
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.class_logits(self.body(x))


def to_input(images: np.ndarray | Tensor) -> Tensor:
    """uint8 (or 0..255 float) N×C×H×W (N×H×W: one channel) → the network's input, in [−1, 1]."""
    if isinstance(images, np.ndarray):
        # np.asarray(..., float32) copies, so read-only IDX buffers never reach torch.from_numpy.
        x = torch.from_numpy(np.asarray(images, dtype=np.float32))
    else:
        x = images.float()
    if x.ndim == 3:
        x = x[:, None]
    return x / 127.5 - 1.0


IMAGE_SIZE = 28  # the classifiers see MNIST-sized images


def to_classifier_size(images: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """uint8 N×C×S×S → N×C×size×size (antialiased bilinear; e.g. the 32×32 DCGAN recipes, which
    trained on MNIST upsampled 28→32). Images already at ``size`` are returned as they are."""
    if images.shape[-2:] == (size, size):
        return images
    x = torch.from_numpy(np.asarray(images, dtype=np.float32))
    x = nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return x.round_().clamp_(0, 255).to(torch.uint8).numpy()


def augment(x: Tensor, shift: int, hflip: bool, gen: torch.Generator) -> Tensor:
    """Random per-image translation by up to ``shift`` pixels (fill −1, black) and optional
    h-flips, for N×C×H×W in [−1, 1]; every channel of an image moves together."""
    n, c, h, w = x.shape
    if hflip:
        flip = torch.rand(n, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if shift:
        padded = nn.functional.pad(x, (shift, shift, shift, shift), value=-1.0)
        oy = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
        ox = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
        rows = (oy[:, None] + torch.arange(h))[:, None, :, None]
        cols = (ox[:, None] + torch.arange(w))[:, None, None, :]
        x = padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
    return x


class Classifier(Protocol):
    """What :func:`predict` needs of a classifier: its features and the class logits on them."""

    @property
    def config(self) -> Any: ...  # with num_classes and feature_dim

    def eval(self) -> Any: ...

    def features(self, x: Tensor) -> Tensor: ...

    def class_logits(self, features: Tensor) -> Tensor: ...


@torch.inference_mode()
def predict(model: Classifier, images: np.ndarray, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """(class logits float64 N×classes, penultimate features float64 N×feature_dim) for uint8
    N×C×H×W images (N×H×W: one channel)."""
    model.eval()
    logits, feats = [], []
    for i in range(0, len(images), batch_size):
        f = model.features(to_input(images[i : i + batch_size]))
        feats.append(f.double().numpy())
        logits.append(model.class_logits(f).double().numpy())
    dim = model.config.feature_dim
    if not feats:
        return np.empty((0, model.config.num_classes)), np.empty((0, dim))
    return np.concatenate(logits), np.concatenate(feats)


def weights_path(dataset: str, root: Path | None = None) -> Path:
    return (root or CLASSIFIER_DIR) / f"{dataset}.pt"


def train_classifier(
    dataset: str,
    data_dir: Path | None = None,
    out_dir: Path | None = None,
    training: ClassifierTraining | None = None,
    config: ClassifierConfig | None = None,
    limit: int | None = None,
    test_limit: int | None = None,
) -> dict[str, Any]:
    """Train on ``dataset``'s train split, test once on its test split, write ``.pt`` + ``.json``."""
    if dataset not in CLASS_NAMES:
        raise ValueError(f"no classifier for {dataset!r}; known: {', '.join(CLASS_NAMES)}")
    training = training or TRAINING[dataset]
    config = config or ClassifierConfig(num_classes=len(CLASS_NAMES[dataset]))
    torch.manual_seed(training.seed)
    gen = torch.Generator().manual_seed(training.seed)
    train_split = load_split(dataset, "train", data_dir)  # type: ignore[arg-type]
    test_split = load_split(dataset, "test", data_dir)  # type: ignore[arg-type]
    x = torch.from_numpy(np.array(train_split.images[:limit], dtype=np.uint8))
    y = torch.from_numpy(np.array(train_split.labels[:limit], dtype=np.int64))

    model = DomainClassifier(config)
    opt = torch.optim.AdamW(model.parameters(), lr=training.lr, weight_decay=training.weight_decay)
    steps_per_epoch = -(-len(x) // training.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=training.lr, total_steps=training.epochs * steps_per_epoch
    )
    start = time.monotonic()
    for epoch in range(training.epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        bar = tqdm(range(steps_per_epoch), desc=f"{dataset} classifier {epoch + 1}/{training.epochs}")
        correct = seen = 0
        for step in bar:
            idx = order[step * training.batch_size : (step + 1) * training.batch_size]
            xb = augment(to_input(x[idx]), training.shift, training.hflip, gen)
            logits = model(xb)
            loss = nn.functional.cross_entropy(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            correct += int((logits.argmax(1) == y[idx]).sum())
            seen += len(idx)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}", train_acc=f"{correct / seen:.4f}")
        log.info(
            "%s classifier epoch %d: train accuracy %.4f (augmented)", dataset, epoch + 1, correct / seen
        )
    seconds = time.monotonic() - start

    test_images, test_labels = test_split.images[:test_limit, None], test_split.labels[:test_limit]
    logits, _ = predict(model, test_images)
    accuracy = float((logits.argmax(1) == test_labels).mean())
    out_dir = out_dir or CLASSIFIER_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    path = weights_path(dataset, out_dir)
    torch.save({"config": asdict(config), "state_dict": model.state_dict()}, path)
    record = {
        "dataset": dataset,
        "test_accuracy": round(accuracy, 6),
        "test_images": len(test_labels),
        "train_images": len(x),
        "epochs": training.epochs,
        "seconds": round(seconds, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
        "config": asdict(config),
        "training": asdict(training),
        "weights": path.name,
        "sha256": sha256_file(path),
        "torch": torch.__version__,
    }
    path.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    log.info("%s classifier: test accuracy %.4f on %d images → %s", dataset, accuracy, len(test_labels), path)
    return record


def load_classifier(dataset: str, root: Path | None = None) -> DomainClassifier:
    """The committed classifier for ``dataset`` (eval mode); FileNotFoundError says how to train one."""
    path = weights_path(dataset, root)
    if not path.is_file():
        raise FileNotFoundError(
            f"no classifier for {dataset} at {path}: train one with `python -m trainer classifier {dataset}`"
        )
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = DomainClassifier(ClassifierConfig(**blob["config"]))
    model.load_state_dict(blob["state_dict"])
    return model.eval()


def classifier_name(dataset: str, root: Path | None = None, feature_dim: int = 128) -> str:
    """How a metric names this feature extractor: file and the first 12 hex of its digest."""
    path = weights_path(dataset, root)
    digest = sha256_file(path)[:12]
    return (
        f"condgen {dataset} classifier, penultimate {feature_dim}-d (classifiers/{path.name} sha256 {digest})"
    )
