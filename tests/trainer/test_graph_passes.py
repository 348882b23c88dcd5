"""The exact graph rewrites: nearest-×2 upsample + 3×3 conv → one transposed convolution."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from trainer.graph_passes import (
    BATCHNORM,
    ONE_CHANNEL_CONV,
    UPSAMPLE_CONV,
    avgpool_as_conv,
    fold_batchnorm,
    fold_upsample_conv,
    one_channel_conv_as_transpose,
    optimize_model,
    split_conv_transpose,
    transposed_kernel,
)


def _onnx_of(module: nn.Module, shape: tuple[int, ...]) -> onnx.ModelProto:
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (torch.zeros(shape),),
            buf,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
            opset_version=17,
            do_constant_folding=True,
            dynamo=False,
        )
    return onnx.load_from_string(buf.getvalue())


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    out: np.ndarray = session.run(None, {"x": x})[0]
    return out


def _ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


@pytest.mark.parametrize(
    ("cin", "cout", "bias", "size"), [(3, 5, True, 7), (8, 1, False, 4), (1, 16, True, 9)]
)
def test_the_transposed_kernel_is_the_upsample_conv_pair(cin: int, cout: int, bias: bool, size: int) -> None:
    conv = nn.Conv2d(cin, cout, 3, 1, 1, bias=bias)
    x = torch.randn(2, cin, size, size)
    with torch.no_grad():
        expected = conv(F.interpolate(x, scale_factor=2, mode="nearest"))
        kernel = torch.from_numpy(transposed_kernel(conv.weight.numpy()))
        got = F.conv_transpose2d(x, kernel, conv.bias, stride=2, padding=1)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_a_generator_like_stack_is_folded_and_unchanged_in_output() -> None:
    net = nn.Sequential(
        nn.Upsample(scale_factor=2),
        nn.Conv2d(8, 6, 3, 1, 1),
        nn.BatchNorm2d(6),  # folded into the conv by the exporter: the pass sees one Conv
        nn.LeakyReLU(0.2),
        nn.Upsample(scale_factor=2),
        nn.Conv2d(6, 1, 3, 1, 1),
        nn.Tanh(),
    )
    with torch.no_grad():
        net[2].running_mean.uniform_(-0.5, 0.5)
        net[2].running_var.uniform_(0.5, 2.0)
    model = _onnx_of(net, (1, 8, 7, 7))
    original = onnx.ModelProto()
    original.CopyFrom(model)
    assert fold_upsample_conv(model) == 2
    assert "Resize" not in _ops(model)
    assert _ops(model).count("ConvTranspose") == 2
    x = np.random.default_rng(0).standard_normal((5, 8, 7, 7)).astype(np.float32)
    np.testing.assert_allclose(_run(model, x), _run(original, x), atol=1e-5)
    # Nothing is left to fold, and the old weights and scales are gone from the file.
    assert fold_upsample_conv(model) == 0
    assert len(model.SerializeToString()) < len(original.SerializeToString()) * 2


@pytest.mark.parametrize(
    "net",
    [
        nn.Sequential(nn.Upsample(scale_factor=3), nn.Conv2d(2, 2, 3, 1, 1)),  # not ×2
        nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear"), nn.Conv2d(2, 2, 3, 1, 1)),
        nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(2, 2, 3, 2, 1)),  # strided
        nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(2, 2, 5, 1, 2)),  # 5×5
        nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(2, 2, 3, 1, 0)),  # unpadded
        nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(2, 2, 3, 1, 1, groups=2)),
    ],
    ids=["x3", "bilinear", "strided", "5x5", "unpadded", "grouped"],
)
def test_other_patterns_are_left_alone(net: nn.Module) -> None:
    model = _onnx_of(net, (1, 2, 6, 6))
    before = model.SerializeToString()
    assert fold_upsample_conv(model) == 0
    assert model.SerializeToString() == before


class _Shared(nn.Module):
    """The upsampled map feeds two convolutions: folding one would still compute the upsample."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 2, 3, 1, 1)
        self.b = nn.Conv2d(2, 2, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=2.0, mode="nearest")
        out: torch.Tensor = self.a(up) + self.b(up)
        return out


