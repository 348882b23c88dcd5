"""``python -m trainer data lego|faces|sheet``: make the offline datasets and their contact sheets."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .jobs import DatasetError, default_workers


def _cmd_lego(args: argparse.Namespace) -> int:
    from .lego import PARTS, LegoConfig, make_lego
    from .meshes import MeshLibraryError

    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip()) if args.parts else PARTS
    out = args.out or Path("data") / ("lego" if args.split == "train" else f"lego-{args.split}")
    cfg = LegoConfig(
        out=out,
        seed=args.seed,
        split=args.split,
        per_class=args.per_class,
        parts=parts,
        workers=args.workers,
        overwrite=args.overwrite,
    )
    started = time.monotonic()
    try:
        manifest = make_lego(cfg)
    except (DatasetError, MeshLibraryError) as exc:
        print(f"data lego: {exc}", file=sys.stderr)
        return 2
    seconds = time.monotonic() - started
    print(
        f"{manifest['name']}: {manifest['images']} images in {len(manifest['classes'])} classes "
        f"→ {out} in {seconds:.0f} s ({cfg.workers} workers)"
    )
    return 0


def _cmd_faces(args: argparse.Namespace) -> int:
    from .faces import FacesConfig, make_faces

    out = args.out or Path("data") / ("faces" if args.split == "train" else f"faces-{args.split}")
    cfg = FacesConfig(
        out=out,
        seed=args.seed,
        split=args.split,
        count=args.count,
        workers=args.workers,
        overwrite=args.overwrite,
    )
    started = time.monotonic()
    try:
        manifest = make_faces(cfg)
    except DatasetError as exc:
        print(f"data faces: {exc}", file=sys.stderr)
        return 2
    seconds = time.monotonic() - started
    rates = ", ".join(f"{k} {v:.1%}" for k, v in manifest["attribute_rates"].items())
    print(f"{manifest['name']}: {manifest['images']} images → {out} in {seconds:.0f} s ({rates})")
    return 0


def _cmd_sheet(args: argparse.Namespace) -> int:
    from .sheet import contact_sheet

    try:
        path = contact_sheet(args.folder, args.out)
    except DatasetError as exc:
        print(f"data sheet: {exc}", file=sys.stderr)
        return 2
    print(f"contact sheet → {path}")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, help="output folder (default: data/<dataset>, data/<dataset>-test)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--split", default="train", choices=["train", "test"], help="test: held-out images (another stream)"
    )
    p.add_argument("--workers", type=int, default=default_workers(), help="processes (default: every core)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")


def add_data_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("data", help="make an offline dataset: LEGO renders, synthetic faces")
    data = p.add_subparsers(dest="dataset", required=True)

    q = data.add_parser("lego", help="64×64 gray renders of 50 LEGO parts (LDraw meshes, CC BY)")
    _common(q)
    q.add_argument("--per-class", type=int, help="renders per part (default: 800 train, 200 test)")
    q.add_argument("--parts", help="comma-separated LDraw part numbers (default: the 50 of the manifest)")
    q.set_defaults(func=_cmd_lego)

    q = data.add_parser("faces", help="synthetic 64×64 faces with a CelebA attribute table (not real faces)")
    _common(q)
    q.add_argument("--count", type=int, help="faces (default: 202,599 train as CelebA, 10,000 test)")
    q.set_defaults(func=_cmd_faces)

    q = data.add_parser("sheet", help="a contact sheet (PNG) of a dataset made by `data lego|faces`")
    q.add_argument("folder", type=Path)
    q.add_argument("--out", type=Path, required=True)
    q.set_defaults(func=_cmd_sheet)
