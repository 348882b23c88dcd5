"""From a validated request and a model card to the exact rows the model will run.

A :class:`Plan` holds the latents (float32 N×dim), the labels (int64 N, or None for unconditional
models), per-image metadata for JSON responses and the PNG grid layout. Everything that depends on
the card is checked here and reported as :class:`InvalidRequest` naming the field.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from service.card import ModelCard
from service.config import Settings
from service.encode import grid_shape
from service.errors import InvalidRequest
from service.latents import MAX_LATENT_INDEX, interpolate, latent_for, latents_for
from service.schemas import GenerateRequest, GridRequest, InterpolateRequest

DEFAULT_GRID_COLUMNS = 8
DEFAULT_GRID_ROWS = 4  # an unconditional model's grid: 4 × 8 latents
# Interpolation strips wrap after this many images so long paths stay viewable.
MAX_STRIP_COLUMNS = 16

SeedSource = Callable[[], int]


def random_seed() -> int:
    """A fresh seed in 0..2**63-1: from the OS's CSPRNG, so concurrent replicas never collide."""
    return secrets.randbits(63)


@dataclass(frozen=True)
class Plan:
    z: np.ndarray  # float32 (N, dim)
    labels: np.ndarray | None  # int64 (N,)
    metadata: list[dict[str, object]]  # per image, JSON-ready
    layout: tuple[int, int]  # rows, cols of the PNG grid
    seed: int | None = None
    seeds: list[int] | None = None

    @property
    def n(self) -> int:
        return int(self.z.shape[0])

    @property
    def seed_header(self) -> str | None:
        if self.seed is not None:
            return str(self.seed)
        if self.seeds:
            return ",".join(str(s) for s in self.seeds)
        return None


def _resolve_label(card: ModelCard, label: int | str, field: str) -> int:
    try:
        return card.label_id(label)
    except ValueError as exc:
        raise InvalidRequest(f"{field}: {exc}") from None


def _require_labels(card: ModelCard, given: bool, field: str) -> None:
    if card.conditional and not given:
        names = ", ".join(card.labels or [])
        raise InvalidRequest(
            f"{field}: model {card.name!r} is conditional; give a class id (0..{card.num_classes - 1}) "
            f"or name ({names})"
        )
    if not card.conditional and given:
        raise InvalidRequest(f"{field}: model {card.name!r} is unconditional and takes no label")


def _explicit_latents(card: ModelCard, vectors: Sequence[Sequence[float]], field: str = "z") -> np.ndarray:
    dim = card.latent.dim
    for i, vec in enumerate(vectors):
        if len(vec) != dim:
            raise InvalidRequest(
                f"{field}[{i}]: has {len(vec)} values, model {card.name!r} takes latents of size {dim}"
            )
    with np.errstate(over="ignore"):
        z = np.asarray(vectors, dtype=np.float32).reshape(len(vectors), dim)
    if not np.isfinite(z).all():
        raise InvalidRequest(f"{field}: values must be finite and fit float32 (|v| < 3.4e38)")
    return z


def _label_name(card: ModelCard, label: int | None) -> str | None:
    return card.labels[label] if card.labels is not None and label is not None else None


def plan_generate(
    req: GenerateRequest, card: ModelCard, settings: Settings, seed_source: SeedSource = random_seed
) -> Plan:
    if req.z is not None:
        n, n_field = len(req.z), "z"
    elif req.labels is not None:
        n, n_field = len(req.labels), "labels"
    else:
        n, n_field = req.n or 1, "n"
    if n > settings.max_n:
        raise InvalidRequest(f"{n_field}: at most {settings.max_n} images per request, got {n}")

    _require_labels(
        card, req.label is not None or req.labels is not None, "labels" if req.labels is not None else "label"
    )
    label_ids: list[int] | None = None
    if req.labels is not None:
        label_ids = [_resolve_label(card, lab, f"labels[{i}]") for i, lab in enumerate(req.labels)]
    elif req.label is not None:
        label_ids = [_resolve_label(card, req.label, "label")] * n

    if req.offset + n - 1 > MAX_LATENT_INDEX:
        raise InvalidRequest(
            f"offset: offset + n - 1 must be at most {MAX_LATENT_INDEX} (the last latent index), "
            f"got {req.offset} + {n} - 1"
        )
    seed: int | None = None
    if req.z is not None:
        z = _explicit_latents(card, req.z)
    else:
        seed = req.seed if req.seed is not None else seed_source()
        z = latents_for(seed, n, card.latent.dim, start=req.offset, truncation=req.truncation)

    metadata: list[dict[str, object]] = [
        {
            "index": i,
            "label": label_ids[i] if label_ids is not None else None,
            "label_name": _label_name(card, label_ids[i] if label_ids is not None else None),
            "seed": seed,
            "latent_index": req.offset + i if seed is not None else None,
        }
        for i in range(n)
    ]
    labels = np.asarray(label_ids, dtype=np.int64) if label_ids is not None else None
    return Plan(z=z, labels=labels, metadata=metadata, layout=grid_shape(n), seed=seed)


