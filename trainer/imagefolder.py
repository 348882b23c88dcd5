"""Image folders (CelebA, renders, photos) → uint8 arrays, with optional attribute labels.

``load_image_folder(root, image_size, channels)`` finds every image under ``root`` (recursively,
hidden files and folders skipped, sorted by relative path so a folder always loads in the same
order), converts it to gray (``channels=1``) or RGB (``channels=3``), scales its shorter side to
``image_size`` and keeps the centre square. Files Pillow cannot read are skipped and counted.

Labels come from a CelebA-style attribute table (see :mod:`trainer.attributes` for the formats
and the class scheme: one attribute → ``["no A", "A"]``; several → every combination, e.g.
``["none", "Blond_Hair", "Male", "Blond_Hair+Male"]``). Images with no row are skipped and counted.
Or, with ``class_folders``, from the ImageFolder layout most image collections come in: each
top-level subfolder is a class (its name the class name, sorted by name as torchvision's
``ImageFolder`` does; nested folders below it belong to it), and images outside them are skipped.

Nothing is cached to disk: a 64×64 RGB CelebA (202,599 images) is 2.5 GB of
uint8 in memory.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from .attributes import AttributeTableError, FileLabels, find_attribute_table, label_files

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
# Folders smaller than this load in a second or two; a bar would only be noise.
PROGRESS_MIN_FILES = 2000
# Transparent pixels are composited onto white, the usual background of renders.
BACKGROUND = (255, 255, 255)
_NAMED_EXAMPLES = 5  # skipped files named in a warning


class ImageFolderError(ValueError):
    """The folder cannot give a training set (the message says why)."""


@dataclass(frozen=True)
class FolderData:
    images: np.ndarray  # uint8 N×C×S×S
    labels: np.ndarray | None  # int64 N (class ids), or None without attributes
    class_names: list[str] | None  # index = class id
    files: list[str]  # relative POSIX path of each image, in order
    skipped_unreadable: int = 0
    skipped_unlabelled: int = 0


def find_images(root: Path) -> list[str]:
    """Relative POSIX paths of the image files under ``root``, sorted; follows folder links once."""
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist or is not a folder")
    found: list[str] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a link back up the tree would otherwise loop forever
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = Path(dirpath).relative_to(root)
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append((rel / name).as_posix())
    return sorted(found)


def _to_mode(img: Image.Image, channels: int) -> Image.Image:
    """Gray ``L`` or ``RGB``, whatever the file held (palette, alpha, 16-bit, CMYK)."""
    if img.mode.startswith("I;16") or img.mode == "I":
        # 16-bit gray: Pillow's convert("L") would clip at 255 instead of scaling (65535 / 255 = 257).
        # Mode "I" (32-bit) is scaled only when its values exceed the 8-bit range.
        arr = np.asarray(img, dtype=np.float64)
        if img.mode != "I" or arr.max(initial=0) > 255:
            arr = arr / 257.0
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        backdrop = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        img = Image.alpha_composite(backdrop, rgba)
    return img.convert("L" if channels == 1 else "RGB")


def load_image(path: Path, image_size: int, channels: int) -> np.ndarray:
    """One image as uint8 C×S×S: shorter side scaled to S, centre square kept (one resampling)."""
    with Image.open(path) as opened:
        # JPEG only: decode at the smallest 1/2, 1/4 or 1/8 scale that is still at least S on both
        # sides, which makes large photos several times cheaper to read.
        opened.draft("L" if channels == 1 else "RGB", (image_size, image_size))
        img = ImageOps.exif_transpose(opened)
        img = _to_mode(img, channels)
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) / 2.0, (h - side) / 2.0
    # Resizing a float box crops and scales in one step: the same pixels as a resize of the shorter
    # side followed by a centre crop, without a second rounding of the crop to whole pixels.
    img = img.resize(
        (image_size, image_size), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side)
    )
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _try_load(path: Path, image_size: int, channels: int) -> np.ndarray | None:
    try:
        return load_image(path, image_size, channels)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        log.debug("skipping %s: %s", path, exc)
        return None


def class_folder_labels(files: list[str], root: Path) -> FileLabels:
    """Class ids from the top-level subfolder of each file (sorted folder names → ids 0, 1, ...)."""
    inside = [f for f in files if "/" in f]
    classes = sorted({f.split("/", 1)[0] for f in inside})
    if len(classes) < 2:
        found = f"only the class folder {classes[0]!r}" if classes else "no class subfolders"
        raise ImageFolderError(
            f"{root}: {found}; a conditional recipe needs one subfolder per class (at least two), "
            "or attribute labels (--attributes with a CelebA-style table)"
        )
    ids = {name: i for i, name in enumerate(classes)}
    outside = [f for f in files if "/" not in f]
    return FileLabels(inside, [ids[f.split("/", 1)[0]] for f in inside], classes, outside)


def _loaded(
    root: Path, files: list[str], image_size: int, channels: int, workers: int
) -> Generator[np.ndarray | None, None, None]:
    if workers <= 1:
        for f in files:
            yield _try_load(root / f, image_size, channels)
        return
    # Pillow releases the GIL while decoding and resampling, so threads scale without copies.
    # Executor.map submits everything at once: feeding it a chunk at a time bounds the work done
    # past ``limit`` (the caller stops early) and the decoded images waiting to be collected.
    chunk = 32 * workers
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(files), chunk):
            part = files[start : start + chunk]
            yield from pool.map(lambda f: _try_load(root / f, image_size, channels), part)


def _warn_skipped(what: str, names: list[str], root: Path) -> None:
    if names:
        examples = ", ".join(names[:_NAMED_EXAMPLES])
        log.warning("%s: skipped %d %s (e.g. %s)", root, len(names), what, examples)


def _spread(files: list[str], ids: list[int], limit: int | None) -> tuple[list[str], list[int]]:
    """``files`` (with their ``ids``) reordered so an evenly spaced ``limit`` of them come first,
    in their order, then the rest in theirs."""
    if limit is None or limit >= len(files) or limit < 1:
        return files, ids
    picked = set(np.linspace(0, len(files) - 1, limit).astype(np.int64).tolist())
    order = sorted(range(len(files)), key=lambda i: i not in picked)  # stable: each part keeps its order
    return [files[i] for i in order], [ids[i] for i in order]


def load_image_folder(
    root: Path,
    image_size: int,
    channels: int,
    limit: int | None = None,
    attributes: list[str] | None = None,
    attr_csv: Path | None = None,
    workers: int = 1,
    class_folders: bool = False,
) -> FolderData:
    """Load ``root`` as uint8 N×C×S×S (S = ``image_size``), labelled when ``attributes`` are given
    or ``class_folders`` is set (``attributes`` win when both are).

    ``limit`` keeps the first N usable images in sorted order; with class folders, whose sorted
    order runs class by class, it keeps N evenly spaced over that order instead, so every class
    keeps its share (an unreadable pick is made up from the files left). ``attr_csv`` defaults to a
    CelebA attribute table found in the folder or its parent. ``workers`` threads decode in
    parallel (1: in the calling thread).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (gray) or 3 (RGB), got {channels}")
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    root = Path(root)
    files = find_images(root)
    if not files:
        raise ImageFolderError(
            f"no images under {root} (looked recursively for {', '.join(sorted(IMAGE_SUFFIXES))})"
        )

    class_names: list[str] | None = None
    ids: list[int] | None = None
    unlabelled: list[str] = []
    if attr_csv is not None and not attributes:
        raise AttributeTableError(f"attribute table {attr_csv} given without attributes: name the columns")
    if attributes:
        table_path = Path(attr_csv) if attr_csv is not None else find_attribute_table(root)
        found = label_files(files, attributes, table_path)
        class_names, ids, unlabelled = found.class_names, found.ids, found.unlabelled
        _warn_skipped("images with no row in the attribute table", unlabelled, root)
        if not found.files:
            raise ImageFolderError(
                f"none of the {len(files)} images under {root} has a row in {table_path} "
                f"(rows are matched by relative path or file name, e.g. {files[0]!r})"
            )
        files = found.files
    elif class_folders:
        found = class_folder_labels(files, root)
        class_names, ids, unlabelled = found.class_names, found.ids, found.unlabelled
        _warn_skipped("images outside the class subfolders", unlabelled, root)
        files, ids = _spread(found.files, found.ids, limit)

    capacity = len(files) if limit is None else min(limit, len(files))
    images = np.empty((capacity, channels, image_size, image_size), dtype=np.uint8)
    kept_files: list[str] = []
    kept_ids: list[int] = []
    unreadable: list[str] = []
    interactive = sys.stderr.isatty()
    bar = tqdm(
        total=capacity,
        desc=f"loading {root.name or root}",
        unit="img",
        disable=len(files) < PROGRESS_MIN_FILES,
        # In a log file (not a terminal) a bar redrawn every 100 ms would flood it.
        mininterval=0.5 if interactive else 30.0,
    )
    # Files are decoded in order and the loop stops at ``limit`` usable images; with several
    # workers up to one chunk per worker past that point is decoded and dropped.
    loaded = _loaded(root, files, image_size, channels, workers)
    with bar, closing(loaded):  # closing: stop the decoding threads as soon as ``limit`` is met
        for i, arr in enumerate(loaded):
            if arr is None:
                unreadable.append(files[i])
                continue
            images[len(kept_files)] = arr
            kept_files.append(files[i])
            if ids is not None:
                kept_ids.append(ids[i])
            bar.update(1)
            if len(kept_files) == capacity:
                break
    _warn_skipped("unreadable files", unreadable, root)
    if not kept_files:
        raise ImageFolderError(f"none of the {len(files)} image files under {root} could be read")
    labels = np.asarray(kept_ids, dtype=np.int64) if ids is not None else None
    if labels is not None and class_names is not None:
        counts = np.bincount(labels, minlength=len(class_names))
        empty = [n for n, c in zip(class_names, counts, strict=True) if c == 0]
        if empty:
            log.warning("%s: no images for class(es) %s", root, ", ".join(empty))
        log.info(
            "%s: %d images in %d classes (%s)",
            root,
            len(kept_files),
            len(class_names),
            ", ".join(f"{n}: {c}" for n, c in zip(class_names, counts, strict=True)),
        )
    return FolderData(
        images=images[: len(kept_files)],
        labels=labels,
        class_names=class_names,
        files=kept_files,
        skipped_unreadable=len(unreadable),
        skipped_unlabelled=len(unlabelled),
    )
