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

from trainer.graph_passes import UPSAMPLE_CONV, fold_upsample_conv, optimize_model, transposed_kernel


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
