"""Tiny but real ONNX generators for the service tests, built with onnx's helper API (no torch).

``python -m tests.service.onnx_fixtures DIR`` writes the three test models into ``DIR``, e.g. to try
the API by hand before trained models exist.

Graph: ``z (N×dim) -> MatMul W (+ Gather(E, label) for conditional models) -> Tanh | Sigmoid ->
Reshape (N, C, H, W)``. Outputs depend on every latent component and on the label, so wrong rows,
wrong labels or a transposed split all show up as different pixels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from service.card import ModelCard, sha256_file, write_card

OPSET = 17

GRAY = "cond-gray"  # conditional, 1×8×8, latent 16, ten digit classes
RGB = "cond-rgb"  # conditional, 3×6×10 (non-square catches transposed axes), latent 8, three colours
UNCOND = "uncond"  # unconditional, 1×8×8, latent 12, sigmoid output in [0, 1]

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
COLOURS = ["red", "green", "blue"]


def build_graph(
    *,
    dim: int,
    channels: int,
    height: int,
    width: int,
    num_classes: int | None,
    value_range: tuple[float, float] = (-1.0, 1.0),
    seed: int = 0,
    z_name: str = "z",
    label_name: str = "label",
    output_name: str = "image",
    batch: int | str = "N",
    symbolic_output: bool = False,
) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    pixels = channels * height * width
    weight = (rng.standard_normal((dim, pixels)) * (1.5 / np.sqrt(dim))).astype(np.float32)
    init = [
        numpy_helper.from_array(weight, "W"),
        numpy_helper.from_array(np.array([-1, channels, height, width], dtype=np.int64), "shape"),
    ]
    inputs = [helper.make_tensor_value_info(z_name, TensorProto.FLOAT, [batch, dim])]
    nodes = [helper.make_node("MatMul", [z_name, "W"], ["h"])]
    pre = "h"
    if num_classes is not None:
        emb = (rng.standard_normal((num_classes, pixels)) * 0.8).astype(np.float32)
        init.append(numpy_helper.from_array(emb, "E"))
        inputs.append(helper.make_tensor_value_info(label_name, TensorProto.INT64, [batch]))
        nodes += [
            helper.make_node("Gather", ["E", label_name], ["e"], axis=0),
            helper.make_node("Add", ["h", "e"], ["s"]),
        ]
        pre = "s"
    squash = "Tanh" if value_range == (-1.0, 1.0) else "Sigmoid"
    nodes += [
        helper.make_node(squash, [pre], ["t"]),
        helper.make_node("Reshape", ["t", "shape"], [output_name]),
    ]
    graph = helper.make_graph(
        nodes,
        "generator",
        inputs,
        [
            helper.make_tensor_value_info(
                output_name,
                TensorProto.FLOAT,
                [batch, "C", "H", "W"] if symbolic_output else [batch, channels, height, width],
            )
        ],
        initializer=init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9  # readable by any onnxruntime >= 1.15
    onnx.checker.check_model(model)
    return model


def card_dict(
    name: str,
    *,
    dim: int,
    channels: int,
    height: int,
    width: int,
    labels: list[str] | None,
    sha256: str,
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "gan",
        "family": "test-linear",
        "description": "linear test generator",
        "dataset": "synthetic",
        "image": {"channels": channels, "height": height, "width": width, "value_range": list(value_range)},
        "latent": {"dim": dim},
        "labels": labels,
        "onnx": {
            "opset": OPSET,
            "label_input": "label" if labels is not None else None,
            "sha256": sha256,
        },
    }


def write_model(
    root: Path,
    name: str,
    *,
    dim: int = 16,
    channels: int = 1,
    height: int = 8,
    width: int = 8,
    labels: list[str] | None = None,
    value_range: tuple[float, float] = (-1.0, 1.0),
    seed: int = 0,
    samples: bool = False,
    **graph_overrides: Any,
) -> Path:
    """Write ``root/name/model.onnx`` + a valid ``model.json``; returns the model directory."""
    model_dir = root / name
    model_dir.mkdir(parents=True, exist_ok=True)
    model = build_graph(
        dim=dim,
        channels=channels,
        height=height,
        width=width,
        num_classes=len(labels) if labels is not None else None,
        value_range=value_range,
        seed=seed,
        **graph_overrides,
    )
    onnx_path = model_dir / "model.onnx"
    onnx.save(model, onnx_path)
    card = ModelCard.model_validate(
        card_dict(
            name,
            dim=dim,
            channels=channels,
            height=height,
            width=width,
            labels=labels,
            sha256=sha256_file(onnx_path),
            value_range=value_range,
        )
    )
    write_card(card, model_dir)
    if samples:
        from PIL import Image

        Image.new("L", (4, 4), 128).save(model_dir / "samples.png")
    return model_dir


def edit_card(model_dir: Path, **changes: Any) -> None:
    """Rewrite fields of a model's card; nested keys join with ``__`` (``latent__dim=32``)."""
    path = model_dir / "model.json"
    data = json.loads(path.read_text())
    for key, value in changes.items():
        node = data
        *parents, leaf = key.split("__")
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    path.write_text(json.dumps(data))


def reference_images(model_dir: Path, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    """The model's uint8 output computed without the service (plain numpy), for cross-checks."""
    model = onnx.load(model_dir / "model.onnx")
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    h = z.astype(np.float32) @ weights["W"]
    if labels is not None:
        h = h + weights["E"][labels]
    card = json.loads((model_dir / "model.json").read_text())
    lo, hi = card["image"]["value_range"]
    out = np.tanh(h) if (lo, hi) == (-1.0, 1.0) else 1.0 / (1.0 + np.exp(-h))
    img = card["image"]
    out = out.reshape(-1, img["channels"], img["height"], img["width"])
    return np.rint(np.clip((out - lo) * (255.0 / (hi - lo)), 0, 255)).astype(np.uint8)


def write_zoo(root: Path) -> Path:
    """The three models the service tests use (see the module constants)."""
    write_model(root, GRAY, dim=16, labels=DIGITS, seed=1, samples=True)
    write_model(root, RGB, dim=8, channels=3, height=6, width=10, labels=COLOURS, seed=2)
    write_model(root, UNCOND, dim=12, value_range=(0.0, 1.0), seed=3)
    return root


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m tests.service.onnx_fixtures DIR")
    for model_dir in sorted(write_zoo(Path(sys.argv[1])).iterdir()):
        sys.stdout.write(f"wrote {model_dir}\n")