def test_an_upsample_with_two_consumers_is_left_alone() -> None:
    model = _onnx_of(_Shared(), (1, 2, 5, 5))
    assert "Resize" in _ops(model)
    assert fold_upsample_conv(model) == 0


def test_optimize_model_names_what_it_did() -> None:
    model = _onnx_of(nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(1, 4, 3, 1, 1)), (1, 1, 4, 4))
    assert optimize_model(model) == [f"{UPSAMPLE_CONV} ×1"]
    assert optimize_model(model) == []


# --- BatchNorm folding and the four-phase split, on graphs built node by node -----------------


def _graph(
    nodes: list[onnx.NodeProto], inits: dict[str, np.ndarray], x_shape: list[str | int | None]
) -> onnx.ModelProto:
    graph = onnx.helper.make_graph(
        nodes,
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, x_shape)],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", None, None, None])],
        initializer=[onnx.numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def _bn_inits(channels: int, rng: np.random.Generator, affine: bool = True) -> dict[str, np.ndarray]:
    return {
        "gamma": rng.uniform(0.5, 2.0, channels) if affine else np.ones(channels),
        "beta": rng.uniform(-1.0, 1.0, channels) if affine else np.zeros(channels),
        "mean": rng.uniform(-0.5, 0.5, channels),
        "var": rng.uniform(0.2, 3.0, channels),
    }


def _bn(x: str, y: str) -> onnx.NodeProto:
    return onnx.helper.make_node("BatchNormalization", [x, "gamma", "beta", "mean", "var"], [y], epsilon=1e-3)


def _same_output(model: onnx.ModelProto, original: onnx.ModelProto, x: np.ndarray) -> None:
    np.testing.assert_allclose(_run(model, x), _run(original, x), atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("op", ["Conv", "ConvTranspose"])
def test_batchnorm_folds_into_a_convolution(op: str) -> None:
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((4, 6, 3, 3)) * 0.3  # Conv: (C_out 4, C_in 6); ConvT: (C_in 4, C_out 6)
    channels = 4 if op == "Conv" else 6
    model = _graph(
        [onnx.helper.make_node(op, ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), _bn("c", "y")],
        {"w": weight, "b": rng.standard_normal(channels), **_bn_inits(channels, rng)},
        ["N", 6 if op == "Conv" else 4, 5, 5],
    )
    original = onnx.ModelProto()
    original.CopyFrom(model)
    assert fold_batchnorm(model) == 1
    assert _ops(model) == [op]
    _same_output(model, original, rng.standard_normal((3, 6 if op == "Conv" else 4, 5, 5)).astype(np.float32))
    assert fold_batchnorm(model) == 0


def test_batchnorm_folds_into_a_gemm_and_through_the_reshape_to_channels() -> None:
    """The class-conditional generators' first block: Gemm → Reshape(batch, C, 3, 3) → BN without
    affine parameters (the per-class Mul/Add after it stays); a Shape reads the Gemm's output."""
    rng = np.random.default_rng(2)
    nodes = [
        onnx.helper.make_node("Gemm", ["x", "w", "b"], ["g"], transB=1, alpha=0.5, beta=2.0),
        onnx.helper.make_node("Shape", ["g"], ["s"], start=0, end=1),
        onnx.helper.make_node("Concat", ["s", "tail"], ["shape"], axis=0),
        onnx.helper.make_node("Reshape", ["g", "shape"], ["r"]),
        _bn("r", "n"),
        onnx.helper.make_node("Mul", ["n", "gain"], ["y"]),
    ]
    inits = {
        "w": rng.standard_normal((18, 5)),
        "b": rng.standard_normal(18),
        **_bn_inits(2, rng, affine=False),
    }
    inits["gain"] = rng.uniform(0.5, 1.5, (1, 2, 1, 1))
    model = _graph(nodes, inits, ["N", 5])
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.array([2, 3, 3], dtype=np.int64), "tail"))
    original = onnx.ModelProto()
    original.CopyFrom(model)
    assert optimize_model(model) == [f"{BATCHNORM} ×1"]
    assert "BatchNormalization" not in _ops(model)
    _same_output(model, original, rng.standard_normal((4, 5)).astype(np.float32))


