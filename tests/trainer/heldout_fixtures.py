"""Tiny stand-ins for the image-folder datasets, written by the tests under one data root:
``lego/`` + ``lego-test/`` (gray 64×64 PNGs in three class subfolders, each class a shape) and
``faces/`` + ``faces-test/`` (RGB 64×64 PNGs with a CelebA-style table of the eight attributes
the faces classifier learns; ``Blond_Hair`` is a yellow band at the top, else brown).

Train and held-out folders draw from separate random streams, as ``python -m trainer data`` does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from trainer.datasets.faces import ATTRIBUTES

LEGO_CLASSES = ["1 Bar", "2 Post", "3 Disc"]  # sorted folder names = class ids 0, 1, 2
FACE_ATTRIBUTES = ATTRIBUTES  # the generator's table columns, as `condgen data faces` writes them
SIZE = 64


def _shape(draw: ImageDraw.ImageDraw, cls: int, rng: np.random.Generator) -> None:
    cx, cy = (int(v) for v in rng.integers(24, 40, size=2))
    shade = int(rng.integers(150, 250))
    if cls == 0:
        draw.rectangle((cx - 18, cy - 4, cx + 18, cy + 4), fill=shade)
    elif cls == 1:
        draw.rectangle((cx - 4, cy - 18, cx + 4, cy + 18), fill=shade)
    else:
        draw.ellipse((cx - 12, cy - 12, cx + 12, cy + 12), fill=shade)


def write_lego(root: Path, per_class: int, seed: int) -> Path:
    """``root`` with one subfolder per class of LEGO_CLASSES, ``per_class`` renders in each."""
    rng = np.random.default_rng(seed)
    for cls, name in enumerate(LEGO_CLASSES):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = Image.new("L", (SIZE, SIZE), int(rng.integers(0, 40)))
            _shape(ImageDraw.Draw(img), cls, rng)
            img.save(folder / f"{i:04d}.png")
    (root / "manifest.json").write_text('{"name": "lego-bricks"}\n', encoding="utf-8")
    return root


def write_faces(root: Path, count: int, seed: int) -> Path:
    """``root/img_align_celeba/*.png`` and ``root/list_attr_celeba.csv`` (±1), ``count`` faces;
    every third is blond."""
    rng = np.random.default_rng(seed)
    images = root / "img_align_celeba"
    images.mkdir(parents=True, exist_ok=True)
    rows = [",".join(["image_id", *FACE_ATTRIBUTES])]
    for i in range(count):
        attrs = {a: bool(rng.random() < 0.5) for a in FACE_ATTRIBUTES}
        attrs["Blond_Hair"] = i % 3 == 0
        img = Image.new("RGB", (SIZE, SIZE), tuple(int(v) for v in rng.integers(60, 200, size=3)))
        draw = ImageDraw.Draw(img)
        draw.ellipse((16, 12, 48, 56), fill=(230, 190, 160))
        draw.rectangle((14, 6, 50, 18), fill=(240, 220, 60) if attrs["Blond_Hair"] else (90, 50, 20))
        if attrs["Eyeglasses"]:
            draw.rectangle((20, 28, 44, 33), outline=(0, 0, 0))
        name = f"{i + 1:06d}.png"
        img.save(images / name)
        rows.append(",".join([name, *("1" if attrs[a] else "-1" for a in FACE_ATTRIBUTES)]))
    (root / "list_attr_celeba.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (root / "manifest.json").write_text('{"name": "synthetic-faces"}\n', encoding="utf-8")
    return root


def write_data_root(root: Path) -> Path:
    """``root`` holding lego/ (3 × 24), lego-test/ (3 × 12), faces/ (48) and faces-test/ (24)."""
    write_lego(root / "lego", per_class=24, seed=1)
    write_lego(root / "lego-test", per_class=12, seed=2)
    write_faces(root / "faces", count=48, seed=3)
    write_faces(root / "faces-test", count=24, seed=4)
    return root


def train_tiny_classifiers(data_root: Path, out: Path) -> Path:
    """Tiny lego and faces classifiers (a few hundred parameters, one epoch) written to ``out``."""
    from trainer.folder_classifier import FolderClassifierConfig, FolderTraining, train_folder_classifier

    lego = FolderClassifierConfig(channels=1, num_classes=3, stages=((4,), (8,)), feature_dim=16)
    faces = FolderClassifierConfig(
        channels=3, num_classes=2, aux_outputs=7, input_size=32, stages=((4,), (8,)), feature_dim=16
    )
    for key, config in (("lego", lego), ("faces", faces)):
        train_folder_classifier(
            key,
            data_dir=data_root,
            out_dir=out,
            training=FolderTraining(epochs=3, batch_size=16),
            config=config,
        )
    return out
