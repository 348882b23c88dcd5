"""A real ONNX generator that is deliberately slow: for overload and drain tests on a real server.

Graph: the tiny unconditional generator of :mod:`tests.service.onnx_fixtures` (``z -> MatMul ->
Sigmoid -> 1×8×8``) plus a "burn" branch whose cost does not depend on the batch size:
``ReduceSum(z)`` is broadcast into a ``size × size`` matrix that is multiplied ``rounds`` times by a
constant matrix; its sum, times zero, is added to the logits. The branch depends on the input, so
ONNX Runtime cannot fold it away at load time, and the images stay exactly the tiny model's.
Each run costs about ``rounds × 2 × size³`` floating-point operations: with the defaults, tens of
milliseconds on one core, so a server's capacity is small and known.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from service.card import ModelCard, sha256_file, write_card
from tests.service.onnx_fixtures import OPSET, card_dict

SLOW = "slow"
SLOW_DIM = 12


def build_slow_graph(
    *, dim: int = SLOW_DIM, size: int = 512, rounds: int = 12, seed: int = 5
) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    pixels = 64
    weight = (rng.standard_normal((dim, pixels)) * (1.5 / np.sqrt(dim))).astype(np.float32)
    burn = (rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float32)
    init = [
        numpy_helper.from_array(weight, "W"),
        numpy_helper.from_array(burn, "B"),
        numpy_helper.from_array(np.array([size, size], dtype=np.int64), "square"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
        numpy_helper.from_array(np.array([-1, 1, 8, 8], dtype=np.int64), "shape"),
    ]
    nodes = [
        helper.make_node("MatMul", ["z", "W"], ["h"]),
        helper.make_node("ReduceSum", ["z"], ["total"], keepdims=0),
        helper.make_node("Expand", ["total", "square"], ["m0"]),
    ]
    for i in range(rounds):
        nodes += [
            helper.make_node("MatMul", [f"m{i}", "B"], [f"p{i}"]),
            helper.make_node("Tanh", [f"p{i}"], [f"m{i + 1}"]),
        ]
    nodes += [
        helper.make_node("ReduceSum", [f"m{rounds}"], ["burnt"], keepdims=0),
        helper.make_node("Mul", ["burnt", "zero"], ["nothing"]),
        helper.make_node("Add", ["h", "nothing"], ["s"]),
        helper.make_node("Sigmoid", ["s"], ["t"]),
        helper.make_node("Reshape", ["t", "shape"], ["image"]),
    ]
    graph = helper.make_graph(
        nodes,
        "slow-generator",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", dim])],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 8, 8])],
        initializer=init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def write_slow_model(root: Path, name: str = SLOW, **graph: int) -> Path:
    """Write ``root/name`` (model.onnx + card) for the slow unconditional generator."""
    model_dir = root / name
    model_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = model_dir / "model.onnx"
    onnx.save(build_slow_graph(**graph), onnx_path)
    card = ModelCard.model_validate(
        card_dict(
            name,
            dim=graph.get("dim", SLOW_DIM),
            channels=1,
            height=8,
            width=8,
            labels=None,
            sha256=sha256_file(onnx_path),
            value_range=(0.0, 1.0),
        )
    )
    write_card(card, model_dir)
    return model_dir
