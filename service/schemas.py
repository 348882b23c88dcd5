"""Request and response bodies.

Request models check what can be checked without knowing the model (types, finiteness, ranges,
which fields go together); what depends on the model's card (label ids and names, latent size) is
checked in :mod:`service.plan`. Unknown fields are refused so a typo (``"seeds"`` for ``"seed"``)
is an error rather than a silently different image.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from service.latents import MAX_LATENT_INDEX, MAX_SEED, MIN_TRUNCATION


def _label_type(value: Any) -> Any:
    # One clear message instead of pydantic's per-union-member errors ("label.int: ...;
    # label.str: ..."); bool is refused explicitly because JSON true would otherwise pass as 1.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("must be a class id (integer) or a class name (string)")
    return value


# A class id (0-based) or a class name from the card, e.g. 3 or "Trouser".
Label = Annotated[
    int | Annotated[str, Field(min_length=1, max_length=128)],
    BeforeValidator(_label_type),
    Field(description="Class id (0-based) or class name from the model card."),
]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED, description=f"0..{MAX_SEED}.")]
Truncation = Annotated[
    float,
    Field(
        ge=MIN_TRUNCATION,
        le=100.0,
        description=(
            "Truncation trick: latent components with |value| above this are redrawn (seeded latents only;"
            f" at least {MIN_TRUNCATION}, below which the redraws have no useful bound)."
        ),
    ),
]
ModelName = Annotated[str, Field(min_length=1, max_length=128, description="Model name, see GET /models.")]
# fail_fast: a list stops at its first bad item, so a body of invalid items costs one error, not
# one error object per item (a 2 MB body held ~0.9 GB of them). The length caps are the largest any
# setting allows (max_grid_images); settings bound requests further once the body has validated.
MAX_LIST_ITEMS = 16384
MAX_LATENT_DIM = 16384
Latent = Annotated[list[float], Field(max_length=MAX_LATENT_DIM, fail_fast=True)]
_VECTOR_SCHEMA = {"title": "Latent", "type": "array", "items": {"type": "number"}, "maxItems": MAX_LATENT_DIM}
# One vector is accepted as a list of one (_as_latent_list), so the schema declares both forms.
Latents = Annotated[
    list[Latent],
    WithJsonSchema(
        {
            "anyOf": [
                _VECTOR_SCHEMA,
                {
                    "title": "Latents",
                    "type": "array",
                    "items": _VECTOR_SCHEMA,
                    "minItems": 1,
                    "maxItems": MAX_LIST_ITEMS,
                },
            ]
        }
    ),
]


class _Body(BaseModel):
    # allow_inf_nan=False: JSON's NaN/Infinity literals (which Python's parser accepts) are a 422.
    # strict: a number is a JSON number, never the string "4", a bool or 2.5 for an integer (an
    # integer still counts as a float).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True, strict=True)


def _as_latent_list(value: Any) -> Any:
    """Accept one latent vector ``[..]`` as shorthand for a list of one ``[[..]]``."""
    if isinstance(value, list) and value and not isinstance(value[0], list):
        return [value]
    return value


class GenerateRequest(_Body):
    model: ModelName
    label: Label | None = Field(default=None, description="One label for every image (conditional models).")
    labels: list[Label] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_LIST_ITEMS,
        fail_fast=True,
        description="One label per image; n = len(labels).",
    )
    z: Latents | None = Field(
        default=None,
        fail_fast=True,
        min_length=1,
        max_length=MAX_LIST_ITEMS,
        description="Explicit latent(s) of the model's latent.dim: one vector or a list.",
    )
    seed: Seed | None = Field(
        default=None, description="Image i uses the latent drawn from (seed, offset + i). Random if omitted."
    )
    n: int | None = Field(
        default=None, ge=1, description="Number of images (default 1, or len(labels) / len(z))."
    )
    offset: int = Field(
        default=0,
        ge=0,
        le=MAX_LATENT_INDEX,
        description=(
            "Image i uses the latent drawn from (seed, offset + i): one seed names an unbounded stream,"
            f" and any slice of it can be asked for again. offset + n - 1 <= {MAX_LATENT_INDEX}."
        ),
    )
    truncation: Truncation | None = None

    @field_validator("z", mode="before")
    @classmethod
    def _wrap_z(cls, value: Any) -> Any:
        return _as_latent_list(value)

    @model_validator(mode="after")
    def _consistent(self) -> GenerateRequest:
        if self.z is not None and self.offset:
            raise ValueError("offset applies to seeded latents, not to an explicit z")
        if self.label is not None and self.labels is not None:
            raise ValueError("give either label (one for all images) or labels (one per image), not both")
        if self.z is not None and self.seed is not None:
            raise ValueError("give either z or seed: seed only chooses latents")
        if self.z is not None and self.truncation is not None:
            raise ValueError("truncation applies to seeded latents, not to an explicit z")
        if self.n is not None:
            if self.labels is not None and self.n != len(self.labels):
                raise ValueError(f"n={self.n} but {len(self.labels)} labels were given")
            if self.z is not None and self.n != len(self.z):
                raise ValueError(f"n={self.n} but {len(self.z)} latent vectors were given")
        if self.labels is not None and self.z is not None and len(self.labels) != len(self.z):
            raise ValueError(f"{len(self.labels)} labels but {len(self.z)} latent vectors")
        return self


class GridRequest(_Body):
    model: ModelName
    labels: list[Label] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_LIST_ITEMS,
        fail_fast=True,
        description="Rows; all classes by default.",
    )
    columns: int | None = Field(default=None, ge=1, description="Latents per row (default 8, or len(z)).")
    rows: int | None = Field(
        default=None,
        ge=1,
        description="Unconditional models: rows of latents (default 4). Conditional: one row per label.",
    )
    seed: Seed | None = Field(
        default=None,
        description=(
            "Column j uses the latent drawn from (seed, j); an unconditional grid's image (r, c) the one "
            "from (seed, r × columns + c). Random if omitted."
        ),
    )
    z: Latents | None = Field(
        default=None,
        fail_fast=True,
        min_length=1,
        max_length=MAX_LIST_ITEMS,
        description="Explicit latents, one per column.",
    )
    truncation: Truncation | None = None

    @field_validator("z", mode="before")
    @classmethod
    def _wrap_z(cls, value: Any) -> Any:
        return _as_latent_list(value)

    @model_validator(mode="after")
    def _consistent(self) -> GridRequest:
        if self.z is not None and self.seed is not None:
            raise ValueError("give either z or seed: seed only chooses latents")
        if self.z is not None and self.truncation is not None:
            raise ValueError("truncation applies to seeded latents, not to an explicit z")
        if self.z is not None and self.columns is not None and self.columns != len(self.z):
            raise ValueError(f"columns={self.columns} but {len(self.z)} latent vectors were given")
        return self


class InterpolateRequest(_Body):
    model: ModelName
    label: Label | None = Field(
        default=None, description="The fixed label (required for conditional models)."
    )
    seeds: list[Seed] | None = Field(
        default=None, min_length=2, max_length=2, description="Two seeds; each end is image 0 of its seed."
    )
    z: list[Latent] | None = Field(
        default=None, fail_fast=True, min_length=2, max_length=2, description="Two explicit latents."
    )
    steps: int = Field(default=8, ge=2, description="Images from one end to the other, both included.")
    spherical: bool = Field(
        default=True, description="Slerp (keeps the prior's norm) or linear interpolation."
    )
    truncation: Truncation | None = None

    @model_validator(mode="after")
    def _consistent(self) -> InterpolateRequest:
        if self.z is not None and self.seeds is not None:
            raise ValueError("give either z or seeds")
        if self.z is not None and self.truncation is not None:
            raise ValueError("truncation applies to seeded latents, not to an explicit z")
        return self


# ---------------------------------------------------------------------------------- responses
class ErrorDetail(BaseModel):
    type: str = Field(examples=["unknown_model"])
    message: str = Field(examples=["unknown model 'foo'; known: cdcgan-mnist"])


class ErrorBody(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"]


class ImageInfo(BaseModel):
    index: int
    label: int | None
    label_name: str | None
    seed: int | None = Field(description="Seed of this image's latent; null for explicit or interpolated z.")
    latent_index: int | None = Field(default=None, description="Latent drawn from (seed, offset + i).")
    row: int | None = None
    column: int | None = None
    t: float | None = Field(default=None, description="Interpolation position, 0..1.")
    png_base64: str


class ImagesResponse(BaseModel):
    model: str
    shape: list[int] = Field(description="[N, C, H, W]")
    seed: int | None
    seeds: list[int] | None = None
    layout: list[int] = Field(description="[rows, cols] of the PNG grid")
    images: list[ImageInfo]


class ModelStatus(BaseModel):
    name: str
    status: Literal["ready", "not_ready", "failed"]
    reason: str | None = None
    providers: list[str] | None = Field(
        default=None,
        description="Execution providers the session really runs on, first first (CPUExecutionProvider "
        "when CUDA was asked for but could not be had).",
    )
    card: dict[str, Any] | None = None
    samples_url: str | None = None


class Limits(BaseModel):
    max_n: int = Field(description="Most images of one /generate request.")
    max_grid_images: int = Field(description="Most images of one /grid or /interpolate request.")


class ModelsResponse(BaseModel):
    models: list[ModelStatus]
    limits: Limits


class ModelReadiness(BaseModel):
    status: Literal["ready", "not_ready", "failed"]
    reason: str | None
    queued_images: int | None = None
    queued_requests: int | None = None
    session_runs: int | None = None


class ReadinessBody(BaseModel):
    status: Literal["ready", "not_ready"]
    message: str
    models: dict[str, ModelReadiness]
    error: ErrorDetail | None = Field(default=None, description="When not ready: the common error shape.")


class ReloadResponse(BaseModel):
    status: Literal["ok", "partial"] = Field(description="partial: some model failed to load.")
    loaded: list[str] = Field(description="New or changed models, now serving their new files.")
    unchanged: list[str] = Field(description="Same files: kept serving, queue and all.")
    removed: list[str] = Field(description="Directories gone: drained and dropped.")
    failed: dict[str, str] = Field(description="Models that cannot serve, with the reason.")
    kept_previous: dict[str, str] = Field(
        description="Models whose new files failed to load: the previous version keeps serving."
    )


GENERATE_EXAMPLES: dict[str, Any] = {
    "seeded": {
        "summary": "Four images of class 3, reproducible",
        "value": {"model": "cdcgan-mnist", "label": 3, "seed": 7, "n": 4},
    },
    "label_name_and_z": {
        "summary": "Class by name, explicit latent",
        "description": "z is one vector of the model's latent.dim numbers (cdcgan-mnist's 5), or a list of"
        " them, one per image. MNIST's class names are its digits.",
        "value": {"model": "cdcgan-mnist", "label": "7", "z": [0.5, -1.2, 0.3, 0.8, -0.4]},
    },
    "unconditional": {
        "summary": "Unconditional model: no label",
        "value": {"model": "dcgan-mnist", "n": 16},
    },
    "per_image_labels": {
        "summary": "One label per image",
        "value": {"model": "cdcgan-mnist", "labels": [0, 1, 2, 3], "seed": 1},
    },
    "slice_of_a_seed": {
        "summary": "Images 64..79 of seed 7's stream",
        "description": "The same images as rows 64..79 of a request with n=80 (or of any other slice).",
        "value": {"model": "cdcgan-mnist", "label": 3, "seed": 7, "n": 16, "offset": 64},
    },
}

GRID_EXAMPLES: dict[str, Any] = {
    "all_classes": {
        "summary": "Every class × 8 latents of seed 7",
        "value": {"model": "cdcgan-mnist", "seed": 7, "columns": 8},
    },
    "some_classes": {
        "summary": "Chosen rows by name",
        "value": {"model": "cgan-fashion-hinge-32", "labels": ["Trouser", "Bag"], "seed": 3, "columns": 6},
    },
}

INTERPOLATE_EXAMPLES: dict[str, Any] = {
    "seeds": {
        "summary": "From seed 1 to seed 2, class 5",
        "value": {"model": "cdcgan-mnist", "label": 5, "seeds": [1, 2], "steps": 10},
    },
    "unconditional": {
        "summary": "Unconditional model, linear path",
        "value": {"model": "dcgan-mnist", "seeds": [3, 4], "steps": 8, "spherical": False},
    },
}
