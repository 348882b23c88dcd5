"""Exact rewrites of exported ONNX graphs that make them cheaper to serve (or to quantize).

:func:`fold_upsample_conv`: a nearest-neighbour ×2 upsample followed by a 3×3
convolution (stride 1, padding 1) is one transposed convolution (4×4 kernel, stride 2, padding 1).
Every output pixel of the pair reads a 2×2 neighbourhood of the low-resolution input, so the
3×3 kernel's taps collapse, per output phase, into 2×2 sums of taps; the transposed convolution
computes exactly those 4 taps per output pixel where the pair computed 9 on an upsampled map four
times the input's size. For the zoo's upsample-conv generators (the FashionMNIST cGAN family, the
flagships, the 32×32 DCGAN/LSGAN) that is 2.25× fewer multiply-adds in their largest layers and no
upsampled intermediate. The result equals the original up to float rounding (summation order);
the export's parity gate and :func:`optimize_onnx` check it on real batches.

The pass matches only the exact pattern it can prove equal: a ``Resize`` with scales
``[1, 1, 2, 2]``, ``mode=nearest``, ``coordinate_transformation_mode=asymmetric``,
``nearest_mode=floor`` (what ``nn.Upsample(scale_factor=2)`` exports), whose only consumer is a
``Conv`` with constant weights, a 3×3 kernel, unit strides and dilations, one group and padding 1.
Anything else is left as it was.

:func:`fold_batchnorm`: an inference-mode ``BatchNormalization`` is a per-channel affine map, so it
folds into the constant weights and bias of the ``Conv``, ``ConvTranspose`` or ``Gemm`` that
produces its input (through a ``Reshape`` of ``(batch, C·k)`` to ``(batch, C, …)`` for a ``Gemm``).
That covers the normalising half of class-conditional BatchNorm too (a BatchNorm without affine
parameters, followed by a per-class ``Mul``/``Add`` that stays as it is). It saves one pass over
the activations, and a quantizer then sees the folded weights and calibrates one tensor, not two.

:func:`split_conv_transpose`: a transposed convolution with a 4×4 kernel, stride 2 and padding 1
is four 2×2 convolutions, one per output phase, whose outputs interleave by ``DepthToSpace``.
It is exact, but in float32 it measured slower than ORT's ``ConvTranspose`` on every zoo model, so
it is not in :data:`PASSES`; the int8 path (:mod:`trainer.quantize`) uses it, because ONNX
Runtime has an int8 ``Conv`` kernel and no int8 ``ConvTranspose``. Its ``channels_last`` form
interleaves the phases with Transposes, Concats and Reshapes instead of ``DepthToSpace``, which
ONNX Runtime's channels-last int8 kernels run without leaving that layout.

:func:`avgpool_as_conv`: an ``AveragePool`` that divides by the whole window is a depthwise
convolution with constant weights; also for the int8 path only.

:func:`one_channel_conv_as_transpose`: a stride-1 convolution with a single output channel (the
output layer of most zoo generators) is a transposed convolution with the kernel flipped. ONNX
Runtime computes the former 16 channels wide and keeps one; one core, best batch, alternated in
one process: 1.17–1.22× the images/s of the whole float32 graph (condgen-mnist,
cgan-fashion-bce-10), and it is the layer an int8 variant keeps in float32.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

UPSAMPLE_CONV = "Resize(nearest, ×2) + Conv(3×3) → ConvTranspose(4×4, stride 2)"

# Row (and column) tap map. A 3×3 conv on the ×2 upsampled map, at output row 2i + a, reads input
# rows i−1, i, i (a = 0) or i, i, i+1 (a = 1) with kernel rows 0, 1, 2. A 4-tap transposed
# convolution with stride 2 and padding 1 gives output row o the taps k = o − 2·i_in + 1: for
# o = 2i it uses k = 3 on row i−1 and k = 1 on row i; for o = 2i + 1, k = 2 on row i and k = 0 on
# row i+1. Hence K[3] = W[0], K[1] = W[1] + W[2], K[2] = W[0] + W[1], K[0] = W[2]:
_TAPS = np.array(
    [
        [0.0, 0.0, 1.0],  # K[0]
        [0.0, 1.0, 1.0],  # K[1]
        [1.0, 1.0, 0.0],  # K[2]
        [1.0, 0.0, 0.0],  # K[3]
    ],
    dtype=np.float64,
)


def transposed_kernel(weight: np.ndarray) -> np.ndarray:
    """The ConvTranspose kernel ``(C_in, C_out, 4, 4)`` of a 3×3 conv weight ``(C_out, C_in, 3, 3)``
    applied after a nearest ×2 upsample."""
    if weight.ndim != 4 or weight.shape[2:] != (3, 3):
        raise ValueError(f"expected a (C_out, C_in, 3, 3) weight, got {weight.shape}")
    k = np.einsum("ik,ockl,jl->coij", _TAPS, weight.astype(np.float64), _TAPS)
    return k.astype(weight.dtype)


@dataclass
class _Graph:
    """Lookups over one graph: constant tensors by name, and each value's consumers."""

    graph: onnx.GraphProto

    def __post_init__(self) -> None:
        self.constants: dict[str, np.ndarray] = {
            t.name: numpy_helper.to_array(t) for t in self.graph.initializer
        }
        for node in self.graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.outputs = {o.name for o in self.graph.output}

    def attrs(self, node: onnx.NodeProto) -> dict[str, object]:
        return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _is_nearest_x2(g: _Graph, node: onnx.NodeProto) -> bool:
    if node.op_type != "Resize" or len(node.input) != 3 or node.input[1] not in ("", None):
        return False
    scales = g.constants.get(node.input[2])
    if scales is None or scales.tolist() != [1.0, 1.0, 2.0, 2.0]:
        return False
    a = g.attrs(node)
    return (
        a.get("mode") == b"nearest"
        and a.get("coordinate_transformation_mode") == b"asymmetric"
        and a.get("nearest_mode", b"round_prefer_floor") == b"floor"
    )


