"""Labelled datasets on disk: a PNG folder per class, one ``.npz``, or IDX files like MNIST's,
each with a ``manifest.json`` that says what made it and how far the writing got.

Row r of a dataset is the image of label ``labels[r]`` and latent (seed, offset + r), so a run
that stopped can go on from its last finished step: the manifest's ``done`` is only raised once
the rows below it are on disk, and rows past it are written again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from service.encode import png_bytes

Format = Literal["png-folder", "npz", "idx"]
FORMATS: tuple[Format, ...] = ("png-folder", "npz", "idx")
MANIFEST = "manifest.json"
# What must match for a run to continue another: anything else (the source, the version) may differ.
IDENTITY = ("format", "model", "model_sha256", "seed", "offset", "n", "labels", "truncation")
_IDX_MAGIC = {1: 0x0801, 3: 0x0803, 4: 0x0804}  # uint8 data, by number of dimensions


class DatasetError(Exception):
    """The output cannot be written or continued; the message says why."""


@dataclass(frozen=True)
class Layout:
    n: int
    channels: int
    height: int
    width: int
    label_names: list[str] | None  # the card's class names; None: unconditional

    @property
    def row_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)


class Writer(Protocol):
    def write(self, start: int, images: np.ndarray, labels: np.ndarray | None, indices: np.ndarray) -> None:
        """Rows ``start .. start + len(images) - 1``; in the files (they outlive this process being
        killed, not a power cut: nothing is fsynced) once :meth:`sync` returns."""

    def sync(self) -> None: ...

    def finish(self, manifest: dict[str, Any]) -> list[str]:
        """Close the dataset; the files it consists of, relative to the manifest's folder."""

    def cleanup(self) -> None:
        """Remove what only a resume needed; called once the manifest says the run is complete."""


