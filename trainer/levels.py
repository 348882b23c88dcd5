"""Output levels: a trained generator's black and white points, fitted to its training images.

Real MNIST is mostly exact black (81% of the training pixels) and a little exact white. A tanh
output reaches −1 only as its input runs off to −∞, so a trained tanh generator leaves a faint
dust where the background should be: 9.1% of ``condgen-mnist``'s pixels sit at 1–10 of 255,
against 0.7% of the real test images', and Inception features see it. ``dcgan-mnist`` learned to
avoid it with a saturating output while training (:class:`trainer.nets.common.SaturatingTanh`);
for a generator already trained, the same correction is a levels map after it,
``clip(scale · x + shift)`` to the value range, as a photo editor's levels tool would set it:

- the black point is the generated value below which lie as many of the generator's pixels as the
  training split has exact-black pixels, and it is mapped to the edge of black (half a grey level
  above the bottom of the range, where rounding to 8 bits turns to 0);
- the white point likewise from the share of exact-white pixels; a split without exact black (or
  white) pixels leaves that end where it is.

Two numbers, fitted on the training split and on latents drawn with the training seed, never the
evaluator's: the test split the evaluator scores against plays no part in them.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

LEVELS_SAMPLES = 2000  # generated images the levels are fitted on, by default


class LevelsError(ValueError):
    """The levels cannot be fitted or appended (a degenerate output, an unexpected graph)."""


def fit_levels(
    generated: np.ndarray, real: np.ndarray, value_range: tuple[float, float]
) -> tuple[float, float]:
    """``(scale, shift)`` such that ``scale · generated + shift`` has ``real``'s (uint8) share of
    exact black and exact white pixels once clipped to ``value_range`` and rounded to 8 bits."""
    lo, hi = value_range
    half_step = (hi - lo) / 255 / 2
    black_edge, white_edge = lo + half_step, hi - half_step
    values = np.asarray(generated, dtype=np.float64).ravel()
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise LevelsError("the generated images are empty or not finite")
    black, white = float(np.mean(real == 0)), float(np.mean(real == 255))
    t0 = float(np.quantile(values, black)) if black > 0 else black_edge
    t1 = float(np.quantile(values, 1.0 - white)) if white > 0 else white_edge
    if not t1 > t0:
        raise LevelsError(
            f"black point {t0:.4f} is not below white point {t1:.4f} "
            f"(real: {black:.1%} black, {white:.1%} white): the generator's output is degenerate"
        )
    scale = (white_edge - black_edge) / (t1 - t0)
    return scale, black_edge - scale * t0


def apply_levels(raw: np.ndarray, scale: float, shift: float, value_range: tuple[float, float]) -> np.ndarray:
    """What the appended nodes compute, in numpy (float32, like the graph)."""
    lo, hi = value_range
    out = np.asarray(raw, dtype=np.float32) * np.float32(scale) + np.float32(shift)
    return np.clip(out, np.float32(lo), np.float32(hi))


def append_levels(
    model: onnx.ModelProto, output: str, scale: float, shift: float, value_range: tuple[float, float]
) -> None:
    """End the graph with Mul → Add → Clip, in place; the graph output keeps its name ``output``."""
    graph = model.graph
    if [o.name for o in graph.output].count(output) != 1:
        raise LevelsError(f"the graph has no single output named {output!r}")
    producers = [n for n in graph.node if output in n.output]
    if len(producers) != 1:
        raise LevelsError(f"no single node produces {output!r}")
    used = {t for n in graph.node for t in (*n.input, *n.output)} | {i.name for i in graph.initializer}
    raw = _fresh(f"{output}_raw", used)
    names = {k: _fresh(f"levels_{k}", used) for k in ("scale", "shift", "lo", "hi", "scaled", "shifted")}
    node = producers[0]
    node.output[list(node.output).index(output)] = raw
    lo, hi = value_range
    for key, value in (("scale", scale), ("shift", shift), ("lo", lo), ("hi", hi)):
        graph.initializer.append(numpy_helper.from_array(np.array(value, dtype=np.float32), names[key]))
    graph.node.extend(
        [
            helper.make_node("Mul", [raw, names["scale"]], [names["scaled"]], name="levels_mul"),
            helper.make_node("Add", [names["scaled"], names["shift"]], [names["shifted"]], name="levels_add"),
            helper.make_node(
                "Clip", [names["shifted"], names["lo"], names["hi"]], [output], name="levels_clip"
            ),
        ]
    )
    onnx.checker.check_model(model)


def _fresh(name: str, used: set[str]) -> str:
    candidate, i = name, 0
    while candidate in used:
        i += 1
        candidate = f"{name}_{i}"
    used.add(candidate)
    return candidate