def _constant_kernel(g: _Graph, node: onnx.NodeProto, op_type: str) -> np.ndarray | None:
    """The 4-D weight of an ``op_type`` node whose weight (and bias, if any) are constants, or None."""
    if node.op_type != op_type or node.input[1] not in g.constants:
        return None
    if len(node.input) > 2 and node.input[2] and node.input[2] not in g.constants:
        return None
    weight = g.constants[node.input[1]]
    return weight if weight.ndim == 4 else None


def _is_same_conv3x3(g: _Graph, node: onnx.NodeProto) -> bool:
    weight = _constant_kernel(g, node, "Conv")
    if weight is None:
        return False
    a = g.attrs(node)
    return (
        weight.shape[2:] == (3, 3)
        and list(a.get("strides", [1, 1])) == [1, 1]  # type: ignore[call-overload]
        and list(a.get("dilations", [1, 1])) == [1, 1]  # type: ignore[call-overload]
        and a.get("group", 1) == 1
        and list(a.get("pads", [0, 0, 0, 0])) == [1, 1, 1, 1]  # type: ignore[call-overload]
        and a.get("auto_pad", b"NOTSET") == b"NOTSET"
    )


def fold_upsample_conv(model: onnx.ModelProto) -> int:
    """Rewrite every nearest-×2-upsample + 3×3 conv pair in place; returns how many were folded."""
    g = _Graph(model.graph)
    folded: dict[int, onnx.NodeProto | None] = {}  # id(node) → replacement (None: drop)
    new_initializers: list[onnx.TensorProto] = []
    for node in model.graph.node:
        if not _is_nearest_x2(g, node) or node.output[0] in g.outputs:
            continue
        users = g.consumers.get(node.output[0], [])
        if len(users) != 1 or not _is_same_conv3x3(g, users[0]):
            continue
        conv = users[0]
        weight = g.constants[conv.input[1]]
        base = f"{conv.output[0]}/folded_upsample"
        inputs = [node.input[0], f"{base}/kernel"]
        new_initializers.append(numpy_helper.from_array(transposed_kernel(weight), inputs[1]))
        if len(conv.input) > 2 and conv.input[2]:
            inputs.append(f"{base}/bias")
            new_initializers.append(numpy_helper.from_array(g.constants[conv.input[2]], inputs[2]))
        replacement = helper.make_node(
            "ConvTranspose",
            inputs,
            [conv.output[0]],
            name=f"{conv.name or base}/folded_upsample",
            kernel_shape=[4, 4],
            strides=[2, 2],
            pads=[1, 1, 1, 1],
        )
        folded[id(node)] = None
        folded[id(conv)] = replacement
    if not folded:
        return 0
    nodes = [folded.get(id(n), n) for n in model.graph.node]
    del model.graph.node[:]
    model.graph.node.extend(n for n in nodes if n is not None)
    model.graph.initializer.extend(new_initializers)
    _drop_unused_constants(model.graph)
    onnx.checker.check_model(model)
    return len(folded) // 2


