"""``condgen generate``: a labelled dataset of ``n`` images written step by step, resumable.

Row r is label ``cycle[r % len(cycle)]`` (one label, every class in turn, or a given list) and
the latent (seed, offset + r). After each step the writer syncs and the manifest's ``done``
moves on; a rerun with the same arguments continues from there (a different model file, seed,
count or label set is refused rather than mixed in).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from condgen.datasets import (
    IDENTITY,
    DatasetError,
    Format,
    Layout,
    manifest_path,
    open_writer,
    read_manifest,
    remove_output,
    write_json,
)
from condgen.progress import Progress
from condgen.requests import Label, resolve_label
from condgen.sources import Source
from condgen.version import __version__

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetSpec:
    model: str
    n: int
    out: Path
    fmt: Format
    labels: Sequence[Label] | None = None  # cycled over the rows; None: every class (or none)
    seed: int | None = None  # None: the unfinished run's, or a fresh one
    offset: int = 0
    truncation: float | None = None
    restart: bool = False
    step: int | None = None  # images per step (between two manifest updates); None: the source's


def label_cycle(model: str, names: list[str] | None, labels: Sequence[Label] | None) -> list[int] | None:
    """The label ids the rows cycle through; ``labels=None`` means every class."""
    if names is None:
        if labels is not None:
            raise DatasetError(f"model {model!r} is unconditional: it takes no --label/--labels")
        return None
    if labels is None:
        return list(range(len(names)))
    return [resolve_label(model, names, lab) for lab in labels]


def _identity(spec: DatasetSpec, card: dict[str, Any], seed: int, cycle: list[int] | None) -> dict[str, Any]:
    return {
        "format": spec.fmt,
        "model": spec.model,
        "model_sha256": (card.get("onnx") or {}).get("sha256"),
        "seed": seed,
        "offset": spec.offset,
        "n": spec.n,
        "labels": cycle,
        "truncation": spec.truncation,
    }


def _resume_point(
    spec: DatasetSpec, mpath: Path, identity: dict[str, Any]
) -> tuple[int, dict[str, Any] | None]:
    """Rows already written by an earlier run of the same dataset (0 when none)."""
    old = read_manifest(mpath)
    if old is None:
        if spec.fmt != "npz" and spec.out.is_dir() and any(spec.out.iterdir()):
            raise DatasetError(f"{spec.out} is not empty and holds no {mpath.name}; choose another --out")
        if spec.fmt == "npz" and spec.out.exists():
            raise DatasetError(
                f"{spec.out} exists and has no {mpath.name}; choose another --out or remove it"
            )
        return 0, None
    differ = [key for key in IDENTITY if old.get(key) != identity[key]]
    if differ:
        shown = ", ".join(f"{k} {old.get(k)!r} (now {identity[k]!r})" for k in differ)
        raise DatasetError(
            f"{spec.out} was started with other arguments: {shown}; pass --restart to start over"
        )
    return int(old.get("done", 0)), old


def make_dataset(spec: DatasetSpec, source: Source, progress: bool = True) -> dict[str, Any]:
    """Write (or finish) the dataset; returns its manifest."""
    if spec.n < 1:
        raise DatasetError(f"--n must be at least 1, got {spec.n}")
    card = source.card(spec.model)
    names: list[str] | None = card.get("labels")
    cycle = label_cycle(spec.model, names, spec.labels)
    mpath = manifest_path(spec.fmt, spec.out)
    if spec.restart:
        remove_output(spec.fmt, spec.out)
    old = None if spec.restart else read_manifest(mpath)
    seed = spec.seed if spec.seed is not None else (old["seed"] if old else secrets.randbits(63))
    identity = _identity(spec, card, seed, cycle)
    done, old = (0, None) if spec.restart else _resume_point(spec, mpath, identity)
    if old is not None and old.get("complete"):
        logger.info("%s is complete already (%d images)", spec.out, spec.n)
        return old
    image = card["image"]
    layout = Layout(spec.n, image["channels"], image["height"], image["width"], names)
    writer = open_writer(spec.fmt, spec.out, layout, seed, done)
    manifest: dict[str, Any] = {
        **identity,
        "label_names": names,
        "model_version": card.get("version"),
        "image": {k: image[k] for k in ("channels", "height", "width")},
        "rows": "row r: label labels[r % len(labels)], latent (seed, offset + r)",
        "condgen_version": __version__,
        "source": source.name,
        "done": done,
        "complete": False,
    }
    if done:
        logger.info("%s: %d of %d images were written by an earlier run; going on", spec.out, done, spec.n)
    write_json(mpath, manifest)
    source.prepare(spec.model)
    bar = Progress(spec.n, spec.model, enabled=progress)
    bar.start(done)
    cycle_ids = None if cycle is None else np.asarray(cycle, dtype=np.int64)
    step = spec.step or source.step

    def commit(start: int, images: np.ndarray, labels: np.ndarray | None, rows: np.ndarray) -> None:
        writer.write(start, images, labels, spec.offset + rows)
        writer.sync()
        manifest["done"] = int(rows[-1]) + 1  # only once the rows are on disk
        write_json(mpath, manifest)
        bar.update(manifest["done"])

    # One step is written (PNG encoding, files) while the next is generated: both release the GIL.
    with ThreadPoolExecutor(1, thread_name_prefix="dataset-writer") as pool:
        writing: Future[None] | None = None
        for start in range(done, spec.n, step):
            rows = np.arange(start, min(start + step, spec.n))
            labels = None if cycle_ids is None else cycle_ids[rows % len(cycle_ids)]
            images = source.rows(spec.model, labels, seed, spec.offset + start, spec.truncation, n=len(rows))
            if writing is not None:
                writing.result()
            writing = pool.submit(commit, start, images, labels, rows)
        if writing is not None:
            writing.result()
    bar.close()
    manifest["images_per_s"] = round(bar.rate(spec.n), 1)
    manifest["files"] = writer.finish(manifest)
    manifest["complete"] = True
    write_json(mpath, manifest)
    writer.cleanup()
    return manifest
