"""Compose ONNX adapter nodes around a source graph so that it takes condgen's own signature.

The wrapped graph takes ``z`` float32 [N, D] and, when conditional, ``label`` int64 [N], and gives
``image`` float32 [N, C, H, W] with a dynamic batch. The source's nodes and weights are kept as they
are (every name prefixed with ``source/``); before them, adapters build the source's own inputs
(cast, unsqueeze, one-hot, concat), after them its output becomes N×C×H×W (reshape, transpose,
cast). A source fixed at batch 1 either has its batch axis declared dynamic (:data:`MADE_DYNAMIC`;
the import then checks that it really runs any batch) or runs inside a ``Scan`` once per row
(:data:`ROW_BY_ROW`). Each adapter is returned in words for the card.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import onnx
from onnx import TensorProto, compose, helper, numpy_helper

from .signature import InputSide, OutputSide, Signature, declared_io, opset

Z, LABEL, IMAGE = "z", "label", "image"
PREFIX = "source/"
Batch = Literal["dynamic", "made dynamic", "row by row"]
MADE_DYNAMIC: Batch = "made dynamic"
ROW_BY_ROW: Batch = "row by row"


def _elem(dtype: np.dtype) -> int:
    return int(helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))


class _Builder:
    """Nodes and constants of the outer graph, with Unsqueeze/Squeeze spelled for the source's opset."""

    def __init__(self, version: int) -> None:
        self.version = version
        self.nodes: list[onnx.NodeProto] = []
        self.constants: list[onnx.TensorProto] = []
        self.adapters: list[str] = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.constants.append(numpy_helper.from_array(value, f"adapter/{name}"))
        return f"adapter/{name}"

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=f"{output}/{op}", **attrs))
        return output

    def axes_node(self, op: str, x: str, axis: int, output: str) -> onnx.NodeProto:
        """Unsqueeze or Squeeze of one axis: axes an input from opset 13, an attribute before."""
        if self.version >= 13:
            axes = f"adapter/axes_{axis}"
            if axes not in {c.name for c in self.constants}:
                self.const(f"axes_{axis}", np.array([axis], dtype=np.int64))
            return helper.make_node(op, [x, axes], [output], name=f"adapter/{output}")
        return helper.make_node(op, [x], [output], name=f"adapter/{output}", axes=[axis])


def _to_rank(b: _Builder, x: str, rank: int, what: str) -> str:
    """``x`` [N, X] as the source takes it: unchanged, or [N, X, 1, 1]."""
    if rank == 2:
        return x
    shape = b.const(f"{x.replace('/', '_')}_4d", np.array([0, -1, 1, 1], dtype=np.int64))
    b.adapters.append(f"Reshape({what} [N, X] → [N, X, 1, 1])")
    return b.node("Reshape", [x, shape], f"{x}_4d")


def _input_adapters(b: _Builder, side: InputSide, target: dict[str, str]) -> None:
    """Nodes from ``z`` / ``label`` to the tensors named ``target[source input]``."""
    z = Z
    if side.z_dtype != np.float32:
        z = b.node("Cast", [Z], "adapter/z_cast", to=_elem(side.z_dtype))
        b.adapters.append(f"Cast(z float32 → {side.z_dtype.name})")
    if side.encoding is None:
        b.node("Identity", [_to_rank(b, z, side.z_rank, "z")], target[side.z_input])
        return
    if side.encoding != "concat":
        z = _to_rank(b, z, side.z_rank, "z")
    if side.encoding == "index":
        assert side.label_input is not None
        assert side.label_dtype is not None
        label = LABEL
        if side.label_dtype != np.int64:
            label = b.node("Cast", [LABEL], "adapter/label_cast", to=_elem(side.label_dtype))
            b.adapters.append(f"Cast(label int64 → {side.label_dtype.name})")
        if side.label_rank == 2:
            b.nodes.append(b.axes_node("Unsqueeze", label, 1, "adapter/label_column"))
            label = "adapter/label_column"
            b.adapters.append("Unsqueeze(label [N] → [N, 1])")
        b.node("Identity", [z], target[side.z_input])
        b.node("Identity", [label], target[side.label_input])
        return
    dtype = side.label_dtype if side.encoding == "onehot" else side.z_dtype
    assert dtype is not None
    depth = b.const("depth", np.array(side.num_classes, dtype=np.int64))
    values = b.const("onehot_values", np.array([0, 1], dtype=dtype))
    onehot = b.node("OneHot", [LABEL, depth, values], "adapter/onehot", axis=-1)
    b.adapters.append(
        f"OneHot(label, depth {side.num_classes}) → {np.dtype(dtype).name} [N, {side.num_classes}]"
    )
    if side.encoding == "onehot":
        assert side.label_input is not None
        b.node("Identity", [z], target[side.z_input])
        b.node("Identity", [_to_rank(b, onehot, side.label_rank, "one-hot")], target[side.label_input])
        return
    joint = b.node("Concat", [z, onehot], "adapter/joint", axis=1)
    b.node("Identity", [_to_rank(b, joint, side.z_rank, "[z, one-hot]")], target[side.z_input])
    width = side.latent_dim + side.num_classes
    b.adapters.append(f"Concat([z, one-hot]) → {side.z_input!r} [N, {width}]")