def test_a_shape_read_of_the_folded_output_follows_it() -> None:
    """``x.size(...)`` in a module exports a Shape of the convolution's output: it must still have
    a producer once the BatchNorm after that convolution is gone."""
    rng = np.random.default_rng(4)
    nodes = [
        onnx.helper.make_node("Conv", ["x", "w"], ["c"]),
        onnx.helper.make_node("Shape", ["c"], ["s"]),
        _bn("c", "n"),
        onnx.helper.make_node("Reshape", ["n", "s"], ["y"]),
    ]
    model = _graph(nodes, {"w": rng.standard_normal((2, 2, 1, 1)), **_bn_inits(2, rng)}, ["N", 2, 4, 4])
    original = onnx.ModelProto()
    original.CopyFrom(model)
    assert fold_batchnorm(model) == 1
    onnx.checker.check_model(model, full_check=True)
    _same_output(model, original, rng.standard_normal((3, 2, 4, 4)).astype(np.float32))


def test_a_batchnorm_whose_input_is_read_twice_is_left_alone() -> None:
    rng = np.random.default_rng(3)
    nodes = [
        onnx.helper.make_node("Conv", ["x", "w"], ["c"]),
        _bn("c", "n"),
        onnx.helper.make_node("Add", ["n", "c"], ["y"]),  # the unnormalised map is needed too
    ]
    model = _graph(nodes, {"w": rng.standard_normal((2, 2, 1, 1)), **_bn_inits(2, rng)}, ["N", 2, 4, 4])
    assert fold_batchnorm(model) == 0
    assert "BatchNormalization" in _ops(model)


@pytest.mark.parametrize("channels_last", [False, True], ids=["depth-to-space", "channels-last"])
@pytest.mark.parametrize(
    ("cin", "cout", "bias", "size"), [(3, 5, True, 7), (8, 2, False, 4), (1, 4, True, 1)]
)
def test_the_four_phase_split_is_the_transposed_convolution(
    cin: int, cout: int, bias: bool, size: int, channels_last: bool
) -> None:
    rng = np.random.default_rng(4)
    inits = {"w": rng.standard_normal((cin, cout, 4, 4))}
    inputs = ["x", "w"]
    if bias:
        inits["b"] = rng.standard_normal(cout)
        inputs.append("b")
    node = onnx.helper.make_node(
        "ConvTranspose", inputs, ["y"], kernel_shape=[4, 4], strides=[2, 2], pads=[1, 1, 1, 1]
    )
    model = _graph([node], inits, ["N", cin, None, None])
    original = onnx.ModelProto()
    original.CopyFrom(model)
    assert split_conv_transpose(model, channels_last=channels_last) == 1
    ops = _ops(model)
    assert ops.count("Conv") == 4
    assert "ConvTranspose" not in ops
    assert ("DepthToSpace" in ops) != channels_last
    x = rng.standard_normal((2, cin, size, size)).astype(np.float32)
    assert _run(model, x).shape == (2, cout, 2 * size, 2 * size)
    _same_output(model, original, x)
    # The same graph answers another batch size and a non-square input.
    _same_output(model, original, rng.standard_normal((3, cin, size + 2, size + 1)).astype(np.float32))


