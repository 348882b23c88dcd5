"""What an import is asked for: the options of ``python -m trainer import``, and its one error."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Encoding = Literal["index", "onehot", "concat"]
Layout = Literal["nchw", "nhwc"]
ENCODINGS: tuple[Encoding, ...] = ("index", "onehot", "concat")
LAYOUTS: tuple[Layout, ...] = ("nchw", "nhwc")


class ImportRefused(ValueError):
    """The source cannot be imported as asked. The message (1–2 lines) names the option to pass."""


@dataclass(frozen=True)
class ImportOptions:
    """Everything ``trainer import`` takes; None means "infer it from the source, or refuse"."""

    source: str  # an .onnx file, a TorchScript file, or "path/to/file.py:Class" / "package.module:Class"
    name: str
    out: Path = Path("exported")
    weights: Path | None = None  # a PyTorch class's state_dict
    kwargs: dict[str, object] = field(default_factory=dict)  # a PyTorch class's constructor arguments
    latent_dim: int | None = None
    labels: list[str] | None = None  # class names; --num-classes K gives "0".."K-1"
    z_input: str | None = None
    label_input: str | None = None
    output: str | None = None
    label_encoding: Encoding | None = None
    layout: Layout | None = None
    image: tuple[int, int, int] | None = None  # C, H, W of a flat output
    value_range: tuple[float, float] | None = None
    dataset: str = "unknown"
    description: str = ""
    license: str | None = None
    replace: bool = False  # an existing model of this name in ``out`` is replaced, not refused

    @property
    def num_classes(self) -> int | None:
        return len(self.labels) if self.labels is not None else None


def class_names(labels: str | None, num_classes: int | None) -> list[str] | None:
    """``--labels a,b,c`` or ``--num-classes K`` (names ``0..K-1``); neither: unconditional."""
    if labels is not None and num_classes is not None:
        raise ImportRefused("--labels and --num-classes both given: pass one of them")
    if labels is not None:
        names = [n.strip() for n in labels.split(",")]
        if not names or any(not n for n in names) or len(set(names)) != len(names):
            raise ImportRefused(
                f"--labels {labels!r}: expected distinct, non-empty names separated by commas"
            )
        return names
    if num_classes is not None:
        if num_classes < 1:
            raise ImportRefused(f"--num-classes {num_classes}: expected at least 1")
        return [str(i) for i in range(num_classes)]
    return None


def parse_ints(text: str, count: int, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != count or any(v < 1 for v in values):
        raise ImportRefused(f"{option} {text!r}: expected {count} positive integers separated by commas")
    return values


def parse_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise ImportRefused(
            f"--value-range {text!r}: expected LO,HI, e.g. 0,1 (a negative LO: --value-range=-1,1)"
        ) from None
    if not lo < hi:
        raise ImportRefused(f"--value-range {text!r}: LO must be below HI")
    return lo, hi