def plan_grid(
    req: GridRequest, card: ModelCard, settings: Settings, seed_source: SeedSource = random_seed
) -> Plan:
    if not card.conditional:
        return _plan_latent_grid(req, card, settings, seed_source)
    if req.rows is not None:
        raise InvalidRequest(f"rows: {card.name!r}'s grid has a row per label; choose them with labels")
    if req.labels is not None:
        row_labels = [_resolve_label(card, lab, f"labels[{i}]") for i, lab in enumerate(req.labels)]
    else:
        row_labels = list(range(card.num_classes))
    cols = len(req.z) if req.z is not None else (req.columns or DEFAULT_GRID_COLUMNS)
    _check_grid_size("columns", len(row_labels), cols, settings)
    column_z, seed = _grid_latents(req, card, cols, seed_source)
    # Same latent down each column, so the figure reads label (rows) versus style (columns).
    z = np.tile(column_z, (len(row_labels), 1))
    labels = np.repeat(np.asarray(row_labels, dtype=np.int64), cols)
    metadata: list[dict[str, object]] = []
    for r, label in enumerate(row_labels):
        for c in range(cols):
            metadata.append(
                {
                    "index": r * cols + c,
                    "label": label,
                    "label_name": _label_name(card, label),
                    "seed": seed,
                    "latent_index": c if seed is not None else None,
                    "row": r,
                    "column": c,
                }
            )
    return Plan(z=z, labels=labels, metadata=metadata, layout=(len(row_labels), cols), seed=seed)


def _check_grid_size(field: str, rows: int, cols: int, settings: Settings) -> None:
    total = rows * cols
    if total > settings.max_grid_images:
        raise InvalidRequest(
            f"{field}: {rows} rows × {cols} columns = {total} images, "
            f"more than the limit of {settings.max_grid_images}"
        )


def _grid_latents(
    req: GridRequest, card: ModelCard, count: int, seed_source: SeedSource
) -> tuple[np.ndarray, int | None]:
    """The grid's explicit latents, or ``count`` drawn from its seed (random if none); and the seed."""
    if req.z is not None:
        return _explicit_latents(card, req.z), None
    seed = req.seed if req.seed is not None else seed_source()
    return latents_for(seed, count, card.latent.dim, truncation=req.truncation), seed


def _plan_latent_grid(req: GridRequest, card: ModelCard, settings: Settings, seed_source: SeedSource) -> Plan:
    """An unconditional model's grid: ``rows`` × ``columns`` latents, image (r, c) from latent
    index r × columns + c of the seed, so the grid is /generate's n images laid out in rows."""
    if req.labels is not None:
        raise InvalidRequest(f"labels: {card.name!r} is unconditional and takes no labels")
    if req.z is not None and req.rows not in (None, 1):
        raise InvalidRequest("rows: explicit z is one row, one latent per column")
    rows = 1 if req.z is not None else (req.rows or DEFAULT_GRID_ROWS)
    cols = len(req.z) if req.z is not None else (req.columns or DEFAULT_GRID_COLUMNS)
    total = rows * cols
    _check_grid_size("rows", rows, cols, settings)
    z, seed = _grid_latents(req, card, total, seed_source)
    metadata: list[dict[str, object]] = [
        {
            "index": i,
            "label": None,
            "label_name": None,
            "seed": seed,
            "latent_index": i if seed is not None else None,
            "row": i // cols,
            "column": i % cols,
        }
        for i in range(total)
    ]
    return Plan(z=z, labels=None, metadata=metadata, layout=(rows, cols), seed=seed)


def plan_interpolate(
    req: InterpolateRequest, card: ModelCard, settings: Settings, seed_source: SeedSource = random_seed
) -> Plan:
    if req.steps > settings.max_grid_images:
        raise InvalidRequest(f"steps: at most {settings.max_grid_images}, got {req.steps}")
    _require_labels(card, req.label is not None, "label")
    label = _resolve_label(card, req.label, "label") if req.label is not None else None

    seeds: list[int] | None = None
    if req.z is not None:
        z0, z1 = _explicit_latents(card, req.z)
    else:
        seeds = list(req.seeds) if req.seeds is not None else [seed_source(), seed_source()]
        # Each end is image 0 of its seed: exactly what /generate returns for that seed and n=1.
        z0 = latent_for(seeds[0], 0, card.latent.dim, req.truncation)
        z1 = latent_for(seeds[1], 0, card.latent.dim, req.truncation)
    z = interpolate(z0, z1, req.steps, spherical=req.spherical)
    steps = req.steps
    metadata: list[dict[str, object]] = []
    for i in range(steps):
        end_seed = None
        if seeds is not None and i in (0, steps - 1):
            end_seed = seeds[0] if i == 0 else seeds[1]
        metadata.append(
            {
                "index": i,
                "label": label,
                "label_name": _label_name(card, label),
                "seed": end_seed,
                "latent_index": 0 if end_seed is not None else None,
                "t": i / (steps - 1),
            }
        )
    cols = min(steps, MAX_STRIP_COLUMNS)
    labels = np.full(steps, label, dtype=np.int64) if label is not None else None
    return Plan(z=z, labels=labels, metadata=metadata, layout=(math.ceil(steps / cols), cols), seeds=seeds)
