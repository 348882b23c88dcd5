"""The image-folder datasets the evaluator scores against: their folders, labels and classifier.

A 64×64 model's card names its data by the ``name`` in the training folder's ``manifest.json``
(``lego-bricks``, ``synthetic-faces``; see :func:`trainer.run_data.folder_identity`). Each such
dataset maps here to a training folder and a held-out folder made from another random stream
(``python -m trainer data lego|faces --split test``), found under a data root (``--data-dir``,
then ``$CONDGEN_DATA_DIR``, then ``data/``) as ``<root>/lego`` and ``<root>/lego-test``, and to
the labels its domain classifier judges:

* ``lego-bricks``: 50 classes, the class subfolders sorted by name (as the conditional recipes
  number them, :func:`trainer.imagefolder.class_folder_labels`);
* ``synthetic-faces``: ``Blond_Hair`` as 2 classes ``["no Blond_Hair", "Blond_Hair"]`` (the
  ``cgan64-faces`` scheme, :mod:`trainer.attributes`), and the other attributes of the table as
  the classifier's auxiliary outputs (they give its feature space more than hair colour).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .attributes import find_attribute_table, read_attributes
from .data import LabeledImages
from .datasets.faces import ATTRIBUTES as FACE_ATTRIBUTES
from .imagefolder import load_image_folder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FolderDataset:
    name: str  # the card's dataset: the manifest's name
    key: str  # the classifier's file stem and command-line name
    train: str  # folder under the data root
    test: str  # held-out folder under the data root
    channels: int
    image_size: int = 64
    attributes: tuple[str, ...] = ()  # judged attribute columns; () = class subfolders
    aux_attributes: tuple[str, ...] = ()  # further columns the classifier learns, never judged
    # Faces are independent draws in file order, so the first N stand for all 202,599 (2.5 GB).
    train_pool: int | None = None  # reference rows draw from the first N training images (None: all)


FOLDER_DATASETS: dict[str, FolderDataset] = {
    "lego-bricks": FolderDataset("lego-bricks", "lego", "lego", "lego-test", channels=1),
    "synthetic-faces": FolderDataset(
        "synthetic-faces",
        "faces",
        "faces",
        "faces-test",
        channels=3,
        attributes=("Blond_Hair",),
        aux_attributes=tuple(a for a in FACE_ATTRIBUTES if a != "Blond_Hair"),
        train_pool=40_000,
    ),
}
FOLDER_KEYS = {d.key: d for d in FOLDER_DATASETS.values()}


@dataclass(frozen=True)
class FolderSplit:
    """One split in memory: images uint8 N×C×S×S, class ids, the class names, auxiliary targets."""

    images: np.ndarray
    labels: np.ndarray  # int64 N
    class_names: list[str]
    aux: np.ndarray  # float32 N×len(aux_attributes), 0/1
    source: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def labeled(self) -> LabeledImages:
        return LabeledImages(self.images, self.labels, self.source)


def folder_dataset(name_or_key: str) -> FolderDataset:
    """By the card's dataset name or the classifier's key; ValueError names the known ones."""
    found = FOLDER_DATASETS.get(name_or_key) or FOLDER_KEYS.get(name_or_key)
    if found is None:
        known = ", ".join(f"{d.key} ({d.name})" for d in FOLDER_DATASETS.values())
        raise ValueError(f"no image-folder dataset {name_or_key!r}; known: {known}")
    return found


def split_dir(ds: FolderDataset, split: str, data_dir: Path | None = None) -> Path:
    """``<root>/<folder>`` for the first root that holds it; FileNotFoundError says how to make it."""
    folder = ds.train if split == "train" else ds.test
    roots = [r for r in (data_dir, os.environ.get("CONDGEN_DATA_DIR"), "data") if r]
    for root in roots:
        path = Path(root) / folder
        if path.is_dir():
            return path
    tried = ", ".join(str(Path(r) / folder) for r in roots)
    flag = "" if split == "train" else " --split test"
    raise FileNotFoundError(
        f"{ds.name} {split} folder not found (tried {tried}): `python -m trainer data {ds.key}{flag}`"
    )


def _aux_targets(ds: FolderDataset, root: Path, files: list[str]) -> np.ndarray:
    aux = np.zeros((len(files), len(ds.aux_attributes)), dtype=np.float32)
    if not ds.aux_attributes:
        return aux
    table = find_attribute_table(root)
    for j, attr in enumerate(ds.aux_attributes):
        _, ids = read_attributes(table, [attr])
        # Rows are matched like trainer.attributes.label_files: relative path, else file name.
        aux[:, j] = [ids.get(f, ids.get(f.rsplit("/", 1)[-1], 0)) for f in files]
    return aux


def load_folder_split(
    ds: FolderDataset,
    split: str,
    data_dir: Path | None = None,
    limit: int | None = None,
    aux: bool = False,
    workers: int = 1,
) -> FolderSplit:
    """``split`` ("train" or "test") of ``ds`` at its image size, labelled as its classifier judges.

    ``limit`` keeps N images as :func:`load_image_folder` does; ``aux`` also reads the auxiliary
    attribute targets (training the classifier needs them, scoring does not).
    """
    root = split_dir(ds, split, data_dir)
    data = load_image_folder(
        root,
        ds.image_size,
        ds.channels,
        limit=limit,
        attributes=list(ds.attributes) or None,
        class_folders=not ds.attributes,
        workers=workers,
    )
    # Labelled by construction: class subfolders or attribute columns were asked for.
    assert data.labels is not None
    assert data.class_names is not None
    targets = _aux_targets(ds, root, data.files) if aux else np.zeros((len(data.files), 0), np.float32)
    return FolderSplit(data.images, data.labels, data.class_names, targets, f"{ds.name} {split} ({root})")
