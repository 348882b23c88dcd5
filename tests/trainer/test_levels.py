"""Output levels: the fitted black and white points, and the nodes that apply them."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from service.runtime import to_uint8
from trainer.levels import LevelsError, append_levels, apply_levels, fit_levels


def _tanh_outputs(n: int = 200_000, seed: int = 0) -> np.ndarray:
    # A generator's output: a tanh of something that only now and then runs far negative,
    # so most of the "background" sits a few grey levels above black.
    return np.tanh(np.random.default_rng(seed).normal(-1.2, 0.8, n)).astype(np.float32)


def _real(n: int, black: float, white: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    real = rng.integers(1, 255, n).astype(np.uint8)
    u = rng.random(n)
    real[u < black] = 0
    real[u > 1 - white] = 255
    return real


def test_levels_give_the_real_share_of_exact_black_and_white() -> None:
    generated, real = _tanh_outputs(), _real(100_000, black=0.8, white=0.01)
    before = to_uint8(generated, (-1.0, 1.0))
    assert np.mean(before == 0) < 0.05  # the dust: almost nothing is exact black before

    scale, shift = fit_levels(generated, real, (-1.0, 1.0))
    after = to_uint8(apply_levels(generated, scale, shift, (-1.0, 1.0)), (-1.0, 1.0))
    assert np.mean(after == 0) == pytest.approx(np.mean(real == 0), abs=0.002)
    assert np.mean(after == 255) == pytest.approx(np.mean(real == 255), abs=0.002)
    assert scale > 1  # the range between the two points is stretched, never folded


def test_an_end_the_real_images_lack_is_left_where_it_is() -> None:
    generated = _tanh_outputs()
    no_extremes = np.full(1000, 128, dtype=np.uint8)
    scale, shift = fit_levels(generated, no_extremes, (-1.0, 1.0))
    assert scale == pytest.approx(1.0)
    assert shift == pytest.approx(0.0, abs=1e-12)

    # Only a black point: white (the range's top edge) stays put.
    scale, shift = fit_levels(generated, _real(100_000, black=0.5, white=0.0), (-1.0, 1.0))
    assert scale * (1 - 1 / 255) + shift == pytest.approx(1 - 1 / 255)


def test_levels_follow_the_value_range() -> None:
    generated = (_tanh_outputs() + 1) / 2  # a sigmoid-style generator, output in [0, 1]
    real = _real(100_000, black=0.6, white=0.05)
    scale, shift = fit_levels(generated, real, (0.0, 1.0))
    after = to_uint8(apply_levels(generated, scale, shift, (0.0, 1.0)), (0.0, 1.0))
    assert np.mean(after == 0) == pytest.approx(0.6, abs=0.003)
    assert np.mean(after == 255) == pytest.approx(0.05, abs=0.003)


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
    with pytest.raises(LevelsError):
        fit_levels(generated, _real(1000, black=0.5, white=0.1), (-1.0, 1.0))


def _tanh_graph() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 4])
    graph = helper.make_graph([helper.make_node("Tanh", ["z"], ["image"])], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_appended_levels_compute_what_apply_levels_does() -> None:
    model = _tanh_graph()
    append_levels(model, "image", 1.25, -0.1, (-1.0, 1.0))
    assert [o.name for o in model.graph.output] == ["image"]  # the contract's name is kept
    assert [n.op_type for n in model.graph.node] == ["Tanh", "Mul", "Add", "Clip"]

    z = np.linspace(-4, 4, 64, dtype=np.float32).reshape(16, 4)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(["image"], {"z": z})
    np.testing.assert_allclose(got, apply_levels(np.tanh(z), 1.25, -0.1, (-1.0, 1.0)), atol=1e-6)
    assert got.min() == -1.0 and got.max() == 1.0  # noqa: PT018 -- one fact: the clip reaches both ends


def test_levels_need_the_named_output() -> None:
    with pytest.raises(LevelsError, match="no single output"):
        append_levels(_tanh_graph(), "img", 1.0, 0.0, (-1.0, 1.0))
