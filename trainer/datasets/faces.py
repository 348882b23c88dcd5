"""A synthetic stand-in for CelebA 64×64: procedurally drawn cartoon faces with a CelebA attribute table.

No face dataset with attributes can be had offline, so this draws one: a face, hair, eyes, brows,
mouth, sometimes a beard or glasses, on a plain background, with the attributes it was drawn with
written as ``list_attr_celeba.csv`` (CelebA's column names, ±1). It is synthetic and says so in its
manifest: it lets the CelebA recipes run end to end at full scale, not stand for real faces (real
CelebA stays a ``--data-dir`` the user supplies).

Every attribute is visible in the drawing:

- ``Blond_Hair``: yellow-gold hair (other hair: black, brown, gray, or dark auburn/chestnut);
- ``Male``: short hair, a squarer jaw, heavier brows, a beard for some; otherwise long hair;
- ``Smiling``: an open smile with teeth, raised cheeks; otherwise a closed straight mouth;
- ``Eyeglasses``: dark frames over both eyes.

Base rates follow CelebA's (Male 41.7%, Blond_Hair 14.8%, Smiling 48.2%, Eyeglasses 6.5%), with
its main correlations: blond hair and smiles are commoner among women, glasses and beards among men.

Layout (CelebA's)::

    OUT/manifest.json
    OUT/list_attr_celeba.csv
    OUT/img_align_celeba/000001.png ...
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .jobs import (
    SPLIT_STREAMS,
    DatasetError,
    default_workers,
    image_rng,
    prepare_out,
    run_jobs,
    write_manifest,
)

log = logging.getLogger(__name__)

DATASET_NAME = "synthetic-faces"
DESCRIPTION = (
    "synthetic faces: procedurally drawn 64×64 RGB cartoon faces with CelebA-format attributes "
    "(a stand-in for CelebA, not real faces)"
)
IMAGE_FOLDER = "img_align_celeba"
ATTR_FILE = "list_attr_celeba.csv"
# CelebA's count of aligned faces: the CelebA recipes' epochs are sized for it.
CELEBA_IMAGES = 202_599
DEFAULT_COUNT = {"train": CELEBA_IMAGES, "test": 10_000}
# Columns in CelebA's (alphabetical) order.
ATTRIBUTES = (
    "Black_Hair",
    "Blond_Hair",
    "Brown_Hair",
    "Eyeglasses",
    "Gray_Hair",
    "Male",
    "No_Beard",
    "Smiling",
)

# P(attribute | male), P(attribute | female): marginals match CelebA's with Male at 41.7%,
# e.g. Blond_Hair 0.417 × 0.02 + 0.583 × 0.2396 = 14.8%.
P_MALE = 0.417
P_BLOND = (0.02, 0.2396)
P_SMILING = (0.40, 0.5407)
P_GLASSES = (0.115, 0.029)
P_BEARD = (0.396, 0.0)  # No_Beard 83.5%
# Hair colour of the non-blond (CelebA: Black 23.9%, Brown 20.5%, Gray 4.2% of all faces; the rest
# of its faces have none of its four hair-colour attributes).
HAIR_SHARES = {"black": 0.281, "brown": 0.241, "gray": 0.049, "other": 0.429}
HAIR_RGB = {
    "blond": ((222, 190, 100), (250, 225, 150)),
    "black": ((18, 14, 12), (45, 38, 34)),
    "brown": ((95, 60, 35), (130, 85, 50)),
    "gray": ((150, 150, 150), (200, 200, 198)),
    "other": ((60, 30, 20), (110, 45, 30)),  # dark auburn, chestnut
}
SKIN_RGB = ((110, 75, 55), (245, 210, 185))  # dark to light, interpolated along one axis
DRAW_SCALE = 2  # drawn at 128×128, averaged down to 64×64: smooth edges without a blur


@dataclass(frozen=True)
class FacesConfig:
    out: Path
    seed: int = 0
    split: str = "train"
    count: int | None = None  # None → 202,599 (train) or 10,000 (test)
    size: int = 64
    workers: int = field(default_factory=default_workers)
    overwrite: bool = False

    @property
    def images(self) -> int:
        return self.count if self.count is not None else DEFAULT_COUNT[self.split]


@dataclass(frozen=True)
class FaceAttributes:
    male: bool
    blond: bool
    smiling: bool
    glasses: bool
    beard: bool
    hair: str  # a key of HAIR_RGB

    def row(self) -> list[int]:
        on = {
            "Black_Hair": self.hair == "black",
            "Blond_Hair": self.blond,
            "Brown_Hair": self.hair == "brown",
            "Eyeglasses": self.glasses,
            "Gray_Hair": self.hair == "gray",
            "Male": self.male,
            "No_Beard": not self.beard,
            "Smiling": self.smiling,
        }
        return [1 if on[a] else -1 for a in ATTRIBUTES]


def sample_attributes(rng: np.random.Generator) -> FaceAttributes:
    male = bool(rng.random() < P_MALE)
    k = 0 if male else 1
    blond = bool(rng.random() < P_BLOND[k])
    hair = "blond" if blond else str(rng.choice(list(HAIR_SHARES), p=list(HAIR_SHARES.values())))
    return FaceAttributes(
        male=male,
        blond=blond,
        smiling=bool(rng.random() < P_SMILING[k]),
        glasses=bool(rng.random() < P_GLASSES[k]),
        beard=bool(rng.random() < P_BEARD[k]),
        hair=hair,
    )


def _mix(lo: tuple[int, ...], hi: tuple[int, ...], t: float) -> tuple[int, ...]:
    return tuple(round(a + (b - a) * t) for a, b in zip(lo, hi, strict=True))


def _jitter(rng: np.random.Generator, rgb: tuple[int, ...], amount: int) -> tuple[int, ...]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)


@dataclass(frozen=True)
class _Geometry:
    """Where the face sits, in canvas pixels (aligned like CelebA's crops: eyes level, centred)."""

    u: float  # canvas pixels per pixel of a 64×64 image
    cx: float
    cy: float
    rx: float  # face half-width
    ry: float  # face half-height
    eye_y: float
    eye_dx: float  # half the distance between the eyes

    def box(self, x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
        """A box given in 64×64 units relative to the face centre, in canvas pixels."""
        u = self.u
        return (self.cx + x0 * u, self.cy + y0 * u, self.cx + x1 * u, self.cy + y1 * u)


def _geometry(rng: np.random.Generator, male: bool, u: float) -> _Geometry:
    rx = rng.uniform(12.5, 14.5) * (1.06 if male else 1.0) * u
    cy = (35 + rng.uniform(-1.5, 1.5)) * u
    return _Geometry(
        u=u,
        cx=(32 + rng.uniform(-1.5, 1.5)) * u,
        cy=cy,
        rx=rx,
        ry=rng.uniform(16.5, 18.5) * u,
        eye_y=cy - rng.uniform(3.0, 5.0) * u,
        eye_dx=rx * rng.uniform(0.38, 0.45),
    )


def _draw_hair_back(d: ImageDraw.ImageDraw, g: _Geometry, a: FaceAttributes, hair: tuple[int, ...]) -> None:
    if a.male:
        return
    # Long hair: a mass behind the face down to the shoulders.
    d.rounded_rectangle(
        (g.cx - g.rx * 1.35, g.cy - g.ry * 1.15, g.cx + g.rx * 1.35, g.cy + g.ry * 1.45),
        radius=g.rx * 0.9,
        fill=hair,
    )


def _draw_head(
    d: ImageDraw.ImageDraw, g: _Geometry, a: FaceAttributes, skin: tuple[int, ...], shirt: tuple[int, ...]
) -> None:
    neck_w = g.rx * 0.5
    d.rectangle((g.cx - neck_w, g.cy + g.ry * 0.6, g.cx + neck_w, g.cy + g.ry * 1.4), fill=skin)
    d.ellipse((g.cx - g.rx * 2.2, g.cy + g.ry * 1.25, g.cx + g.rx * 2.2, g.cy + g.ry * 2.6), fill=shirt)
    ear_y = g.eye_y + 2 * g.u
    for side in (-1, 1):
        ex = g.cx + side * g.rx * 0.97
        d.ellipse(
            (ex - 2 * g.u, ear_y - 3 * g.u, ex + 2 * g.u, ear_y + 3 * g.u), fill=_mix(skin, (0, 0, 0), 0.08)
        )
    face = (g.cx - g.rx, g.cy - g.ry, g.cx + g.rx, g.cy + g.ry)
    if a.male:  # a squarer jaw
        d.rounded_rectangle(face, radius=g.rx * 0.75, fill=skin)
    else:
        d.ellipse(face, fill=skin)


def _draw_hair_top(d: ImageDraw.ImageDraw, g: _Geometry, a: FaceAttributes, hair: tuple[int, ...]) -> None:
    top = g.cy - g.ry * 1.12
    if a.male:  # short: a cap over the top of the head
        d.chord((g.cx - g.rx * 1.06, top, g.cx + g.rx * 1.06, g.cy + g.ry * 0.2), 180, 360, fill=hair)
    else:  # a fringe, and the hair framing the face
        d.chord((g.cx - g.rx * 1.12, top, g.cx + g.rx * 1.12, g.cy + g.ry * 0.05), 180, 360, fill=hair)
        for side in (-1, 1):
            x0, x1 = g.cx + side * g.rx * 1.04, g.cx + side * g.rx * 0.8
            d.polygon([(x0, g.cy - g.ry * 0.4), (x1, g.cy - g.ry * 0.4), (x0, g.cy + g.ry * 0.8)], fill=hair)


def _draw_eyes(
    d: ImageDraw.ImageDraw, rng: np.random.Generator, g: _Geometry, a: FaceAttributes, hair: tuple[int, ...]
) -> None:
    u, ey = g.u, g.eye_y
    iris = _jitter(rng, ((70, 50, 30), (60, 95, 130), (75, 105, 60))[int(rng.integers(3))], 15)
    brow = _mix(hair, (30, 20, 15), 0.45)
    lift = 0.7 * u if a.smiling else 0.0  # raised cheeks narrow a smiling eye
    for side in (-1, 1):
        x = g.cx + side * g.eye_dx
        d.ellipse((x - 2.6 * u, ey - 1.5 * u + lift, x + 2.6 * u, ey + 1.5 * u), fill=(245, 245, 240))
        d.ellipse((x - 1.3 * u, ey - 1.3 * u + lift / 2, x + 1.3 * u, ey + 1.3 * u), fill=iris)
        d.ellipse((x - 0.6 * u, ey - 0.6 * u, x + 0.6 * u, ey + 0.6 * u), fill=(10, 10, 10))
        by = ey - 3.6 * u
        d.line(
            (x - 3 * u, by, x + 3 * u, by - side * 0.3 * u),
            fill=brow,
            width=round((1.6 if a.male else 1.0) * u),
        )
    frame = _jitter(rng, (25, 25, 30), 12)  # drawn either way: the later draws stay where they were
    if a.glasses:
        w = max(1, round(0.9 * u))
        for side in (-1, 1):
            x = g.cx + side * g.eye_dx
            d.rounded_rectangle(
                (x - 4.3 * u, ey - 3 * u, x + 4.3 * u, ey + 2.8 * u), radius=1.5 * u, outline=frame, width=w
            )
            d.line((x + side * 4.3 * u, ey - 1 * u, g.cx + side * g.rx, ey), fill=frame, width=w)
        d.line(
            (g.cx - g.eye_dx + 4.3 * u, ey - 1 * u, g.cx + g.eye_dx - 4.3 * u, ey - 1 * u),
            fill=frame,
            width=w,
        )


def _draw_mouth(
    d: ImageDraw.ImageDraw, rng: np.random.Generator, g: _Geometry, a: FaceAttributes, skin: tuple[int, ...]
) -> None:
    u = g.u
    my = g.cy + g.ry * 0.45
    w = g.rx * rng.uniform(0.36, 0.46)
    lips = _mix(skin, (120, 60, 55) if a.male else (160, 40, 55), 0.55)
    nose = _mix(skin, (0, 0, 0), 0.3)
    d.line(
        (g.cx, g.eye_y + 1.5 * u, g.cx - 1.2 * u, g.cy + g.ry * 0.2), fill=nose, width=max(1, round(0.6 * u))
    )
    if a.beard:
        beard = _mix(lips, (35, 25, 20), 0.8)
        d.chord(
            (g.cx - g.rx * 0.98, g.cy - g.ry * 0.25, g.cx + g.rx * 0.98, g.cy + g.ry * 1.02),
            0,
            180,
            fill=beard,
        )
    if a.smiling:  # an open smile: a half-moon of teeth in a dark mouth
        d.chord((g.cx - w, my - 3.2 * u, g.cx + w, my + 3.6 * u), 0, 180, fill=(110, 30, 35))
        d.chord((g.cx - w * 0.85, my - 2.4 * u, g.cx + w * 0.85, my + 1.6 * u), 0, 180, fill=(250, 250, 245))
        d.arc(
            (g.cx - w, my - 3.2 * u, g.cx + w, my + 3.6 * u), 0, 180, fill=lips, width=max(1, round(0.8 * u))
        )
    else:
        d.line(
            (g.cx - w * 0.8, my + 0.5 * u, g.cx + w * 0.8, my + 0.5 * u),
            fill=lips,
            width=max(1, round(1.4 * u)),
        )


def draw_face(
    rng: np.random.Generator, size: int = 64, attributes: FaceAttributes | None = None
) -> tuple[Image.Image, FaceAttributes]:
    """One face and the attributes it was drawn with: a function of ``rng``'s state alone.

    ``attributes`` replace the sampled ones (the rest of the face is drawn as it would have been).
    """
    sampled = sample_attributes(rng)
    a = attributes if attributes is not None else sampled
    side = size * DRAW_SCALE
    background = tuple(int(c) for c in rng.integers(60, 220, size=3))
    img = Image.new("RGB", (side, side), background)
    d = ImageDraw.Draw(img)
    g = _geometry(rng, a.male, side / 64.0)
    lo, hi = HAIR_RGB[a.hair]
    hair = _jitter(rng, _mix(lo, hi, float(rng.random())), 6)
    skin = _jitter(rng, _mix(*SKIN_RGB, float(rng.beta(2.5, 1.5))), 8)
    shirt = tuple(int(c) for c in rng.integers(20, 235, size=3))
    _draw_hair_back(d, g, a, hair)
    _draw_head(d, g, a, skin, shirt)
    _draw_hair_top(d, g, a, hair)
    _draw_eyes(d, rng, g, a, hair)
    _draw_mouth(d, rng, g, a, skin)
    return img.reduce(DRAW_SCALE), a


_WORKER: dict[str, Any] = {}


def _init_worker(cfg: FacesConfig) -> None:
    _WORKER["cfg"] = cfg


def face_file(index: int) -> str:
    """CelebA's naming: 000001 for the first image."""
    return f"{index + 1:06d}.png"


def _work(index: int) -> list[int]:
    cfg: FacesConfig = _WORKER["cfg"]
    img, attrs = draw_face(image_rng(cfg.seed, cfg.split, index), cfg.size)
    img.save(cfg.out / IMAGE_FOLDER / face_file(index))
    return attrs.row()


def make_faces(cfg: FacesConfig) -> dict[str, Any]:
    """Draw the dataset into ``cfg.out``; returns its manifest."""
    if cfg.split not in SPLIT_STREAMS:
        raise DatasetError(f"split must be one of {', '.join(SPLIT_STREAMS)}, got {cfg.split!r}")
    if cfg.images < 1:
        raise DatasetError(f"--count must be at least 1, got {cfg.images}")
    prepare_out(cfg.out, cfg.overwrite)
    (cfg.out / IMAGE_FOLDER).mkdir()
    rows = run_jobs(
        list(range(cfg.images)),
        _work,
        workers=cfg.workers,
        desc=f"drawing {DATASET_NAME} {cfg.split}",
        init=_init_worker,
        init_args=(cfg,),
    )
    table = np.array(rows, dtype=np.int64)
    lines = ["image_id," + ",".join(ATTRIBUTES)]
    lines += [face_file(i) + "," + ",".join(str(v) for v in row) for i, row in enumerate(table.tolist())]
    (cfg.out / ATTR_FILE).write_text("\n".join(lines) + "\n")
    rates = {a: round(float((table[:, j] == 1).mean()), 4) for j, a in enumerate(ATTRIBUTES)}
    manifest = {
        "name": DATASET_NAME if cfg.split == "train" else f"{DATASET_NAME}-{cfg.split}",
        "description": DESCRIPTION + ("" if cfg.split == "train" else f"; held-out {cfg.split} faces"),
        "synthetic": True,
        "generator": "condgen data faces",
        "split": cfg.split,
        "seed": cfg.seed,
        "random_stream": f"SeedSequence([seed, {SPLIT_STREAMS[cfg.split]} ({cfg.split}), image])",
        "images": cfg.images,
        "image": {"channels": 3, "height": cfg.size, "width": cfg.size, "format": "PNG"},
        "images_folder": IMAGE_FOLDER,
        "attributes_file": ATTR_FILE,
        "attributes": list(ATTRIBUTES),
        "attribute_rates": rates,
        "target_rates": {"Male": P_MALE, "Blond_Hair": 0.148, "Smiling": 0.482, "Eyeglasses": 0.065},
        "licence": "generated by condgen (MIT); no real faces",
    }
    write_manifest(cfg.out, manifest)
    return manifest
