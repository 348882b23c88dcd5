"""A tiny model zoo (untrained ONNX generators plus valid model cards) for deployment checks.

The compose end-to-end (docker/e2e.sh) serves ``exported/`` when it holds models; before any are
trained it serves this zoo instead, mounted over the image's ``/models``. The generators are a
random linear map with tanh, so the whole request path (batching, ORT, encoding, metrics) is
exercised without weights. Usage: ``python tests/deploy/tiny_zoo.py OUT_DIR``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
LATENT = 16
SIDE = 28


def _generator(conditional: bool, num_classes: int, seed: int) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(
        (rng.standard_normal((LATENT, SIDE * SIDE)) / np.sqrt(LATENT)).astype(np.float32), "w"
    )
    shape = numpy_helper.from_array(np.array([-1, 1, SIDE, SIDE], dtype=np.int64), "shape")
    inits = [weight, shape]
    inputs = [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", LATENT])]
    nodes = []
    hidden = "z"
    if conditional:
        table = numpy_helper.from_array(
            rng.standard_normal((num_classes, LATENT)).astype(np.float32), "embedding"
        )
        inits.append(table)
        inputs.append(helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]))
        nodes += [
            helper.make_node("Gather", ["embedding", "label"], ["emb"], axis=0),
            helper.make_node("Add", ["z", "emb"], ["h"]),
        ]
        hidden = "h"
    nodes += [
        helper.make_node("MatMul", [hidden, "w"], ["flat"]),
        helper.make_node("Tanh", ["flat"], ["act"]),
        helper.make_node("Reshape", ["act", "shape"], ["image"]),
    ]
    output = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, SIDE, SIDE])
    graph = helper.make_graph(nodes, "tiny", inputs, [output], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def write_model(out: Path, name: str, labels: list[str] | None, seed: int) -> Path:
    model_dir = out / name
    model_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = model_dir / "model.onnx"
    onnx.save(_generator(labels is not None, len(labels or []), seed), str(onnx_path))
    card = {
        "schema_version": 1,
        "name": name,
        "version": "0",
        "kind": "gan",
        "family": "tiny-linear",
        "description": "Untrained linear generator for deployment checks; its images are noise.",
        "dataset": "none",
        "image": {"channels": 1, "height": SIDE, "width": SIDE, "value_range": [-1.0, 1.0]},
        "latent": {"dim": LATENT, "prior": "normal"},
        "labels": labels,
        "onnx": {
            "file": "model.onnx",
            "opset": OPSET,
            "z_input": "z",
            "label_input": "label" if labels is not None else None,
            "output": "image",
            "sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
        },
    }
    (model_dir / "model.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return model_dir


def build(out: Path) -> list[Path]:
    return [
        write_model(out, "tiny-cond", [str(d) for d in range(10)], seed=1),
        write_model(out, "tiny-uncond", None, seed=2),
    ]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/deploy/tiny_zoo.py OUT_DIR")
    for path in build(Path(sys.argv[1])):
        print(path)
