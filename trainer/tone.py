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

A conditional generator gets one curve per label, fitted on its images of that label against the
training images of that class: the classes' histograms differ (in the MNIST training split, a 1
inks 11% of its pixels and a 0 25%), and one shared curve leaves each class's own error in place.

The points are fitted on the training split and on latents drawn with the training seed, never the
evaluator's: the test split the evaluator scores against plays no part in them. The curve is
monotone, so it never swaps two tones; it is applied before the service's 8-bit rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

TONE_SAMPLES = 2000  # generated images the curve is fitted on, by default
TONE_SEGMENTS = 16  # linear pieces between the black and the white point
MAX_SEGMENTS = 254  # a card holds at most 257 points: the segments' 255 and the two ends


Points = tuple[list[float], list[float]]  # a curve's x and y


class ToneError(ValueError):
    """The curve cannot be fitted or appended (a degenerate output, an unexpected graph)."""


def fit_tone_curve(
    generated: np.ndarray,
    real: np.ndarray,
    value_range: tuple[float, float],
    segments: int = TONE_SEGMENTS,
) -> Points:
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


def fit_label_tone_curves(
    generated: np.ndarray,
    labels: np.ndarray,
    real: np.ndarray,
    real_labels: np.ndarray,
    value_range: tuple[float, float],
    num_classes: int,
    segments: int = TONE_SEGMENTS,
) -> list[Points]:
    """One curve per label ``0..num_classes-1``: ``generated[labels == k]`` matched to
    ``real[real_labels == k]``."""
    curves = []
    for k in range(num_classes):
        mine, theirs = generated[labels == k], real[real_labels == k]
        if mine.size == 0 or theirs.size == 0:
            raise ToneError(f"label {k}: {mine.size} generated and {theirs.size} real pixels to fit on")
        try:
            curves.append(fit_tone_curve(mine, theirs, value_range, segments))
        except ToneError as e:
            raise ToneError(f"label {k}: {e}") from e
    return curves


def apply_tone_curve(
    raw: np.ndarray, curves: Sequence[Points], labels: np.ndarray | None = None
) -> np.ndarray:
    """What the appended nodes compute, in numpy (float32, like the graph): image i goes through
    ``curves[labels[i]]``, or through the one curve."""
    raw = np.asarray(raw, dtype=np.float32)
    if len(curves) == 1:
        return np.interp(raw, *curves[0]).astype(np.float32)
    if labels is None or len(labels) != len(raw):
        raise ToneError(f"{len(curves)} curves, one per label, need one label per image")
    out = np.empty_like(raw)
    for i, label in enumerate(labels):
        out[i] = np.interp(raw[i], *curves[int(label)])
    return out


