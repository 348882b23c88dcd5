"""What a dataset is scored against: its held-out images, a sample of its training images, and its
domain classifier (the judge), for the IDX datasets (MNIST, FashionMNIST) and the image folders
(:mod:`trainer.folder_datasets`) alike. Images come back as uint8 N×C×H×W.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .data import CLASS_NAMES, LabeledImages, load_split
from .folder_datasets import FOLDER_DATASETS, load_folder_split

if TYPE_CHECKING:  # torch loads only when a judge does
    from .classifier import Classifier

EVALUATED_DATASETS = (*CLASS_NAMES, *FOLDER_DATASETS)  # each has a held-out split and a classifier
SUBSET_SEED = 0  # which fixed random subset of a held-out folder stands for it at a smaller N


@dataclass(frozen=True)
class Judge:
    """A dataset's domain classifier as the metrics use it."""

    model: Classifier
    name: str  # what a metric's feature_extractor says
    size: int  # the image size it takes (others are resized to it)
    class_names: list[str]  # index = class id


def is_folder(dataset: str) -> bool:
    return dataset in FOLDER_DATASETS


def load_judge(dataset: str, root: Path | None = None) -> Judge:
    """The committed classifier of ``dataset`` (a card's dataset name); root: default trainer/classifiers/."""
    from .classifier import IMAGE_SIZE, classifier_name, load_classifier

    if is_folder(dataset):
        from .folder_classifier import load_folder_classifier

        ds = FOLDER_DATASETS[dataset]
        model, names = load_folder_classifier(ds.key, root)
        name = classifier_name(ds.key, root, model.config.feature_dim)
        return Judge(model, name, ds.image_size, names)
    idx_model = load_classifier(dataset, root)
    name = classifier_name(dataset, root, idx_model.config.feature_dim)
    return Judge(idx_model, name, IMAGE_SIZE, CLASS_NAMES[dataset])


def held_out(
    dataset: str, data_dir: Path | None = None, n: int | None = None, first: bool = False
) -> tuple[LabeledImages, str]:
    """The test split (IDX: its first ``n``; a folder, stored class by class: a fixed random ``n``)
    and how a metric's ``reference`` names it (``first``: say that the IDX images are the first)."""
    if is_folder(dataset):
        ds = FOLDER_DATASETS[dataset]
        split = load_folder_split(ds, "test", data_dir).labeled()
        total = len(split)
        if n is None or n >= total:
            return split, f"{dataset} held-out folder {ds.test}, {total} images"
        idx = np.sort(np.random.default_rng(SUBSET_SEED).choice(total, n, replace=False))
        subset = LabeledImages(split.images[idx], split.labels[idx], f"{split.source}, {n} of {total}")
        return subset, f"{dataset} held-out folder {ds.test}, {n} images (a fixed random subset of {total})"
    test = load_split(dataset, "test", data_dir)  # type: ignore[arg-type]
    count = len(test) if n is None else min(n, len(test))
    images = LabeledImages(test.images[:count, None], test.labels[:count], test.source)
    return images, f"{dataset} test split, {'first ' if first else ''}{count} images"


def training_sample(dataset: str, n: int, seed: int, data_dir: Path | None = None) -> LabeledImages:
    """A fixed random ``n`` of the training images (a folder's: of its first ``train_pool``)."""
    if is_folder(dataset):
        ds = FOLDER_DATASETS[dataset]
        train = load_folder_split(ds, "train", data_dir, limit=ds.train_pool).labeled()
    else:
        idx_split = load_split(dataset, "train", data_dir)  # type: ignore[arg-type]
        train = LabeledImages(idx_split.images[:, None], idx_split.labels, idx_split.source)
    if n > len(train):
        raise ValueError(f"{n} training images asked of the {len(train)} of {dataset}")
    # In the class proportions of the split itself, up to sampling.
    idx = np.sort(np.random.default_rng(seed).choice(len(train), n, replace=False))
    return LabeledImages(train.images[idx], train.labels[idx], train.source)