def manifest_path(fmt: Format, out: Path) -> Path:
    """Beside a ``.npz`` file (``x.npz`` → ``x.manifest.json``); inside a folder otherwise."""
    return out.with_suffix(".manifest.json") if fmt == "npz" else out / MANIFEST


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """Atomically: a reader (or a rerun after a kill) sees the old manifest or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)


def read_manifest(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except ValueError as exc:
        raise DatasetError(f"{path} is not a manifest ({exc}); remove it or pass --restart") from None
    return doc


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "class"


def class_folders(names: list[str]) -> list[str]:
    """One folder per class, in class-id order when sorted: the name itself where it is its id
    (MNIST's "3"), else the zero-padded id and the name ("01-Trouser")."""
    if all(name == str(i) for i, name in enumerate(names)) and len(names) <= 10:
        return list(names)
    width = len(str(len(names) - 1))
    return [f"{i:0{width}d}-{_slug(name)}" for i, name in enumerate(names)]


class PngFolderWriter:
    def __init__(self, out: Path, layout: Layout, seed: int) -> None:
        self.out, self.layout, self.seed = out, layout, seed
        self.folders = class_folders(layout.label_names) if layout.label_names is not None else None
        for folder in self.folders or []:
            (out / folder).mkdir(parents=True, exist_ok=True)
        out.mkdir(parents=True, exist_ok=True)

    def write(self, start: int, images: np.ndarray, labels: np.ndarray | None, indices: np.ndarray) -> None:
        for row, image in enumerate(images):
            folder = (
                self.out if labels is None or self.folders is None else self.out / self.folders[labels[row]]
            )
            (folder / f"{self.seed}-{indices[row]}.png").write_bytes(png_bytes(image))

    def sync(self) -> None:
        pass  # each file is whole once written; the manifest is what counts rows as done

    def finish(self, manifest: dict[str, Any]) -> list[str]:
        return self.folders or ["."]

    def cleanup(self) -> None:
        pass


class NpzWriter:
    """Rows go to a ``.npy`` memory map beside the output; ``finish`` packs the ``.npz``."""

    def __init__(self, out: Path, layout: Layout, resume: bool) -> None:
        self.out, self.layout = out, layout
        self.partial = out.with_name(out.name + ".partial.npy")
        shape = (layout.n, *layout.row_shape)
        if resume and not self.partial.is_file():
            raise DatasetError(f"{self.partial} (the rows written so far) is missing; pass --restart")
        mode: Literal["r+", "w+"] = "r+" if resume else "w+"
        out.parent.mkdir(parents=True, exist_ok=True)
        self.images = np.lib.format.open_memmap(self.partial, mode=mode, dtype=np.uint8, shape=shape)
        if self.images.shape != shape:
            raise DatasetError(f"{self.partial} holds {self.images.shape}, expected {shape}; pass --restart")

    def write(self, start: int, images: np.ndarray, labels: np.ndarray | None, indices: np.ndarray) -> None:
        self.images[start : start + len(images)] = images

    def sync(self) -> None:
        self.images.flush()

    def finish(self, manifest: dict[str, Any]) -> list[str]:
        arrays: dict[str, Any] = {"images": self.images}
        labels = manifest_labels(manifest, self.layout)
        if labels is not None:
            arrays["labels"] = labels
        arrays["seeds"] = np.full(self.layout.n, manifest["seed"], dtype=np.int64)
        arrays["indices"] = np.arange(manifest["offset"], manifest["offset"] + self.layout.n, dtype=np.int64)
        tmp = self.out.with_name(self.out.name + ".tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, self.out)
        del self.images
        return [self.out.name]

    def cleanup(self) -> None:
        # Only now: a run killed before its manifest said "complete" packs the .npz again from it.
        self.partial.unlink(missing_ok=True)


class IdxWriter:
    """``images-idx3-ubyte`` (N×H×W; ``idx4`` N×C×H×W for colour) and ``labels-idx1-ubyte``."""

    def __init__(self, out: Path, layout: Layout, done: int) -> None:
        self.out, self.layout = out, layout
        out.mkdir(parents=True, exist_ok=True)
        dims = [layout.n, layout.height, layout.width]
        if layout.channels != 1:
            dims = [layout.n, *layout.row_shape]
        self.image_file = out / f"images-idx{len(dims)}-ubyte"
        self.images = self._open(self.image_file, dims, done, layout.channels * layout.height * layout.width)
        self.labels = None
        if layout.label_names is not None:
            if len(layout.label_names) > 256:
                raise DatasetError("IDX labels are bytes: at most 256 classes; use --format npz")
            self.labels = self._open(out / "labels-idx1-ubyte", [layout.n], done, 1)

    @staticmethod
    def _open(path: Path, dims: list[int], done: int, row_bytes: int) -> Any:
        header = struct.pack(">I", _IDX_MAGIC[len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)
        if done and not path.is_file():
            raise DatasetError(f"{path} (the rows written so far) is missing; pass --restart")
        handle = open(path, "r+b" if done and path.is_file() else "w+b")  # noqa: SIM115 - held until finish
        handle.write(header)
        handle.truncate(len(header) + done * row_bytes)  # rows past the last finished step go
        handle.seek(0, os.SEEK_END)
        return handle

    def write(self, start: int, images: np.ndarray, labels: np.ndarray | None, indices: np.ndarray) -> None:
        self.images.write(np.ascontiguousarray(images).tobytes())
        if self.labels is not None and labels is not None:
            self.labels.write(labels.astype(np.uint8).tobytes())

    def sync(self) -> None:
        for handle in (self.images, self.labels):
            if handle is not None:
                handle.flush()

    def finish(self, manifest: dict[str, Any]) -> list[str]:
        files = []
        for handle in (self.images, self.labels):
            if handle is not None:
                handle.close()
                files.append(Path(handle.name).name)
        return files

    def cleanup(self) -> None:
        pass


def manifest_labels(manifest: dict[str, Any], layout: Layout) -> np.ndarray | None:
    """The label id of every row, from the manifest's ``labels`` (a list cycled over the rows)."""
    cycle = manifest["labels"]
    if cycle is None:
        return None
    ids = np.asarray(cycle, dtype=np.int64)
    return ids[np.arange(layout.n) % len(ids)]


def open_writer(fmt: Format, out: Path, layout: Layout, seed: int, done: int) -> Writer:
    if fmt == "png-folder":
        return PngFolderWriter(out, layout, seed)
    if fmt == "npz":
        return NpzWriter(out, layout, resume=done > 0)
    return IdxWriter(out, layout, done)


def remove_output(fmt: Format, out: Path) -> None:
    """What a previous run left at ``out`` (for --restart); a folder is removed only when a manifest
    says this command wrote it, never any other folder the option names by mistake."""
    if fmt == "npz":
        for path in (out, out.with_name(out.name + ".partial.npy"), manifest_path(fmt, out)):
            path.unlink(missing_ok=True)
    elif out.is_dir():
        if not manifest_path(fmt, out).is_file() and any(out.iterdir()):
            raise DatasetError(
                f"{out} has files but no {MANIFEST} of condgen generate: not removing it; "
                "choose another --out"
            )
        shutil.rmtree(out)
