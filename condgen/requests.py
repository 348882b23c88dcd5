"""From a call's arguments to the request bodies the server accepts.

A large ``n`` becomes several requests of at most the server's ``max_n`` images. They share one
seed (drawn here when none is given) and each starts where the previous ended (``offset``), so
the result is the same images, in the same order, as one request of any size would give.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from condgen.errors import BadRequest

Label = int | str


@dataclass(frozen=True)
class Chunk:
    body: dict[str, Any]
    start: int  # its first row in the whole result
    count: int


@dataclass(frozen=True)
class GenerateJob:
    model: str
    n: int
    seed: int | None
    offset: int
    label_ids: np.ndarray | None  # int64 (n,), or None for an unconditional model
    chunks: list[Chunk]

    @property
    def seeds(self) -> np.ndarray | None:
        return None if self.seed is None else np.full(self.n, self.seed, dtype=np.int64)

    @property
    def indices(self) -> np.ndarray | None:
        return None if self.seed is None else np.arange(self.offset, self.offset + self.n, dtype=np.int64)


def _invalid(message: str) -> BadRequest:
    return BadRequest(message, error_type="invalid_request")


def resolve_label(model: str, names: Sequence[str] | None, label: Label) -> int:
    """A class id or name to an id, by the server's rules (names match case-insensitively)."""
    if names is None:
        raise _invalid(
            f"label: model {model!r} is unconditional and takes no label",
        )
    if isinstance(label, bool) or not isinstance(label, int | str):
        raise _invalid(
            "label: must be a class id (integer) or a class name (string)",
        )
    if isinstance(label, int):
        if not 0 <= label < len(names):
            raise _invalid(
                f"label: {label} is out of range for {model!r}: expected 0..{len(names) - 1}",
            )
        return label
    lowered = [name.lower() for name in names]
    if label.lower() not in lowered:
        raise _invalid(
            f"label: unknown label {label!r} for {model!r}; known: {', '.join(names)}",
        )
    return names.index(label) if label in names else lowered.index(label.lower())


def _label_ids(
    model: str, names: Sequence[str] | None, label: Label | None, labels: Sequence[Label] | None, n: int
) -> np.ndarray | None:
    if label is not None and labels is not None:
        raise _invalid("give either label or labels, not both")
    if names is not None and label is None and labels is None:
        raise _invalid(
            f"label: model {model!r} is conditional; give a class id (0..{len(names) - 1}) or name",
        )
    if labels is not None:
        return np.asarray([resolve_label(model, names, lab) for lab in labels], dtype=np.int64)
    if label is not None:
        return np.full(n, resolve_label(model, names, label), dtype=np.int64)
    return None


def plan_generate(
    model: str,
    names: Sequence[str] | None,
    *,
    chunk_size: int,
    label: Label | None = None,
    labels: Sequence[Label] | None = None,
    n: int | None = None,
    seed: int | None = None,
    offset: int = 0,
    z: Any = None,
    truncation: float | None = None,
) -> GenerateJob:
    """The requests for one ``generate`` call; ``names`` are the card's class names (None:
    unconditional)."""
    latents = None if z is None else np.asarray(z, dtype=np.float32)
    if latents is not None and latents.ndim == 1:
        latents = latents[None, :]
    sizes = {"n": n, "labels": None if labels is None else len(labels)}
    sizes["z"] = None if latents is None else int(latents.shape[0])
    given = {k: v for k, v in sizes.items() if v is not None}
    if len(set(given.values())) > 1:
        raise _invalid(f"sizes disagree: {given}")
    total = next(iter(given.values()), 1)
    if total < 1:
        raise _invalid(f"n: at least 1 image, got {total}")
    if latents is not None and (seed is not None or offset or truncation is not None):
        raise _invalid("z is explicit latents: seed, offset and truncation only choose seeded ones")
    label_ids = _label_ids(model, names, label, labels, total)
    if latents is None and seed is None:
        seed = secrets.randbits(63)  # one seed for every chunk, so they continue one stream
    chunks = []
    for start in range(0, total, chunk_size):
        count = min(chunk_size, total - start)
        body: dict[str, Any] = {"model": model}
        if label_ids is not None:
            body["labels"] = label_ids[start : start + count].tolist()
        if latents is not None:
            body["z"] = latents[start : start + count]
        else:
            body.update(seed=seed, n=count)
            if offset + start:  # left out at 0: a server without offset still answers the first chunk
                body["offset"] = offset + start
            if truncation is not None:
                body["truncation"] = truncation
        chunks.append(Chunk(body, start, count))
    return GenerateJob(model, total, seed, offset, label_ids, chunks)