def _output_adapters(b: _Builder, out: OutputSide, source: str) -> None:
    """Nodes from the source's output tensor ``source`` to ``image``."""
    c, h, w = out.image
    x = source
    shown = ", ".join(map(str, out.row_shape))
    if out.layout == "flat":
        hwc = out.flat_order == "nhwc"
        shape = b.const("image_shape", np.array([-1, h, w, c] if hwc else [-1, c, h, w], dtype=np.int64))
        x = b.node("Reshape", [x, shape], "adapter/image_4d")
        b.adapters.append(
            f"Reshape(output [N, {shown}] → [N, {', '.join(map(str, (h, w, c) if hwc else (c, h, w)))}])"
        )
        if hwc:
            x = b.node("Transpose", [x], "adapter/image_nchw", perm=[0, 3, 1, 2])
            b.adapters.append("Transpose(output NHWC → NCHW)")
    elif out.layout == "nhwc":
        x = b.node("Transpose", [x], "adapter/image_nchw", perm=[0, 3, 1, 2])
        b.adapters.append(f"Transpose(output [N, {shown}] NHWC → NCHW)")
    if out.dtype != np.float32:
        x = b.node("Cast", [x], "adapter/image_float", to=TensorProto.FLOAT)
        b.adapters.append(f"Cast(output {out.dtype.name} → float32)")
    b.node("Identity", [x], IMAGE)


def _dynamic_batch(model: onnx.ModelProto) -> None:
    """Declare axis 0 of every input and output dynamic, and drop inner shapes inferred at batch 1."""
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_param = "N"
    del model.graph.value_info[:]


def _row_by_row(b: _Builder, src: onnx.ModelProto, model: onnx.ModelProto, sig: Signature) -> str:
    """A Scan over the batch whose body runs the (prefixed) source graph ``src`` on one row; returns
    the stacked output. Its inputs are the whole-batch tensors ``adapter/batch/<input>``."""
    inputs, _ = declared_io(model)
    body_in, body_nodes = [], []
    for t in inputs:
        row = f"row/{t.name}"
        dims = [d if isinstance(d, int) else None for d in t.shape[1:]]
        body_in.append(helper.make_tensor_value_info(row, _elem(t.dtype), dims))
        body_nodes.append(b.axes_node("Unsqueeze", row, 0, PREFIX + t.name))
    out = sig.output
    body_nodes.extend(src.graph.node)
    body_nodes.append(b.axes_node("Squeeze", PREFIX + out.name, 0, "row/output"))
    body_out = helper.make_tensor_value_info("row/output", _elem(out.dtype), list(out.row_shape))
    body = helper.make_graph(body_nodes, "source_row", body_in, [body_out])
    # The body reads the source's weights from the outer graph; only its nodes move inside.
    b.constants.extend(src.graph.initializer)
    stacked = "adapter/rows_output"
    scan_inputs = [f"adapter/batch/{t.name}" for t in inputs]
    b.nodes.append(
        helper.make_node(
            "Scan", scan_inputs, [stacked], name="adapter/rows", body=body, num_scan_inputs=len(inputs)
        )
    )
    b.adapters.append("Scan: the batch-1 source graph runs once per row")
    return stacked


def _describe_renames(side: InputSide, out: OutputSide) -> str:
    if side.encoding == "concat":
        renames = [f"[z, one-hot(label)] → {side.z_input!r}"]
    else:
        renames = [f"z → {side.z_input!r}"]
        if side.label_input is not None:
            renames.append(f"label → {side.label_input!r}")
    return f"inputs: {', '.join(renames)}; output {out.name!r} → image"


def wrap(model: onnx.ModelProto, sig: Signature, batch: Batch) -> tuple[onnx.ModelProto, list[str]]:
    """The source graph with condgen's signature, and the adapters composed around it, in words."""
    src = onnx.ModelProto()
    src.CopyFrom(model)
    if batch == MADE_DYNAMIC:
        _dynamic_batch(src)
    src = compose.add_prefix(src, PREFIX)
    side, out = sig.inputs, sig.output
    b = _Builder(opset(model))
    b.adapters.append(_describe_renames(side, out))
    inputs, _ = declared_io(model)
    rows = batch == ROW_BY_ROW
    # Row by row, the adapters build whole-batch tensors that the Scan slices; else they feed the source.
    feeds = {t.name: (f"adapter/batch/{t.name}" if rows else PREFIX + t.name) for t in inputs}
    _input_adapters(b, side, feeds)
    if rows:
        source_output = _row_by_row(b, src, model, sig)
        before: list[onnx.NodeProto] = []
    else:
        source_output = PREFIX + out.name
        before = [*b.nodes, *src.graph.node]  # topological order: adapters, source, adapters
        b.nodes = []
        b.constants[:0] = list(src.graph.initializer)
    _output_adapters(b, out, source_output)
    if batch == MADE_DYNAMIC:
        b.adapters.append("batch axis: fixed 1 declared dynamic (checked on a batch of several rows)")

    graph_inputs = [helper.make_tensor_value_info(Z, TensorProto.FLOAT, ["N", side.latent_dim])]
    if side.encoding is not None:
        graph_inputs.append(helper.make_tensor_value_info(LABEL, TensorProto.INT64, ["N"]))
    c, h, w = out.image
    graph_output = helper.make_tensor_value_info(IMAGE, TensorProto.FLOAT, ["N", c, h, w])
    graph = helper.make_graph(
        [*before, *b.nodes], "condgen_import", graph_inputs, [graph_output], initializer=b.constants
    )
    wrapped = helper.make_model(graph, opset_imports=list(model.opset_import), producer_name="condgen import")
    wrapped.ir_version = max(model.ir_version, 7)
    wrapped.functions.extend(src.functions)
    onnx.checker.check_model(wrapped)
    return wrapped, b.adapters
