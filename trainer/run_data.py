"""What a run was trained on: its data directory, image count, classes, a fingerprint, a name.

A run records it (``checkpoint.pt``, the per-epoch snapshots and ``run.json``) so that a resume
on other data is refused instead of silently mixing two datasets, and so that an exported card
names its dataset (a folder's ``manifest.json``, the ``--dataset-name`` option, or the folder's
own name) rather than "folder".
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .datasets.jobs import read_manifest


@dataclass(frozen=True)
class DataRecord:
    dir: str | None  # as given on the command line (None: the loader's default location)
    images: int
    classes: list[str] | None  # None: unconditional
    labels_from: str | None  # "class folders", "attributes: A,B", "dataset labels", or None
    fingerprint: str  # sha256 over the images and labels as trained on
    name: str  # the card's dataset name
    description: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataRecord:
        return cls(
            dir=d.get("dir"),
            images=int(d.get("images", 0)),
            classes=d.get("classes"),
            labels_from=d.get("labels_from"),
            fingerprint=str(d.get("fingerprint", "")),
            name=str(d.get("name", "")),
            description=d.get("description"),
        )

    def summary(self) -> str:
        classes = f", {len(self.classes)} classes" if self.classes else ""
        return f"{self.dir or self.name} ({self.images} images{classes})"


def fingerprint(images: np.ndarray, labels: np.ndarray | None) -> str:
    """sha256 of the uint8 images (shape included) and their labels: equal only for the same data."""
    h = hashlib.sha256(repr(images.shape).encode())
    h.update(np.ascontiguousarray(images).data.cast("B"))
    if labels is not None:
        h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()


def folder_identity(
    data_dir: Path, name: str | None = None, description: str | None = None
) -> tuple[str, str | None]:
    """The dataset name and description for a folder: options first, then its manifest, then its name."""
    manifest = read_manifest(Path(data_dir)) or {}
    found_name = name or manifest.get("name") or Path(data_dir).resolve().name or "folder"
    return str(found_name), description or manifest.get("description")


def refuse_other_data(previous: dict[str, Any] | None, current: DataRecord, checkpoint: Path) -> None:
    """Raise ValueError when a checkpoint's run was trained on other data than ``current``."""
    if not previous or previous.get("fingerprint") in (None, current.fingerprint):
        return
    before = DataRecord.from_dict(previous)
    raise ValueError(
        f"{checkpoint} was trained on {before.summary()}, not on this data {current.summary()}: "
        "start afresh with --restart (replaces that run), or train a separate run with --name NAME"
    )