@pytest.mark.parametrize(
    "attrs",
    [
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
        {"kernel_shape": [4, 4], "strides": [1, 1], "pads": [1, 1, 1, 1]},
        {"kernel_shape": [4, 4], "strides": [2, 2], "pads": [0, 0, 0, 0]},
        {"kernel_shape": [4, 4], "strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]},
    ],
    ids=["3x3", "stride1", "unpadded", "output_padding"],
)
def test_other_transposed_convolutions_are_not_split(attrs: dict[str, list[int]]) -> None:
    k = attrs["kernel_shape"][0]
    model = _graph(
        [onnx.helper.make_node("ConvTranspose", ["x", "w"], ["y"], **attrs)],  # type: ignore[arg-type]
        {"w": np.ones((2, 2, k, k))},
        ["N", 2, 4, 4],
    )
    assert split_conv_transpose(model) == 0
    assert _ops(model) == ["ConvTranspose"]


def test_an_average_pool_becomes_a_depthwise_convolution() -> None:
    rng = np.random.default_rng(5)
    nodes = [
        onnx.helper.make_node("ConvTranspose", ["x", "w"], ["c"]),
        onnx.helper.make_node("LeakyRelu", ["c"], ["r"], alpha=0.2),
        onnx.helper.make_node(
            "AveragePool", ["r"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1
        ),
    ]
    model = _graph(nodes, {"w": rng.standard_normal((2, 3, 2, 2))}, ["N", 2, 5, 5])
    original = onnx.ModelProto()
    original.CopyFrom(model)
    assert avgpool_as_conv(model) == 1
    assert _ops(model) == ["ConvTranspose", "LeakyRelu", "Conv"]
    _same_output(model, original, rng.standard_normal((2, 2, 5, 5)).astype(np.float32))


def test_an_average_pool_that_excludes_padding_is_left_alone() -> None:
    nodes = [
        onnx.helper.make_node("Conv", ["x", "w"], ["c"]),
        onnx.helper.make_node("AveragePool", ["c"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    ]
    model = _graph(nodes, {"w": np.ones((2, 2, 1, 1))}, ["N", 2, 5, 5])
    assert avgpool_as_conv(model) == 0


@pytest.mark.parametrize(("k", "pad", "bias"), [(3, 1, True), (3, 0, False), (5, 2, True), (4, 1, True)])
def test_a_one_channel_convolution_is_its_flipped_transpose(k: int, pad: int, bias: bool) -> None:
    rng = np.random.default_rng(6)
    inits = {"w": rng.standard_normal((1, 5, k, k))}
    inputs = ["x", "w"]
    if bias:
        inits["b"] = rng.standard_normal(1)
        inputs.append("b")
    model = _graph(
        [onnx.helper.make_node("Conv", inputs, ["y"], pads=[pad] * 4)], inits, ["N", 5, None, None]
    )
    original = onnx.ModelProto()
    original.CopyFrom(model)
    assert optimize_model(model) == [f"{ONE_CHANNEL_CONV} ×1"]
    assert _ops(model) == ["ConvTranspose"]
    _same_output(model, original, rng.standard_normal((2, 5, 9, 8)).astype(np.float32))


@pytest.mark.parametrize(
    ("shape", "attrs"),
    [
        ((2, 5, 3, 3), {"pads": [1, 1, 1, 1]}),
        ((1, 5, 3, 3), {"strides": [2, 2]}),
        ((1, 5, 3, 3), {"pads": [1, 1, 0, 0]}),
    ],
    ids=["two-channels", "strided", "asymmetric"],
)
def test_other_convolutions_stay_convolutions(shape: tuple[int, ...], attrs: dict[str, list[int]]) -> None:
    model = _graph(
        [onnx.helper.make_node("Conv", ["x", "w"], ["y"], **attrs)],  # type: ignore[arg-type]
        {"w": np.ones(shape)},
        ["N", 5, 6, 6],
    )
    assert one_channel_conv_as_transpose(model) == 0
