"""Contact sheets of the made datasets: a few images of every LEGO part, or faces with their attributes."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .jobs import DatasetError, read_manifest

CAPTION = 11  # pixels under each cell for its caption
GAP = 4  # pixels between cells
# Letters under each face: the attributes it has (upper case) or lacks (a dot).
FACE_CODES = (("Blond_Hair", "B"), ("Male", "M"), ("Smiling", "S"), ("Eyeglasses", "G"))


def _tile(cells: list[tuple[list[Image.Image], str]], columns: int) -> Image.Image:
    """Cells (a row of images and a caption under them) laid out ``columns`` to a row, on white."""
    first = cells[0][0][0]
    cell_w = first.width * max(len(images) for images, _ in cells)
    cell_h = first.height + CAPTION
    rows = -(-len(cells) // columns)
    sheet = Image.new("RGB", (columns * (cell_w + GAP) + GAP, rows * (cell_h + GAP) + GAP), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for k, (images, caption) in enumerate(cells):
        x0 = GAP + (k % columns) * (cell_w + GAP)
        y0 = GAP + (k // columns) * (cell_h + GAP)
        for j, img in enumerate(images):
            sheet.paste(img.convert("RGB"), (x0 + j * first.width, y0))
        draw.text((x0 + 1, y0 + first.height), caption, fill=(0, 0, 0))
    return sheet


def lego_sheet(folder: Path, per_class: int = 3, columns: int = 5) -> Image.Image:
    """``per_class`` renders of every part, captioned with its part number."""
    manifest = read_manifest(folder)
    if manifest is None or "classes" not in manifest:
        raise DatasetError(f"{folder} has no LEGO manifest.json: make it with `condgen data lego`")
    cells = []
    for cls in manifest["classes"]:
        files = sorted((folder / cls["folder"]).glob("*.png"))[:per_class]
        images: list[Image.Image] = [Image.open(f) for f in files]
        cells.append((images, str(cls["part"])))
    return _tile(cells, columns)


def faces_sheet(folder: Path, count: int = 48, columns: int = 12) -> Image.Image:
    """The first ``count`` faces, each captioned with the attributes of its table row."""
    manifest = read_manifest(folder)
    if manifest is None or "attributes_file" not in manifest:
        raise DatasetError(f"{folder} has no faces manifest.json: make it with `condgen data faces`")
    with (folder / manifest["attributes_file"]).open(newline="") as fh:
        rows = list(csv.DictReader(fh))[:count]
    cells = []
    for row in rows:
        img: Image.Image = Image.open(folder / manifest["images_folder"] / row["image_id"])
        code = "".join(letter if row[attr] == "1" else "." for attr, letter in FACE_CODES)
        cells.append(([img], code))
    return _tile(cells, columns)


def contact_sheet(folder: Path, out: Path) -> Path:
    """The sheet that suits the dataset in ``folder`` (by its manifest), written to ``out`` as PNG."""
    manifest = read_manifest(folder) or {}
    generator = manifest.get("generator", "")
    if generator.endswith("lego"):
        sheet = lego_sheet(folder)
    elif generator.endswith("faces"):
        sheet = faces_sheet(folder)
    else:
        raise DatasetError(f"{folder}: no manifest.json of `condgen data lego|faces` to make a sheet from")
    out.parent.mkdir(parents=True, exist_ok=True)
    # A palette PNG: the sheets are gray or flat-coloured, so 256 colours lose almost nothing.
    quantised = sheet.quantize(256, dither=Image.Dither.NONE) if np.asarray(sheet).ndim == 3 else sheet
    quantised.save(out, optimize=True)
    return out