def append_tone_curve(
    model: onnx.ModelProto, output: str, curves: Sequence[Points], label_input: str | None = None
) -> None:
    """End the graph with the curve(s), in place; the graph output keeps its name ``output``.

    ``y0 + Σ_k slope_k · (clip(raw, x_k, x_k+1) − x_k)``, all segments at once on a trailing axis
    (Unsqueeze → Max → Min → Sub → Mul → ReduceSum → Add): equal to the interpolation, flat beyond
    the end points, for the handful of multiply-adds per pixel the segments cost. With one curve
    per label, each image's row of segment tables is gathered by its label first (Gather →
    Unsqueeze); curves with fewer points are padded with empty segments, which add nothing.
    """
    graph = model.graph
    if [o.name for o in graph.output].count(output) != 1:
        raise ToneError(f"the graph has no single output named {output!r}")
    producers = [n for n in graph.node if output in n.output]
    if len(producers) != 1:
        raise ToneError(f"no single node produces {output!r}")
    per_label = len(curves) > 1
    label = label_input or ""
    if per_label and label not in {i.name for i in graph.input}:
        raise ToneError(
            f"{len(curves)} curves, one per label, need the graph's label input ({label_input!r})"
        )
    rank = len(next(o for o in graph.output if o.name == output).type.tensor_type.shape.dim)
    if per_label and rank < 2:
        # The gathered tables need the output's rank to be shaped against it: [B, …] at least.
        raise ToneError(
            f"{output!r} has rank {rank}, not [batch, …]: the gathered tables cannot be shaped to it"
        )
    lows, highs, slopes, y0 = _segment_tables(curves)
    used = {t for n in graph.node for t in (*n.input, *n.output)} | {i.name for i in graph.initializer}
    keys = ["axis", "lows", "highs", "slopes", "y0", "raw", "unsq", "max", "min", "sub", "mul", "sum"]
    if per_label:
        keys += ["label_axes", *(f"{t}_{s}" for t in ("lows", "highs", "slopes", "y0") for s in "gu")]
    n = {k: _fresh(f"tone_{k}", used) for k in keys}
    node = producers[0]
    node.output[list(node.output).index(output)] = n["raw"]
    tables = {"lows": lows, "highs": highs, "slopes": slopes, "y0": y0}
    consts = {"axis": np.array([-1], dtype=np.int64)}
    if per_label:
        # Gathered, the tables are [B, K] and [B]; axes 1..rank−1 make them [B, 1, 1, 1, K] against
        # the unsqueezed image's [B, C, H, W, 1], and y0 [B, 1, 1, 1] against the image.
        consts["label_axes"] = np.arange(1, rank, dtype=np.int64)
    else:
        tables = {k: v[0] for k, v in tables.items()}
    for key, value in {**consts, **tables}.items():
        graph.initializer.append(numpy_helper.from_array(value, n[key]))
    table_out = {k: n[k] for k in tables}
    if per_label:
        for t in tables:
            graph.node.extend(
                [
                    helper.make_node("Gather", [n[t], label], [n[f"{t}_g"]], name=f"tone_{t}_gather", axis=0),
                    helper.make_node(
                        "Unsqueeze", [n[f"{t}_g"], n["label_axes"]], [n[f"{t}_u"]], name=f"tone_{t}_unsqueeze"
                    ),
                ]
            )
            table_out[t] = n[f"{t}_u"]
    graph.node.extend(
        [
            helper.make_node("Unsqueeze", [n["raw"], n["axis"]], [n["unsq"]], name="tone_unsqueeze"),
            helper.make_node("Max", [n["unsq"], table_out["lows"]], [n["max"]], name="tone_max"),
            helper.make_node("Min", [n["max"], table_out["highs"]], [n["min"]], name="tone_min"),
            helper.make_node("Sub", [n["min"], table_out["lows"]], [n["sub"]], name="tone_sub"),
            helper.make_node("Mul", [n["sub"], table_out["slopes"]], [n["mul"]], name="tone_mul"),
            helper.make_node("ReduceSum", [n["mul"], n["axis"]], [n["sum"]], name="tone_sum", keepdims=0),
            helper.make_node("Add", [n["sum"], table_out["y0"]], [output], name="tone_add"),
        ]
    )
    onnx.checker.check_model(model)


def _segment_tables(curves: Sequence[Points]) -> tuple[np.ndarray, ...]:
    """float32 [curves, K] lows, highs and slopes, and [curves] y0, for K = the most segments of any
    curve; a shorter curve's extra segments are empty (low = high = its last x, slope 0)."""
    if not curves:
        raise ToneError("no tone curve to append")
    k = max(len(x) for x, _ in curves) - 1
    lows, highs, slopes = (np.zeros((len(curves), k)) for _ in range(3))
    y0 = np.zeros(len(curves))
    for i, (x, y) in enumerate(curves):
        xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        m = len(xs) - 1
        lows[i], highs[i] = xs[-1], xs[-1]
        lows[i, :m], highs[i, :m], slopes[i, :m] = xs[:-1], xs[1:], np.diff(ys) / np.diff(xs)
        y0[i] = ys[0]
    return tuple(a.astype(np.float32) for a in (lows, highs, slopes, y0))


def _fresh(name: str, used: set[str]) -> str:
    candidate, i = name, 0
    while candidate in used:
        i += 1
        candidate = f"{name}_{i}"
    used.add(candidate)
    return candidate