def _drop_unused_constants(graph: onnx.GraphProto) -> None:
    """Remove initializers and Constant nodes nothing reads any more (the old weights, the scales)."""
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = [n for n in graph.node if n.op_type != "Constant" or n.output[0] in used]
    del graph.node[:]
    graph.node.extend(nodes)


def _bn_scale_shift(g: _Graph, bn: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray] | None:
    """The per-channel ``(scale, shift)`` of an inference-mode BatchNormalization, or None."""
    if len(bn.input) != 5 or any(name not in g.constants for name in bn.input[1:]):
        return None
    a = g.attrs(bn)
    if a.get("training_mode", 0) or len(bn.output) != 1:
        return None
    gamma, beta, mean, var = (g.constants[name].astype(np.float64) for name in bn.input[1:])
    scale = gamma / np.sqrt(var + float(a.get("epsilon", 1e-5)))  # type: ignore[arg-type]
    return scale, beta - mean * scale


def _single_producer(g: _Graph, value: str, producers: dict[str, onnx.NodeProto]) -> onnx.NodeProto | None:
    """The node writing ``value`` when one node (besides Shape) reads it and it is no graph output."""
    node = producers.get(value)
    # A Shape reads only the shape, which folding keeps (the exporter's Reshape targets use it).
    readers = [n for n in g.consumers.get(value, []) if n.op_type != "Shape"]
    if node is None or value in g.outputs or len(readers) != 1:
        return None
    return node


def _const_input(g: _Graph, node: onnx.NodeProto, index: int) -> np.ndarray | None:
    if len(node.input) > index and node.input[index]:
        return g.constants.get(node.input[index])
    return None


