"""Tone curves: the fitted points, and the nodes that apply them."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from service.card import CurvePoints
from service.runtime import to_uint8
from trainer.tone import (
    ToneError,
    append_tone_curve,
    apply_tone_curve,
    fit_label_tone_curves,
    fit_tone_curve,
)


def _tanh_outputs(n: int = 200_000, seed: int = 0) -> np.ndarray:
    # A generator's output: a tanh of something that only now and then runs far negative,
    # so most of the "background" sits a few grey levels above black.
    return np.tanh(np.random.default_rng(seed).normal(-1.2, 0.8, n)).astype(np.float32)


def _real(n: int, black: float, white: float, seed: int = 1) -> np.ndarray:
    """uint8 pixels: ``black`` of them 0, ``white`` 255, the rest skewed towards the dark."""
    rng = np.random.default_rng(seed)
    real = (1 + 253 * rng.random(n) ** 2).astype(np.uint8)
    u = rng.random(n)
    real[u < black] = 0
    real[u > 1 - white] = 255
    return real


def _histogram(values: np.ndarray) -> np.ndarray:
    return np.bincount(values.ravel(), minlength=256) / values.size


def test_the_curve_gives_the_real_histogram() -> None:
    generated, real = _tanh_outputs(), _real(100_000, black=0.8, white=0.01)
    before = to_uint8(generated, (-1.0, 1.0))
    assert np.mean(before == 0) < 0.05  # the dust: almost nothing is exact black before

    x, y = fit_tone_curve(generated, real, (-1.0, 1.0), segments=16)
    CurvePoints(x=x, y=y)  # what the card accepts: increasing x, non-decreasing y
    after = to_uint8(apply_tone_curve(generated, [(x, y)]), (-1.0, 1.0))
    assert np.mean(after == 0) == pytest.approx(np.mean(real == 0), abs=0.002)
    assert np.mean(after == 255) == pytest.approx(np.mean(real == 255), abs=0.002)
    # Between the ends, the cumulative histograms agree to a couple of percent.
    gap = np.abs(np.cumsum(_histogram(after)) - np.cumsum(_histogram(real))).max()
    assert gap < 0.02
    assert np.abs(np.cumsum(_histogram(before)) - np.cumsum(_histogram(real))).max() > 0.5


def test_one_segment_is_a_black_and_a_white_point() -> None:
    generated, real = _tanh_outputs(), _real(100_000, black=0.8, white=0.01)
    x, y = fit_tone_curve(generated, real, (-1.0, 1.0), segments=1)
    # Exact black, the edge of black, the edge of white, exact white.
    assert y == pytest.approx([-1.0, -1 + 1 / 255, 1 - 1 / 255, 1.0], abs=1e-6)
    assert x[1] == pytest.approx(np.quantile(generated, np.mean(real == 0)), abs=1e-5)
    assert x[2] == pytest.approx(np.quantile(generated, 1 - np.mean(real == 255)), abs=1e-5)
    assert x[0] < x[1] < x[2] < x[3]


def test_the_curve_follows_the_value_range() -> None:
    generated = (_tanh_outputs() + 1) / 2  # a sigmoid-style generator, output in [0, 1]
    real = _real(100_000, black=0.6, white=0.05)
    x, y = fit_tone_curve(generated, real, (0.0, 1.0))
    assert (y[0], y[-1]) == (0.0, 1.0)  # the range's ends, whatever the range
    after = to_uint8(apply_tone_curve(generated, [(x, y)]), (0.0, 1.0))
    assert np.mean(after == 0) == pytest.approx(0.6, abs=0.003)
    assert np.mean(after == 255) == pytest.approx(0.05, abs=0.003)


def test_a_clamped_generator_s_ties_are_merged() -> None:
    # A saturating output puts a fifth of its pixels at exactly −1: their quantiles tie.
    generated = np.clip(_tanh_outputs() * 1.3, -1, 1)
    x, y = fit_tone_curve(generated, _real(100_000, black=0.1, white=0.0), (-1.0, 1.0))
    assert np.all(np.diff(x) > 0)
    assert np.all(np.diff(y) >= 0)
    # ... and at the top: a fifth of the pixels at exactly +1, where real images have 10% white.
    top = np.clip(-_tanh_outputs() * 1.3, -1, 1)
    x, y = fit_tone_curve(top, _real(100_000, black=0.0, white=0.1), (-1.0, 1.0))
    assert y[-2] == pytest.approx(1 - 1 / 255, abs=1e-6)  # the tied maximum is the edge of white
    assert np.mean(to_uint8(apply_tone_curve(top, [(x, y)]), (-1.0, 1.0)) >= 254) >= 0.1


@pytest.mark.parametrize(
    "generated",
    [
        np.zeros(1000, dtype=np.float32),
        np.array([], dtype=np.float32),
        np.array([0.1, np.nan], dtype=np.float32),
    ],
    ids=["constant", "empty", "nan"],
)
def test_a_degenerate_output_is_refused(generated: np.ndarray) -> None:
    with pytest.raises(ToneError):
        fit_tone_curve(generated, _real(1000, black=0.5, white=0.1), (-1.0, 1.0))


@pytest.mark.parametrize("segments", [0, 255])
def test_a_curve_has_a_bounded_number_of_segments(segments: int) -> None:
    with pytest.raises(ToneError, match="1 to 254 segments"):
        fit_tone_curve(_tanh_outputs(), _real(1000, black=0.5, white=0.1), (-1.0, 1.0), segments=segments)


def test_the_most_segments_fit_on_a_card() -> None:
    x, y = fit_tone_curve(_tanh_outputs(), _real(100_000, black=0.5, white=0.1), (-1.0, 1.0), segments=254)
    CurvePoints(x=x, y=y)


def _tanh_graph() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 1, 4, 4])
    y = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 4, 4])
    graph = helper.make_graph([helper.make_node("Tanh", ["z"], ["image"])], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_the_appended_curve_computes_the_interpolation() -> None:
    x, y = [-0.8, -0.2, 0.5, 0.9], [-1.0, -0.6, 0.1, 1.0]
    model = _tanh_graph()
    append_tone_curve(model, "image", [(x, y)])
    assert [o.name for o in model.graph.output] == ["image"]  # the contract's name is kept

    z = np.linspace(-4, 4, 16 * 16, dtype=np.float32).reshape(16, 1, 4, 4)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(["image"], {"z": z})
    assert got.shape == z.shape
    np.testing.assert_allclose(got, apply_tone_curve(np.tanh(z), [(x, y)]), atol=1e-6)
    # Flat beyond the end points: the darkest inputs are exact black, the brightest exact white.
    assert got.min() == -1.0
    assert got.max() == 1.0


def test_a_curve_needs_the_named_output() -> None:
    with pytest.raises(ToneError, match="no single output"):
        append_tone_curve(_tanh_graph(), "img", [([0.0, 1.0], [0.0, 1.0])])


def test_each_label_gets_its_own_class_s_histogram() -> None:
    # Two classes drawn with the same dust but with different real ink: one shared curve could
    # match only their mixture; per-label curves match each.
    generated = np.concatenate([_tanh_outputs(seed=0), _tanh_outputs(seed=1)])
    labels = np.repeat([0, 1], len(generated) // 2)
    real = np.concatenate([_real(100_000, black=0.9, white=0.0), _real(100_000, black=0.6, white=0.05)])
    real_labels = np.repeat([0, 1], 100_000)
    curves = fit_label_tone_curves(generated, labels, real, real_labels, (-1.0, 1.0), num_classes=2)
    assert len(curves) == 2
    after = to_uint8(apply_tone_curve(generated.reshape(2, -1), curves, np.array([0, 1])), (-1.0, 1.0))
    for k, black in ((0, 0.9), (1, 0.6)):
        assert np.mean(after[k] == 0) == pytest.approx(black, abs=0.003)
    assert np.mean(after[1] == 255) == pytest.approx(0.05, abs=0.003)
    with pytest.raises(ToneError, match="label 2: 0 generated"):
        fit_label_tone_curves(generated, labels, real, real_labels, (-1.0, 1.0), num_classes=3)
    with pytest.raises(ToneError, match="one label per image"):
        apply_tone_curve(generated.reshape(2, -1), curves)


def _conditional_tanh_graph() -> onnx.ModelProto:
    model = _tanh_graph()
    model.graph.input.append(helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]))
    return model


def test_the_appended_per_label_curves_follow_each_image_s_label() -> None:
    # Curves of different lengths: the shorter ones are padded with empty segments.
    curves = [
        ([-0.8, 0.9], [-1.0, 1.0]),
        ([-0.8, -0.2, 0.5, 0.9], [-1.0, -0.6, 0.1, 1.0]),
        ([-0.5, 0.0, 0.5], [-1.0, 0.5, 1.0]),
    ]
    model = _conditional_tanh_graph()
    append_tone_curve(model, "image", curves, label_input="label")
    assert [o.name for o in model.graph.output] == ["image"]

    z = np.linspace(-4, 4, 12 * 16, dtype=np.float32).reshape(12, 1, 4, 4)
    labels = np.array([2, 0, 1] * 4, dtype=np.int64)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(["image"], {"z": z, "label": labels})
    expected = apply_tone_curve(np.tanh(z), curves, labels)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    for i, label in enumerate(labels):  # each image through its own label's curve, not another's
        np.testing.assert_allclose(got[i], np.interp(np.tanh(z[i]), *curves[label]), atol=1e-6)


def test_per_label_curves_need_the_label_input() -> None:
    curves = [([0.0, 1.0], [0.0, 1.0])] * 2
    with pytest.raises(ToneError, match="need the graph's label input"):
        append_tone_curve(_tanh_graph(), "image", curves, label_input="label")
    with pytest.raises(ToneError, match="need the graph's label input"):
        append_tone_curve(_conditional_tanh_graph(), "image", curves, label_input=None)


def test_per_label_curves_need_a_batch_shaped_output() -> None:
    model = _conditional_tanh_graph()
    del model.graph.output[0].type.tensor_type.shape.dim[:]  # an output of unknown rank
    with pytest.raises(ToneError, match="has rank 0"):
        append_tone_curve(model, "image", [([0.0, 1.0], [0.0, 1.0])] * 2, label_input="label")
