"""Tone curves: a trained generator's pixel histogram, matched to its training images'.

Real MNIST is mostly exact black (81% of the training pixels) and a little exact white. A tanh
output reaches −1 only as its input runs off to −∞, so a trained tanh generator leaves a faint
dust where the background should be: 9.1% of ``condgen-mnist``'s pixels sat at 1–10 of 255,
against 0.7% of the real test images', and its strokes were brighter than real ones. Inception
features see both. ``dcgan-mnist`` learned to avoid the dust with a saturating output while
training (:class:`trainer.nets.common.SaturatingTanh`); for a generator already trained, the
correction is a tone curve after it, as a photo editor's curves tool would draw it:

- the black point is the generated value below which lie as many of the generator's pixels as
  the training split has exact-black pixels, and it goes to the edge of black (what 8-bit
  rounding turns to 0); the white point likewise from the share of exact-white pixels (a split
  without exact black, or white, pixels puts that point at the generated minimum, or maximum);
  beyond them the curve is exact black and exact white;
- between them, ``segments`` equal steps of the remaining share: the generated value at each
  quantile goes to the training pixels' value at the same quantile (histogram matching). One
  segment is a plain levels map (a black point and a white point).

The points are fitted on the training split and on latents drawn with the training seed, never the
evaluator's: the test split the evaluator scores against plays no part in them. The curve is
monotone, so it never swaps two tones; it is applied before the service's 8-bit rounding.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

TONE_SAMPLES = 2000  # generated images the curve is fitted on, by default
TONE_SEGMENTS = 16  # linear pieces between the black and the white point
MAX_SEGMENTS = 254  # a card holds at most 257 points: the segments' 255 and the two ends


class ToneError(ValueError):
    """The curve cannot be fitted or appended (a degenerate output, an unexpected graph)."""


def fit_tone_curve(
    generated: np.ndarray,
    real: np.ndarray,
    value_range: tuple[float, float],
    segments: int = TONE_SEGMENTS,
) -> tuple[list[float], list[float]]:
    """Points ``(x, y)`` of the curve that gives ``generated`` (raw output) the pixel histogram of
    ``real`` (uint8 images), rounded to 6 decimals (the figures a card shows and a graph holds)."""
    if not 1 <= segments <= MAX_SEGMENTS:
        raise ToneError(f"a tone curve has 1 to {MAX_SEGMENTS} segments, got {segments}")
    lo, hi = value_range
    values = np.asarray(generated, dtype=np.float64).ravel()
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ToneError("the generated images are empty or not finite")
    real = np.asarray(real).ravel()
    black, white = float(np.mean(real == 0)), float(np.mean(real == 255))
    shares = np.linspace(black, 1.0 - white, segments + 1)
    x = np.quantile(values, shares)
    y = lo + np.quantile(real.astype(np.float64), shares) / 255.0 * (hi - lo)
    # The end points go to the edges of black and white (half a grey level inside the range, where
    # 8-bit rounding turns to 0 and to 255), so that exactly the shares beyond them round there.
    half_step = (hi - lo) / 255 / 2
    y[0], y[-1] = lo + half_step, hi - half_step
    # A generator that saturates (a clamped output) repeats its extreme values: quantiles tie.
    x, y = np.round(x, 6), np.round(y, 6)
    # The first of tied points is kept; at the top that is an inner one, so the last point kept is
    # put back on the edge of white (the tied maximum holds the white share).
    keep = np.concatenate([[True], np.diff(x) > 0])
    x, y = x[keep], np.maximum.accumulate(y[keep])
    y[-1] = round(hi - half_step, 6)
    if len(x) < 2:
        raise ToneError(
            f"the generated pixels take one value between the black and the white share "
            f"(real: {black:.1%} black, {white:.1%} white): the generator's output is degenerate"
        )
    # Beyond the end points, the curve reaches the range's ends at once: exact black and white.
    step = (hi - lo) * 1e-5
    ends_x = [round(float(x[0]) - step, 6), round(float(x[-1]) + step, 6)]
    return [ends_x[0], *map(float, x), ends_x[1]], [float(lo), *map(float, y), float(hi)]


def apply_tone_curve(raw: np.ndarray, x: list[float], y: list[float]) -> np.ndarray:
    """What the appended nodes compute, in numpy (float32, like the graph)."""
    return np.interp(np.asarray(raw, dtype=np.float32), x, y).astype(np.float32)


def append_tone_curve(model: onnx.ModelProto, output: str, x: list[float], y: list[float]) -> None:
    """End the graph with the curve, in place; the graph output keeps its name ``output``.

    ``y0 + Σ_k slope_k · (clip(raw, x_k, x_k+1) − x_k)``, all segments at once on a trailing axis
    (Unsqueeze → Max → Min → Sub → Mul → ReduceSum → Add): equal to the interpolation, flat beyond
    the end points, for the handful of multiply-adds per pixel the segments cost.
    """
    graph = model.graph
    if [o.name for o in graph.output].count(output) != 1:
        raise ToneError(f"the graph has no single output named {output!r}")
    producers = [n for n in graph.node if output in n.output]
    if len(producers) != 1:
        raise ToneError(f"no single node produces {output!r}")
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    slopes = np.diff(ys) / np.diff(xs)
    used = {t for n in graph.node for t in (*n.input, *n.output)} | {i.name for i in graph.initializer}
    names = {
        k: _fresh(f"tone_{k}", used)
        for k in ("axis", "lows", "highs", "slopes", "y0", "raw", "unsq", "max", "min", "sub", "mul", "sum")
    }
    node = producers[0]
    node.output[list(node.output).index(output)] = names["raw"]
    for key, value in (
        ("axis", np.array([-1], dtype=np.int64)),
        ("lows", xs[:-1].astype(np.float32)),
        ("highs", xs[1:].astype(np.float32)),
        ("slopes", slopes.astype(np.float32)),
        ("y0", np.array(ys[0], dtype=np.float32)),
    ):
        graph.initializer.append(numpy_helper.from_array(value, names[key]))
    n = names
    graph.node.extend(
        [
            helper.make_node("Unsqueeze", [n["raw"], n["axis"]], [n["unsq"]], name="tone_unsqueeze"),
            helper.make_node("Max", [n["unsq"], n["lows"]], [n["max"]], name="tone_max"),
            helper.make_node("Min", [n["max"], n["highs"]], [n["min"]], name="tone_min"),
            helper.make_node("Sub", [n["min"], n["lows"]], [n["sub"]], name="tone_sub"),
            helper.make_node("Mul", [n["sub"], n["slopes"]], [n["mul"]], name="tone_mul"),
            helper.make_node("ReduceSum", [n["mul"], n["axis"]], [n["sum"]], name="tone_sum", keepdims=0),
            helper.make_node("Add", [n["sum"], n["y0"]], [output], name="tone_add"),
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