def _folded_conv(
    g: _Graph, node: onnx.NodeProto, scale: np.ndarray, shift: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """New (weight, bias) of a Conv/ConvTranspose followed by the per-channel affine, or None."""
    weight = g.constants.get(node.input[1])
    if weight is None or weight.ndim < 3 or g.attrs(node).get("group", 1) != 1:
        return None
    axis = 0 if node.op_type == "Conv" else 1  # ConvTranspose weights are (C_in, C_out, …)
    if weight.shape[axis] != scale.size:
        return None
    bias = _const_input(g, node, 2)
    if len(node.input) > 2 and node.input[2] and bias is None:
        return None
    shape = [1] * weight.ndim
    shape[axis] = -1
    new_weight = weight.astype(np.float64) * scale.reshape(shape)
    old_bias = np.zeros(scale.size) if bias is None else bias.astype(np.float64)
    return new_weight.astype(weight.dtype), (old_bias * scale + shift).astype(weight.dtype)


def _folded_gemm(
    g: _Graph, node: onnx.NodeProto, scale: np.ndarray, shift: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """New (B, C) of a Gemm whose N outputs are C channels of N/C values each, or None."""
    a = g.attrs(node)
    weight = g.constants.get(node.input[1])
    if weight is None or weight.ndim != 2 or a.get("transA", 0):
        return None
    n = weight.shape[0] if a.get("transB", 0) else weight.shape[1]
    bias = _const_input(g, node, 2)
    if len(node.input) > 2 and node.input[2] and (bias is None or bias.size != n):
        return None
    if n % scale.size:
        return None
    # Row-major (batch, N) → (batch, C, …): channel c is the N/C consecutive outputs from c·N/C.
    col_scale = np.repeat(scale, n // scale.size)
    col_shift = np.repeat(shift, n // scale.size)
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))  # type: ignore[arg-type]
    w = weight.astype(np.float64) * alpha
    w = w * (col_scale[:, None] if a.get("transB", 0) else col_scale[None, :])
    b = np.zeros(n) if bias is None else bias.astype(np.float64).reshape(n) * beta
    return w.astype(weight.dtype), (b * col_scale + col_shift).astype(weight.dtype)


def fold_batchnorm(model: onnx.ModelProto) -> int:
    """Fold every foldable inference BatchNormalization into its producer; returns how many."""
    g = _Graph(model.graph)
    producers = {out: node for node in model.graph.node for out in node.output}
    dropped: set[int] = set()
    new_initializers: list[onnx.TensorProto] = []
    for bn in model.graph.node:
        if bn.op_type != "BatchNormalization" or (affine := _bn_scale_shift(g, bn)) is None:
            continue
        via = _single_producer(g, bn.input[0], producers)
        node = via
        if via is not None and via.op_type == "Reshape":
            node = _single_producer(g, via.input[0], producers)
            if node is None or node.op_type != "Gemm":
                continue
        if node is None or node.op_type not in ("Conv", "ConvTranspose", "Gemm"):
            continue
        fold = _folded_gemm if node.op_type == "Gemm" else _folded_conv
        folded = fold(g, node, *affine)
        if folded is None:
            continue
        base = f"{bn.output[0]}/folded_bn"
        new_initializers += [
            numpy_helper.from_array(folded[0], f"{base}/weight"),
            numpy_helper.from_array(folded[1], f"{base}/bias"),
        ]
        del node.input[1:]
        node.input.extend([f"{base}/weight", f"{base}/bias"])
        if node.op_type == "Gemm":
            for attr in list(node.attribute):
                if attr.name in ("alpha", "beta"):
                    node.attribute.remove(attr)
        # The BatchNorm's consumers now read the producer (or the Reshape) directly, and so do the
        # Shape nodes that read its old output (the shape is the same).
        last = via if via is not None and via.op_type == "Reshape" else node
        old = last.output[0]
        last.output[0] = bn.output[0]
        for reader in g.consumers.get(old, []):
            if reader.op_type == "Shape":
                reader.input[0] = bn.output[0]
        dropped.add(id(bn))
    if not dropped:
        return 0
    nodes = [n for n in model.graph.node if id(n) not in dropped]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(new_initializers)
    _drop_unused_constants(model.graph)
    onnx.checker.check_model(model)
    return len(dropped)


# Output phase a (0: even rows, 1: odd rows) of a k=4, s=2, p=1 transposed convolution reads input
# rows (i−1, i) with kernel rows (3, 1) for a = 0, and rows (i, i+1) with kernel rows (2, 0) for
# a = 1: output row o = 2i − 1 + k. As a 2×2 convolution: those taps, padded before resp. after.
_PHASE_TAPS = {0: [3, 1], 1: [2, 0]}
_PHASE_PADS = {0: (1, 0), 1: (0, 1)}


def _is_split_convt(g: _Graph, node: onnx.NodeProto) -> bool:
    weight = _constant_kernel(g, node, "ConvTranspose")
    if weight is None:
        return False
    a = g.attrs(node)
    return (
        weight.shape[2:] == (4, 4)
        and list(a.get("strides", [1, 1])) == [2, 2]  # type: ignore[call-overload]
        and list(a.get("pads", [0, 0, 0, 0])) == [1, 1, 1, 1]  # type: ignore[call-overload]
        and list(a.get("dilations", [1, 1])) == [1, 1]  # type: ignore[call-overload]
        and not list(a.get("output_padding", []))  # type: ignore[call-overload]
        and "output_shape" not in a
        and a.get("group", 1) == 1
        and a.get("auto_pad", b"NOTSET") == b"NOTSET"
    )


def phase_kernels(weight: np.ndarray) -> list[np.ndarray]:
    """The four ``(C_out, C_in, 2, 2)`` Conv kernels of a ``(C_in, C_out, 4, 4)`` transposed-conv
    kernel (stride 2, padding 1), in the phase order (0,0), (0,1), (1,0), (1,1)."""
    return [
        np.ascontiguousarray(weight[:, :, _PHASE_TAPS[a]][:, :, :, _PHASE_TAPS[c]].transpose(1, 0, 2, 3))
        for a in (0, 1)
        for c in (0, 1)
    ]


def _phase_convs(
    g: _Graph, node: onnx.NodeProto, base: str, inits: list[onnx.TensorProto]
) -> list[onnx.NodeProto]:
    """The four phase convolutions of ``node``; phase (a, c) writes ``{base}{a}{c}``."""
    bias = [node.input[2]] if len(node.input) > 2 and node.input[2] else []
    convs = []
    phases = ((0, 0), (0, 1), (1, 0), (1, 1))
    for (a, c), kernel in zip(phases, phase_kernels(g.constants[node.input[1]]), strict=True):
        name = f"{base}{a}{c}"
        inits.append(numpy_helper.from_array(kernel, f"{name}/kernel"))
        pads = [_PHASE_PADS[a][0], _PHASE_PADS[c][0], _PHASE_PADS[a][1], _PHASE_PADS[c][1]]
        convs.append(
            helper.make_node(
                "Conv",
                [node.input[0], f"{name}/kernel", *bias],
                [name],
                name=name,
                kernel_shape=[2, 2],
                pads=pads,
            )
        )
    return convs


def _interleave_dcr(node: onnx.NodeProto, base: str) -> list[onnx.NodeProto]:
    outs = [f"{base}{a}{c}" for a in (0, 1) for c in (0, 1)]
    return [
        helper.make_node("Concat", outs, [f"{base}s"], name=f"{base}s", axis=1),
        helper.make_node(
            "DepthToSpace", [f"{base}s"], [node.output[0]], name=f"{base}/d2s", blocksize=2, mode="DCR"
        ),
    ]


def _interleave_nhwc(
    node: onnx.NodeProto, base: str, channels: int, inits: list[onnx.TensorProto]
) -> list[onnx.NodeProto]:
    """Interleave the phases channels-last, where it is two Concats and two Reshapes: row-major
    (N, H, a, W, c, C) is (N, 2H, 2W, C). ONNX Runtime's int8 convolutions run channels-last, so
    the Transposes here cancel against the ones its layout pass puts around them."""
    const = {
        "rows": [0, 0, 1, -1, channels],  # (N, H, W, 2C) → (N, H, 1, 2W, C)
        "hw": [2, 3],
        "two": [2],
        "batch": [0],
        "channels": [channels],
    }
    for key, value in const.items():
        inits.append(numpy_helper.from_array(np.array(value, dtype=np.int64), f"{base}/{key}"))
    out: list[onnx.NodeProto] = []

    def add(op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        out.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    rows = []
    for a in (0, 1):
        halves = [
            add("Transpose", [f"{base}{a}{c}"], f"{base}{a}{c}/nhwc", perm=[0, 2, 3, 1]) for c in (0, 1)
        ]
        wide = add("Concat", halves, f"{base}/row{a}", axis=3)
        rows.append(add("Reshape", [wide, f"{base}/rows"], f"{base}/row{a}/5d"))
    stacked = add("Concat", rows, f"{base}/rows5d", axis=2)
    hw = add(
        "Gather", [add("Shape", [node.input[0]], f"{base}/in_shape"), f"{base}/hw"], f"{base}/in_hw", axis=0
    )
    hw2 = add("Mul", [hw, f"{base}/two"], f"{base}/out_hw")
    shape = add("Concat", [f"{base}/batch", hw2, f"{base}/channels"], f"{base}/out_shape", axis=0)
    nhwc = add("Reshape", [stacked, shape], f"{base}/out_nhwc")
    out.append(
        helper.make_node("Transpose", [nhwc], [node.output[0]], name=f"{base}/nchw", perm=[0, 3, 1, 2])
    )
    return out


def split_conv_transpose(model: onnx.ModelProto, channels_last: bool = False) -> int:
    """Rewrite every 4×4 stride-2 padding-1 ConvTranspose as four 2×2 Conv whose outputs are
    interleaved by Concat + DepthToSpace (mode DCR: channel block a·2 + c is output phase (a, c)),
    or with ``channels_last`` by Transposes, Concats and Reshapes; returns how many."""
    g = _Graph(model.graph)
    nodes: list[onnx.NodeProto] = []
    new_initializers: list[onnx.TensorProto] = []
    count = 0
    for node in model.graph.node:
        if not _is_split_convt(g, node):
            nodes.append(node)
            continue
        count += 1
        base = f"{node.output[0]}/phase"
        nodes += _phase_convs(g, node, base, new_initializers)
        if channels_last:
            channels = int(g.constants[node.input[1]].shape[1])
            nodes += _interleave_nhwc(node, base, channels, new_initializers)
        else:
            nodes += _interleave_dcr(node, base)
    if not count:
        return 0
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(new_initializers)
    _drop_unused_constants(model.graph)
    onnx.checker.check_model(model)
    return count


# Ops whose output has as many channels as their first input.
_SAME_CHANNELS = {
    "Relu",
    "LeakyRelu",
    "Tanh",
    "Sigmoid",
    "Clip",
    "BatchNormalization",
    "MaxPool",
    "AveragePool",
}


def _channels(g: _Graph, value: str, producers: dict[str, onnx.NodeProto]) -> int | None:
    """The channel count of an NCHW ``value``, from the convolution that computes it, or None."""
    node = producers.get(value)
    while node is not None and node.op_type in _SAME_CHANNELS:
        node = producers.get(node.input[0])
    if node is None or node.op_type not in ("Conv", "ConvTranspose") or node.input[1] not in g.constants:
        return None
    weight = g.constants[node.input[1]]
    group = int(g.attrs(node).get("group", 1))  # type: ignore[call-overload]
    return int(weight.shape[0]) if node.op_type == "Conv" else int(weight.shape[1]) * group


def avgpool_as_conv(model: onnx.ModelProto) -> int:
    """Rewrite every 2-D AveragePool that divides by the full window (``count_include_pad``, or no
    padding) as a depthwise Conv with weights 1/(kh·kw); returns how many. Exact up to rounding,
    and ONNX Runtime quantizes the Conv into a channels-last int8 kernel, where its uint8
    AveragePool is a slow channels-first loop."""
    g = _Graph(model.graph)
    producers = {out: node for node in model.graph.node for out in node.output}
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    for node in model.graph.node:
        a = g.attrs(node)
        kernel = list(a.get("kernel_shape", []))  # type: ignore[call-overload]
        pads = list(a.get("pads", [0, 0, 0, 0]))  # type: ignore[call-overload]
        channels = _channels(g, node.input[0], producers) if node.op_type == "AveragePool" else None
        if (
            channels is None
            or len(kernel) != 2
            or (any(pads) and not a.get("count_include_pad", 0))
            or a.get("ceil_mode", 0)
            or a.get("auto_pad", b"NOTSET") != b"NOTSET"
            or list(a.get("dilations", [1, 1])) != [1, 1]  # type: ignore[call-overload]
        ):
            nodes.append(node)
            continue
        name = f"{node.output[0]}/depthwise"
        weight = np.full((channels, 1, *kernel), 1.0 / (kernel[0] * kernel[1]), dtype=np.float32)
        inits.append(numpy_helper.from_array(weight, f"{name}/kernel"))
        strides = list(a.get("strides", [1, 1]))  # type: ignore[call-overload]
        nodes.append(
            helper.make_node(
                "Conv",
                [node.input[0], f"{name}/kernel"],
                list(node.output),
                name=name,
                group=channels,
                kernel_shape=kernel,
                pads=pads,
                strides=strides,
            )
        )
    if not inits:
        return 0
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(inits)
    onnx.checker.check_model(model)
    return len(inits)


def _is_one_channel_conv(g: _Graph, node: onnx.NodeProto) -> bool:
    weight = _constant_kernel(g, node, "Conv")
    if weight is None:
        return False
    a = g.attrs(node)
    pads = list(a.get("pads", [0, 0, 0, 0]))  # type: ignore[call-overload]
    return (
        weight.shape[0] == 1
        and list(a.get("strides", [1, 1])) == [1, 1]  # type: ignore[call-overload]
        and list(a.get("dilations", [1, 1])) == [1, 1]  # type: ignore[call-overload]
        and a.get("group", 1) == 1
        and a.get("auto_pad", b"NOTSET") == b"NOTSET"
        and pads[:2] == pads[2:]
        and all(0 <= p < k for p, k in zip(pads[:2], weight.shape[2:], strict=True))
    )


def one_channel_conv_as_transpose(model: onnx.ModelProto) -> int:
    """Rewrite every stride-1 Conv with one output channel (the zoo's output layers) as the
    ConvTranspose with the flipped kernel and padding k − 1 − p; returns how many.

    ONNX Runtime runs such a Conv in its blocked channel layout, 16 output channels wide, so it
    computes 16 channels to keep one; its ConvTranspose is one small matrix product and a col2im.
    """
    g = _Graph(model.graph)
    inits: list[onnx.TensorProto] = []
    for node in model.graph.node:
        if not _is_one_channel_conv(g, node):
            continue
        weight = g.constants[node.input[1]]
        a = g.attrs(node)
        kh, kw = weight.shape[2:]
        pads = list(a.get("pads", [0, 0, 0, 0]))  # type: ignore[call-overload]
        flipped = np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        name = f"{node.output[0]}/transposed"
        inits.append(numpy_helper.from_array(flipped, f"{name}/kernel"))
        new_pads = [kh - 1 - pads[0], kw - 1 - pads[1], kh - 1 - pads[2], kw - 1 - pads[3]]
        replacement = helper.make_node(
            "ConvTranspose",
            [node.input[0], f"{name}/kernel", *node.input[2:]],
            list(node.output),
            name=name,
            kernel_shape=[kh, kw],
            pads=new_pads,
        )
        node.CopyFrom(replacement)
    if not inits:
        return 0
    model.graph.initializer.extend(inits)
    _drop_unused_constants(model.graph)
    onnx.checker.check_model(model)
    return len(inits)


BATCHNORM = "BatchNormalization → folded into the preceding Conv/ConvTranspose/Gemm"

ONE_CHANNEL_CONV = "Conv(1 output channel) → ConvTranspose(flipped kernel)"

# Passes in the order they run, by the name a model card records.
PASSES: dict[str, Callable[[onnx.ModelProto], int]] = {
    UPSAMPLE_CONV: fold_upsample_conv,
    BATCHNORM: fold_batchnorm,
    ONE_CHANNEL_CONV: one_channel_conv_as_transpose,
}


def optimize_model(model: onnx.ModelProto) -> list[str]:
    """Run every pass in place; returns one entry per rewrite made, e.g. ``["… ×2"]``."""
    done = []
    for name, run in PASSES.items():
        count = run(model)
        if count:
            done.append(f"{name} ×{count}")
    return done
