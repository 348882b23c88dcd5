"""Float16 storage of a float32 graph's weights: half the bytes on disk, the same float32 compute.

:func:`pack_float16` stores every large float32 initializer as float16 and puts a ``Cast`` back to
float32 in front of the graph; ONNX Runtime folds those casts into float32 constants when it builds
the session (constant folding, on at every optimisation level the service uses), so the served
graph runs the float32 kernels it ran before, on weights rounded to float16's 11-bit mantissa.
The rounding is not exact, so the pack is gated on what a client receives: the uint8 pixels of the
packed graph must be within one level of the float32 graph's on :data:`AGREEMENT` of the pixels of
:data:`AGREEMENT_ROWS` images (:func:`trainer.card_graph.pixel_agreement`).

:func:`unpack_float16` is the inverse (float16 values widened, exactly): the graph passes and the
quantizer read weights as float32 initializers, so they unpack first.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FLOAT16_WEIGHTS = "float32 initializers stored as float16, cast back at load"
SUFFIX = "__float16"  # the stored initializer's name: <float32 name> + SUFFIX
MIN_ELEMENTS = 1024  # smaller tensors (biases, norms) stay float32: they save nothing and steer outputs
AGREEMENT = 0.999  # share of uint8 pixels that must stay within one level of the float32 graph
AGREEMENT_ROWS = 500
AGREEMENT_SEED = 16_016  # latents of the gate: not the evaluation's, calibration's or grids' seeds


def pack_float16(model: onnx.ModelProto) -> int:
    """Store the graph's large float32 initializers as float16 (in place); returns how many.

    Values beyond float16's range would become infinities, so such a tensor stays float32.
    """
    graph = model.graph
    inputs = {i.name for i in graph.input}
    casts: list[onnx.NodeProto] = []
    kept: list[onnx.TensorProto] = []
    for tensor in graph.initializer:
        array = numpy_helper.to_array(tensor) if tensor.data_type == TensorProto.FLOAT else None
        if (
            array is None
            or array.size < MIN_ELEMENTS
            or tensor.name in inputs  # an overridable input keeps the type its callers feed
            or not np.all(np.abs(array) <= np.finfo(np.float16).max)
        ):
            kept.append(tensor)
            continue
        kept.append(numpy_helper.from_array(array.astype(np.float16), tensor.name + SUFFIX))
        casts.append(helper.make_node("Cast", [tensor.name + SUFFIX], [tensor.name], to=TensorProto.FLOAT))
    if casts:
        del graph.initializer[:]
        graph.initializer.extend(kept)
        nodes = [*casts, *graph.node]
        del graph.node[:]
        graph.node.extend(nodes)
    return len(casts)


def unpack_float16(model: onnx.ModelProto) -> int:
    """Turn every ``Cast`` of a packed initializer back into a float32 initializer (in place)."""
    packed = {t.name: t for t in model.graph.initializer if t.name.endswith(SUFFIX)}
    casts = [
        n for n in model.graph.node if n.op_type == "Cast" and len(n.input) == 1 and n.input[0] in packed
    ]
    if not casts:
        return 0
    restored = [
        numpy_helper.from_array(numpy_helper.to_array(packed[n.input[0]]).astype(np.float32), n.output[0])
        for n in casts
    ]
    used = {n.input[0] for n in casts}
    kept = [t for t in model.graph.initializer if t.name not in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend([*kept, *restored])
    cast_outputs = {n.output[0] for n in casts}
    nodes = [n for n in model.graph.node if not (n.op_type == "Cast" and n.output[0] in cast_outputs)]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return len(casts)


def is_packed(model: onnx.ModelProto) -> bool:
    return any(t.name.endswith(SUFFIX) for t in model.graph.initializer)
