"""Float16 weight storage: half the file, casts folded by ONNX Runtime, gated on the served pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from service.card import sha256_file
from tests.service.conftest import make_settings, serve_app
from tests.trainer.test_export import _export_unoptimized, _tiny_checkpoint
from trainer import cli
from trainer import export as export_mod
from trainer.export import ExportError, optimize_exported, store_float16, verify_export
from trainer.weight_storage import (
    FLOAT16_WEIGHTS,
    MIN_ELEMENTS,
    SUFFIX,
    is_packed,
    pack_float16,
    unpack_float16,
)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_checkpoint("dcgan-mnist", "mnist", tmp_path_factory.mktemp("run"))


def _model(*tensors: np.ndarray) -> onnx.ModelProto:
    """One Identity per initializer, so every tensor is a graph output."""
    inits = [numpy_helper.from_array(t, f"w{i}") for i, t in enumerate(tensors)]
    nodes = [helper.make_node("Identity", [f"w{i}"], [f"out{i}"]) for i in range(len(tensors))]
    outputs = [helper.make_tensor_value_info(f"out{i}", TensorProto.FLOAT, None) for i in range(len(tensors))]
    return helper.make_model(helper.make_graph(nodes, "g", [], outputs, inits))


def test_large_float32_tensors_are_packed_and_unpack_to_their_rounded_values() -> None:
    rng = np.random.default_rng(0)
    big = rng.standard_normal(MIN_ELEMENTS * 2).astype(np.float32)
    small = rng.standard_normal(8).astype(np.float32)
    huge = np.full(MIN_ELEMENTS, 1e6, dtype=np.float32)  # beyond float16's range: kept as it is
    model = _model(big, small, huge)
    assert pack_float16(model) == 1
    assert is_packed(model)
    names = {t.name: t.data_type for t in model.graph.initializer}
    assert names == {"w0" + SUFFIX: TensorProto.FLOAT16, "w1": TensorProto.FLOAT, "w2": TensorProto.FLOAT}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    out = session.run(None, {})
    np.testing.assert_array_equal(out[0], big.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(out[1], small)

    assert unpack_float16(model) == 1
    assert not is_packed(model)
    assert [n.op_type for n in model.graph.node] == ["Identity"] * 3
    restored = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    np.testing.assert_array_equal(restored["w0"], big.astype(np.float16).astype(np.float32))
    assert unpack_float16(model) == 0


def test_onnx_runtime_folds_the_casts_away_at_load(tiny_ckpt: Path, tmp_path: Path) -> None:
    dest = _export_unoptimized(tiny_ckpt, tmp_path / "out")
    assert store_float16(dest) is not None
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(dest / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    optimized = onnx.load(str(tmp_path / "optimized.onnx"))
    assert "Cast" not in {n.op_type for n in optimized.graph.node}
    assert TensorProto.FLOAT16 not in {t.data_type for t in optimized.graph.initializer}


async def test_a_stored_model_is_half_the_bytes_and_serves(tiny_ckpt: Path, tmp_path: Path) -> None:
    dest = _export_unoptimized(tiny_ckpt, tmp_path / "out")
    size = (dest / "model.onnx").stat().st_size
    agreement = store_float16(dest)
    assert agreement is not None
    assert agreement >= 0.999
    assert (dest / "model.onnx").stat().st_size < 0.55 * size
    card = verify_export(dest)  # the card's digest follows the file
    assert card.onnx.rewrites
    assert card.onnx.rewrites[-1].startswith(FLOAT16_WEIGHTS)
    digest = sha256_file(dest / "model.onnx")
    assert store_float16(dest) is None  # stored already: nothing written
    assert sha256_file(dest / "model.onnx") == digest
    async with serve_app(make_settings(dest.parent)) as (_, client):
        resp = await client.post("/generate", json={"model": dest.name, "seed": 3})
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "image/png"


def test_a_graph_that_fails_the_gate_is_kept_as_it_was(
    tiny_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = _export_unoptimized(tiny_ckpt, tmp_path / "out")
    before = sha256_file(dest / "model.onnx")
    monkeypatch.setattr(export_mod, "AGREEMENT", 1.01)  # a bound no rounding can meet
    with pytest.raises(ExportError, match="within one level"):
        store_float16(dest)
    assert sha256_file(dest / "model.onnx") == before
    assert verify_export(dest).onnx.rewrites == []


def test_optimize_rewrites_a_stored_graph_and_stores_it_again(tiny_ckpt: Path, tmp_path: Path) -> None:
    dest = _export_unoptimized(tiny_ckpt, tmp_path / "out")
    store_float16(dest)
    rewrites = optimize_exported(dest)
    assert rewrites
    model = onnx.load(str(dest / "model.onnx"))
    assert is_packed(model)
    assert "BatchNormalization" not in {n.op_type for n in model.graph.node}
    assert verify_export(dest).onnx.rewrites[-len(rewrites) :] == rewrites


def test_the_cli_stores_float16_after_the_exact_rewrites(
    tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = _export_unoptimized(tiny_ckpt, tmp_path / "out")
    code = cli.main(["optimize", dest.name, "--models", str(dest.parent), "--float16-weights"])
    assert code == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{dest.name}: ")
    assert "float16 weights (" in line
    assert "within one level" in line
    rewrites = verify_export(dest).onnx.rewrites
    assert rewrites[-1].startswith(FLOAT16_WEIGHTS)
    assert len(rewrites) > 1
