"""What a generation call returns: the pixels, and the labels, seeds and latent indices behind them."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from condgen.errors import CondgenError

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True)
class Images:
    """``images``: uint8 N×C×H×W. ``labels``: int64 class ids (None for unconditional models).
    ``seeds``/``indices``: int64, image i's latent is drawn from (seeds[i], indices[i]); None where
    the latents were given (``z``) or interpolated (then ``ends`` holds a seeded path's two seeds).
    ``layout``: (rows, cols) of a grid."""

    model: str
    images: np.ndarray
    labels: np.ndarray | None
    seeds: np.ndarray | None
    indices: np.ndarray | None
    seed: int | None = None
    layout: tuple[int, int] | None = None
    ends: tuple[int, int] | None = None  # interpolate: the seeds of the path's two ends

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def hwc(self) -> np.ndarray:
        """The images as N×H×W×C, the layout most image libraries take."""
        return np.ascontiguousarray(self.images.transpose(0, 2, 3, 1))

    def pil(self) -> list[Image.Image]:
        """One PIL image per row (``L`` for one channel, ``RGB`` for three); needs pillow."""
        try:
            from PIL import Image
        except ModuleNotFoundError:
            raise ModuleNotFoundError("Images.pil() needs pillow: pip install pillow") from None
        hwc = self.hwc
        if hwc.shape[-1] == 1:
            return [Image.fromarray(img[:, :, 0]) for img in hwc]  # uint8 H×W: mode L
        return [Image.fromarray(img) for img in hwc]


def decode_npy(body: bytes) -> np.ndarray:
    """The server's ``application/x-npy`` answer: a uint8 N×C×H×W array (else a CondgenError: a
    proxy's error page, or not a condgen server)."""
    try:
        array: Any = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise CondgenError(f"the answer is not a .npy array ({exc})", error_type="bad_answer") from None
    if not isinstance(array, np.ndarray) or array.ndim != 4 or array.dtype != np.uint8:
        shape = getattr(array, "shape", "?")
        raise CondgenError(f"expected a uint8 N×C×H×W array, got {shape}", error_type="bad_answer")
    return array


def concatenate(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
