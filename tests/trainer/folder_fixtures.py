"""A small image folder written by the tests: coloured shapes of mixed sizes, gray and RGB, PNG and
JPEG, in nested folders, with a CelebA-style attribute table and a few files that must be skipped.

Image ``i`` (``img_{i:03d}.png`` or ``.jpg``) has attributes ``Red_Shape`` (a red shape, else
blue), ``Round`` (a disc, else a square) and ``Big``; the shape sits in the middle, so any centre
crop keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

N_IMAGES = 48
ATTRIBUTES = ("Red_Shape", "Round", "Big")
# (width, height) in pixels: landscape, portrait, square, smaller than 64 (upscaled), larger.
SIZES = ((80, 64), (64, 96), (72, 72), (40, 30), (100, 120))
RED = (220, 30, 30)
BLUE = (30, 30, 220)
BACKGROUND = (128, 128, 128)
ATTR_FILE = "list_attr_celeba.csv"


@dataclass(frozen=True)
class FolderImage:
    rel: str  # relative POSIX path
    red: bool
    round: bool
    big: bool
    gray: bool

    @property
    def name(self) -> str:
        return self.rel.rsplit("/", 1)[-1]


def folder_images() -> list[FolderImage]:
    out = []
    for i in range(N_IMAGES):
        sub = "a" if i < N_IMAGES // 2 else "b/nested"
        ext = "png" if i % 4 < 2 else "jpg"
        rel = f"{sub}/img_{i:03d}.{ext}"
        out.append(FolderImage(rel, red=i % 2 == 0, round=i % 3 == 0, big=i % 5 == 0, gray=i % 3 == 2))
    return out


def _draw(spec: FolderImage, size: tuple[int, int]) -> Image.Image:
    w, h = size
    img = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(img)
    r = min(w, h) * (0.4 if spec.big else 0.25)
    box = (w / 2 - r, h / 2 - r, w / 2 + r, h / 2 + r)
    colour = RED if spec.red else BLUE
    if spec.round:
        draw.ellipse(box, fill=colour)
    else:
        draw.rectangle(box, fill=colour)
    return img.convert("L") if spec.gray else img


def attribute_rows(images: list[FolderImage], zero_one: bool = False) -> list[list[str]]:
    """CelebA rows: file name, then -1/1 (or 0/1) for each of ATTRIBUTES."""
    off = "0" if zero_one else "-1"
    return [[im.name, *("1" if v else off for v in (im.red, im.round, im.big))] for im in images]


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    lines = [",".join(["image_id", *ATTRIBUTES])] + [",".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_celeba_txt(path: Path, rows: list[list[str]]) -> Path:
    """The original list_attr_celeba.txt layout: row count, attribute names, space-padded rows."""
    lines = [str(len(rows)), " ".join(ATTRIBUTES)] + ["  ".join(f"{c:>2}" for c in r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_folder(root: Path) -> Path:
    """Write the folder under ``root``; returns ``root``.

    Besides the 48 images: ``broken.jpg`` (not an image; it has a table row, so it is skipped as
    unreadable), ``notes.txt`` and a hidden ``.thumb.png`` (never picked up), and the attribute
    table ``list_attr_celeba.csv`` at the top.
    """
    images = folder_images()
    for i, spec in enumerate(images):
        path = root / spec.rel
        path.parent.mkdir(parents=True, exist_ok=True)
        img = _draw(spec, SIZES[i % len(SIZES)])
        if spec.rel.endswith(".jpg"):
            img.save(path, quality=95)
        else:
            img.save(path)
    (root / "a" / "broken.jpg").write_bytes(b"this is not a JPEG")
    (root / "notes.txt").write_text("not an image\n", encoding="utf-8")
    Image.new("RGB", (8, 8), RED).save(root / ".thumb.png")
    write_csv(root / ATTR_FILE, [*attribute_rows(images), ["broken.jpg", "1", "1", "1"]])
    return root
