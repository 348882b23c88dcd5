"""int8 variants: calibration inputs, the float tail, the written model directory and the gate."""

from __future__ import annotations

import io
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from service.card import Metric, ModelCard, load_card, sha256_file, write_card
from service.config import Settings
from service.latents import latents_for
from service.registry import default_runner_factory, load_entry
from tests.service.onnx_fixtures import DIGITS, card_dict, write_model
from trainer import cli
from trainer.evaluate import EVAL_SEED, EvalConfig
from trainer.export import store_float16
from trainer.graph_passes import optimize_model
from trainer.quantize import (
    AGREEMENT_METRIC,
    CALIBRATION_SEED,
    QualityRefusedError,
    QuantizeConfig,
    QuantizeError,
    calibration_inputs,
    float_tail,
    int8_graph,
    quality_failures,
    quantize_exported,
)
from trainer.weight_storage import FLOAT16_WEIGHTS
from trainer.zoo import INT8_SOURCES


class TinyGenerator(nn.Module):
    """A 28×28 conditional generator shaped like the zoo's: Gemm, two 4×4 stride-2 transposed
    convolutions with BatchNorm, a 3×3 output convolution and tanh."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.fc = nn.Linear(12, 8 * 7 * 7)
        self.up1 = nn.ConvTranspose2d(8, 8, 4, 2, 1)
        self.bn1 = nn.BatchNorm2d(8)
        self.up2 = nn.ConvTranspose2d(8, 4, 4, 2, 1)
        self.bn2 = nn.BatchNorm2d(4)
        self.out = nn.Conv2d(4, 1, 3, 1, 1)

    def forward(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, self.embed(label)], 1)).view(-1, 8, 7, 7)
        h = torch.relu(self.bn1(self.up1(h)))
        h = torch.relu(self.bn2(self.up2(h)))
        return torch.tanh(self.out(h))


def _write_tiny(root: Path, name: str = "tiny-mnist") -> Path:
    torch.manual_seed(0)
    net = TinyGenerator().eval()
    with torch.no_grad():
        for bn in (net.bn1, net.bn2):
            bn.running_mean.uniform_(-0.3, 0.3)
            bn.running_var.uniform_(0.5, 2.0)
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.zeros(2, 8), torch.zeros(2, dtype=torch.int64)),
            buf,
            input_names=["z", "label"],
            output_names=["image"],
            dynamic_axes={"z": {0: "batch"}, "label": {0: "batch"}, "image": {0: "batch"}},
            opset_version=17,
            do_constant_folding=True,
            dynamo=False,
        )
    model_dir = root / name
    model_dir.mkdir(parents=True)
    (model_dir / "model.onnx").write_bytes(buf.getvalue())
    card = card_dict(
        name,
        dim=8,
        channels=1,
        height=28,
        width=28,
        labels=DIGITS,
        sha256=sha256_file(model_dir / "model.onnx"),
    )
    card["dataset"] = "mnist"
    write_card(ModelCard.model_validate(card), model_dir)
    return model_dir


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def tiny(tmp_path: Path, tiny_source: Path) -> Path:
    dest = tmp_path / "zoo" / tiny_source.name
    shutil.copytree(tiny_source, dest)
    return dest


def _cfg(mnist_dir: Path, accuracy_bound: float = 0.005) -> QuantizeConfig:
    evaluation = EvalConfig(
        n_inception=0, n_classifier=200, classifier_real_n=300, data_dir=mnist_dir, progress=False
    )
    return QuantizeConfig(
        calibration_rows=128, agreement_rows=250, evaluation=evaluation, accuracy_bound=accuracy_bound
    )


def test_only_the_convolutions_and_matrix_products_compute_in_int8(tiny_source: Path) -> None:
    graph, _ = int8_graph((tiny_source / "model.onnx").read_bytes(), load_card(tiny_source), QuantizeConfig())
    model = onnx.load_from_string(graph)
    producers = {out: node.op_type for node in model.graph.node for out in node.output}
    fed_int8 = {
        node.op_type
        for node in model.graph.node
        if any(producers.get(value) == "DequantizeLinear" for value in node.input)
    }
    assert {"Conv", "Gemm"} <= fed_int8
    # Element-wise arithmetic (ReLU here; class-conditional scales and shifts in the zoo) reads
    # float32 only: no 8-bit rounding between the convolutions beyond their own inputs'.
    assert not fed_int8 & {"Relu", "Mul", "Add", "Tanh"}, fed_int8


def test_calibration_draws_latents_like_the_service_with_balanced_labels(tiny_source: Path) -> None:
    card = load_card(tiny_source)
    batches = list(calibration_inputs(card, QuantizeConfig(calibration_rows=100, calibration_batch=64)))
    assert [len(b["z"]) for b in batches] == [64, 36]
    z = np.concatenate([b["z"] for b in batches])
    np.testing.assert_array_equal(z, latents_for(CALIBRATION_SEED, 100, 8))
    assert CALIBRATION_SEED != EVAL_SEED  # calibrated on other latents than it is scored on
    labels = np.concatenate([b["label"] for b in batches])
    np.testing.assert_array_equal(labels, np.arange(100) % 10)


def test_the_output_layer_and_what_follows_it_stay_float(tiny_source: Path) -> None:
    model = onnx.load(str(tiny_source / "model.onnx"))
    for i, node in enumerate(model.graph.node):
        node.name = node.name or f"n{i}"
    kept = float_tail(model)
    ops = {n.name: n.op_type for n in model.graph.node}
    assert [ops[k] for k in kept] == ["Conv", "Tanh"]
    optimize_model(model)  # the output layer is a ConvTranspose now, and still the anchor
    kept = float_tail(model)
    ops = {n.name: n.op_type for n in model.graph.node}
    assert [ops[k] for k in kept] == ["ConvTranspose", "Tanh"]


def test_an_int8_variant_is_written_with_its_card_and_serves(tiny: Path, mnist_dir: Path) -> None:
    assert store_float16(tiny) is not None  # stored as the zoo's models are
    result = quantize_exported(tiny, _cfg(mnist_dir, accuracy_bound=1.0))
    dest = tiny.parent / "tiny-mnist-int8"
    assert result.model_dir == dest
    card = load_card(dest)
    assert card.name == "tiny-mnist-int8"
    assert card.quantization is not None
    assert card.quantization.precision == "int8"
    assert card.quantization.source == "tiny-mnist"
    assert card.quantization.source_sha256 == load_card(tiny).onnx.sha256
    assert str(CALIBRATION_SEED) in card.quantization.calibrated_on
    assert "no test data" in card.quantization.calibrated_on
    assert sha256_file(dest / "model.onnx") == card.onnx.sha256
    ops = [n.op_type for n in onnx.load(str(dest / "model.onnx")).graph.node]
    # Both 4×4 transposed convolutions became 4 int8 phase convolutions each; the one-channel
    # output layer is the one float32 ConvTranspose left.
    assert ops.count("ConvTranspose") == 1
    assert "BatchNormalization" not in ops
    assert "QuantizeLinear" in ops
    assert ops.count("Conv") == 8
    assert any("BatchNormalization" in r for r in card.onnx.rewrites)
    assert any("interleaved channels-last ×2" in r for r in card.onnx.rewrites)
    # The source's float16 storage is not the variant's: its graph holds int8 and float32 weights.
    assert any(r.startswith(FLOAT16_WEIGHTS) for r in load_card(tiny).onnx.rewrites)
    assert not any(r.startswith(FLOAT16_WEIGHTS) for r in card.onnx.rewrites)
    metrics = {m.name: m for m in card.metrics}
    assert {"label_accuracy", AGREEMENT_METRIC} <= set(metrics)
    assert metrics["label_accuracy"].n_samples == 200
    assert 0.5 < metrics[AGREEMENT_METRIC].value <= 1.0
    assert [m.name for m in result.reference] == ["label_accuracy", "fid_classifier", *_rest()]
    # The service's registry loads it like any model, and it answers images of the card's shape.
    settings = Settings(providers=["CPUExecutionProvider"], intra_op_threads=1, warmup=False)
    entry = load_entry(dest, settings, default_runner_factory)
    assert entry.loaded, entry.reason
    assert entry.runner is not None
    images = entry.runner.run(latents_for(1, 3, 8), np.array([0, 5, 9], dtype=np.int64))
    assert images.shape == (3, 1, 28, 28)
    assert images.dtype == np.uint8
    assert not list(tiny.parent.glob(".tiny-mnist-int8-*"))  # nothing staged left behind


def _rest() -> list[str]:
    return ["intra_fid_classifier", "precision", "recall", "z_diversity"]


def test_a_variant_over_the_bound_is_refused_with_figures_and_not_written(
    tiny: Path, mnist_dir: Path
) -> None:
    # A bound below zero asks int8 to beat float32 by a point: no variant can, so the gate refuses.
    with pytest.raises(QualityRefusedError, match=r"label accuracy 0\.\d+ vs 0\.\d+ float32"):
        quantize_exported(tiny, _cfg(mnist_dir, accuracy_bound=-0.01))
    assert sorted(p.name for p in tiny.parent.iterdir()) == ["tiny-mnist"]


def _metric(name: str, value: float) -> Metric:
    return Metric(name=name, value=value, n_samples=10_000)


def test_the_gate_holds_fid_and_accuracy_to_their_bounds() -> None:
    ref = [_metric("fid_inception", 5.0), _metric("label_accuracy", 0.99)]
    cfg = QuantizeConfig()
    assert quality_failures(ref, [_metric("fid_inception", 5.5), _metric("label_accuracy", 0.985)], cfg) == []
    failed = quality_failures(ref, [_metric("fid_inception", 5.6), _metric("label_accuracy", 0.98)], cfg)
    assert failed == [
        "Inception FID 5.600 vs 5.000 float32 (+0.600 > +0.5)",
        "label accuracy 0.9800 vs 0.9900 float32 (−1.00 > 0.50 points)",
    ]


def test_a_variant_is_not_quantized_again(tiny: Path, mnist_dir: Path) -> None:
    dest = quantize_exported(tiny, _cfg(mnist_dir, accuracy_bound=1.0)).model_dir
    with pytest.raises(QuantizeError, match="already quantized"):
        quantize_exported(dest, _cfg(mnist_dir))


def test_the_cli_refuses_an_unknown_model_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["quantize", "nope", "--models", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("no model card at")
    assert "\n" not in err


def test_zoo_names_the_zoo_sources_and_a_missing_one_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_model(tmp_path, INT8_SOURCES[0], labels=DIGITS)  # the others are not there
    assert cli.main(["quantize", "zoo", "--models", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"no model card at {tmp_path / INT8_SOURCES[1] / 'model.json'}"
    assert sorted(p.name for p in tmp_path.iterdir()) == [INT8_SOURCES[0]]


def test_a_model_without_an_evaluator_is_refused_before_quantizing(tmp_path: Path) -> None:
    model_dir = write_model(tmp_path, "cond-gray", labels=DIGITS)  # dataset "synthetic"
    with pytest.raises(QuantizeError, match="no test split or classifier for dataset 'synthetic'"):
        quantize_exported(model_dir, QuantizeConfig())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cond-gray"]
