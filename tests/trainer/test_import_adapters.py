"""The wrapped graph: condgen's signature around the source's own nodes, equal to the source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from service.latents import latents_for
from tests.trainer.fixtures.seed_generators import VARIANTS, cdcgan_output, mlp_output, write_variant
from trainer.importer import ImportOptions, import_model

MLP = {"concat", "flat", "fixed-batch-rows"}


def _run(model_dir: Path, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    out: np.ndarray = session.run(["image"], {"z": z, "label": labels})[0]
    return out


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_wrapped_graph_takes_condgens_signature_and_equals_its_origin(
    variant: str, tmp_path: Path
) -> None:
    source = write_variant(variant, tmp_path / f"{variant}.onnx")
    labels = [str(i) for i in range(10)] if variant in MLP else None
    report = import_model(
        ImportOptions(source=str(source), name=variant, out=tmp_path / "out", labels=labels)
    )
    model = onnx.load(str(report.directory / "model.onnx"))
    signature = {
        v.name: (
            v.type.tensor_type.elem_type,
            [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim],
        )
        for v in [*model.graph.input, *model.graph.output]
    }
    assert signature == {
        "z": (onnx.TensorProto.FLOAT, ["N", 16]),
        "label": (onnx.TensorProto.INT64, ["N"]),
        "image": (onnx.TensorProto.FLOAT, ["N", 1, 28, 28]),
    }
    origin = mlp_output if variant in MLP else cdcgan_output
    for n in (1, 5):  # any batch, fixed-batch sources included
        z, labels_in = latents_for(n, n, 16), (np.arange(n, dtype=np.int64) * 3) % 10
        np.testing.assert_allclose(_run(report.directory, z, labels_in), origin(z, labels_in), atol=1e-5)


def test_a_source_below_opset_13_gets_its_unsqueeze_axes_as_an_attribute(tmp_path: Path) -> None:
    write_variant("index-column", tmp_path / "v11.onnx", opset=11)
    report = import_model(
        ImportOptions(
            source=str(tmp_path / "v11.onnx"), name="v11", out=tmp_path / "out", labels=list("abcdefghij")
        )
    )
    wrapped = onnx.load(str(report.directory / "model.onnx"))
    unsqueeze = next(
        n for n in wrapped.graph.node if n.op_type == "Unsqueeze" and n.name.startswith("adapter")
    )
    assert [a.name for a in unsqueeze.attribute] == ["axes"]
    z, labels = latents_for(3, 4, 16), np.array([9, 0, 4, 2])
    np.testing.assert_allclose(_run(report.directory, z, labels), cdcgan_output(z, labels), atol=1e-5)


def test_a_batch_written_into_the_graph_is_served_row_by_row(tmp_path: Path) -> None:
    source = write_variant("fixed-batch-rows", tmp_path / "rows.onnx")
    report = import_model(
        ImportOptions(source=str(source), name="rows", out=tmp_path / "out", labels=list("abcdefghij"))
    )
    assert report.card.source is not None
    assert report.card.source.batch == "row by row"
    assert "Scan: the batch-1 source graph runs once per row" in report.adapters
    assert [n.op_type for n in onnx.load(str(report.directory / "model.onnx")).graph.node].count("Scan") == 1
