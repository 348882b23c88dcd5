"""Static int8 variants of exported generators, kept only when their quality holds.

``python -m trainer quantize <model|all>`` turns ``exported/<name>`` into ``exported/<name>-int8``:

1. the float graph's exact rewrites (:func:`trainer.graph_passes.optimize_model`, BatchNorm folded
   first, so one tensor is calibrated where there were two), then every 4×4 stride-2 transposed
   convolution split into four 2×2 convolutions (:func:`trainer.graph_passes.split_conv_transpose`):
   ONNX Runtime's CPU provider has an int8 ``Conv`` kernel and no int8 ``ConvTranspose``. The
   phases are interleaved channels-last (no ``DepthToSpace``) and an ``AveragePool`` becomes a
   depthwise ``Conv``, so the int8 convolutions run in ORT's channels-last int8 kernels throughout:
   the first prototype spent most of its time in transposes, ``DepthToSpace`` and channels-first
   uint8 pools, and ran slower than float32;
2. ONNX Runtime's static QDQ quantization of the convolutions and matrix products (int8
   per-channel weights, uint8 activations; the element-wise ops between them, class-conditional
   scales and shifts, ReLUs, stay float32), ranges calibrated (percentile) on latents drawn by
   :func:`service.latents.latents_for` as the service draws them, seed :data:`CALIBRATION_SEED`
   (not the evaluation seed), with balanced labels. No test image is involved. The layer that
   writes the output and everything after it (tanh, tone curve) stay float32: at 8 bits its
   pre-tanh input would move pixels by several levels;
3. the quality gate: the variant is scored like any model (:func:`trainer.evaluate.evaluate_model`)
   and kept only if its Inception FID is within ``fid_bound`` of the float model's and its label
   accuracy within ``accuracy_bound``; otherwise nothing is written and the figures are reported.

The variant's card is the float card with its own name, digest, metrics and a ``quantization``
block that says ``precision: int8``, the scheme and what it was calibrated on.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from service.card import Metric, ModelCard, Quantization, load_card, sha256_file, write_card
from service.latents import latents_for

from .card_graph import pixel_agreement
from .evaluate import EVALUATED_DATASETS, INCEPTION_METRIC, EvalConfig, evaluate_model
from .graph_passes import avgpool_as_conv, optimize_model, split_conv_transpose
from .model_dir import write_model_dir
from .weight_storage import FLOAT16_WEIGHTS, unpack_float16

log = logging.getLogger(__name__)

SUFFIX = "-int8"
CALIBRATION_SEED = 7_700_001  # not EVAL_SEED (20250) nor the sample grids' seed 0
AGREEMENT_METRIC = "pixels_within_one_level"
SCHEME = "static QDQ (ONNX Runtime) of Conv, Gemm and MatMul, int8 per-channel weights, uint8 activations"
# Quantizing the element-wise ops too (ORT's default) rounds every class-conditional scale, shift
# and ReLU output to 8 bits once more: 1,000 images, 4 zoo models, mean |pixel error| 0.54–1.07
# levels with these alone vs 0.97–2.64 with all, and 1.01–1.07× the images/s (fewer Q/DQ pairs).
QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")
_SLACK = 1e-9  # a difference equal to the bound passes, whatever the float rounding
_ANCHORS = ("Conv", "ConvTranspose", "Gemm", "MatMul")  # ops that compute, not just reshape


class QuantizeError(RuntimeError):
    """A model cannot be quantized (not a float export, or the quantizer failed)."""


class QualityRefusedError(QuantizeError):
    """The int8 variant lost more quality than the bounds allow; the message has the figures."""


@dataclass(frozen=True)
class QuantizeConfig:
    calibration_rows: int = 512  # latents the activation ranges are measured on
    calibration_batch: int = 64
    percentile: float = 99.99  # activation range: this percentile of |x|, not the outlier max
    fid_bound: float = 0.5  # Inception FID may rise by at most this much
    accuracy_bound: float = 0.005  # label accuracy may fall by at most this (0.5 points)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    agreement_rows: int = 1000  # rows behind the pixel-agreement figure


@dataclass(frozen=True)
class QuantizeResult:
    model_dir: Path
    rewrites: list[str]
    metrics: list[Metric]
    reference: list[Metric]  # the float model's figures it was held to


def calibration_inputs(card: ModelCard, cfg: QuantizeConfig) -> Iterator[dict[str, np.ndarray]]:
    """Feeds for calibration: latents as the service draws them, labels ``i mod classes``."""
    z = latents_for(CALIBRATION_SEED, cfg.calibration_rows, card.latent.dim)
    for start in range(0, cfg.calibration_rows, cfg.calibration_batch):
        rows = z[start : start + cfg.calibration_batch]
        feeds = {card.onnx.z_input: rows}
        if card.onnx.label_input is not None:
            labels = np.arange(start, start + len(rows), dtype=np.int64) % card.num_classes
            feeds[card.onnx.label_input] = labels
        yield feeds


def calibration_words(card: ModelCard, cfg: QuantizeConfig) -> str:
    labels = f", labels i mod {card.num_classes}" if card.conditional else ""
    return (
        f"{cfg.calibration_rows} latents from latents_for(seed {CALIBRATION_SEED}, i){labels}, "
        f"as the service draws them; ranges at the {cfg.percentile} percentile; no test data"
    )


def float_tail(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes kept in float32: the last computing node before the output and all after."""
    producers = {out: node for node in model.graph.node for out in node.output}
    anchor = None
    stack = [o.name for o in model.graph.output]
    seen: set[str] = set()
    while stack and anchor is None:  # breadth-first from the output back to the first anchor
        name = stack.pop(0)
        node = producers.get(name)
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type in _ANCHORS:
            anchor = node
        stack.extend(node.input)
    if anchor is None:
        return []
    after = {anchor.name}
    values = set(anchor.output)
    for node in model.graph.node:  # nodes are topologically sorted: descendants come later
        if values.intersection(node.input):
            after.add(node.name)
            values.update(node.output)
    return [n.name for n in model.graph.node if n.name in after]


def _name_nodes(model: onnx.ModelProto) -> None:
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"


def int8_graph(graph: bytes, card: ModelCard, cfg: QuantizeConfig) -> tuple[bytes, list[str]]:
    """The quantized graph of a float graph, and the rewrites it went through first."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = onnx.load_from_string(graph)
    unpack_float16(model)  # the passes and the quantizer read float32 initializers
    rewrites = optimize_model(model)
    # Before the split: the pool's channel count is read off the transposed convolution.
    if pools := avgpool_as_conv(model):
        rewrites.append(f"AveragePool → depthwise Conv ×{pools}")
    if split := split_conv_transpose(model, channels_last=True):
        rewrites.append(f"ConvTranspose(4×4, stride 2) → 4 × Conv(2×2), interleaved channels-last ×{split}")
    _name_nodes(model)
    keep_float = float_tail(model)
    inputs = iter(list(calibration_inputs(card, cfg)))

    class Reader(CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(inputs, None)

    with tempfile.TemporaryDirectory(prefix="condgen-quantize-") as tmp:
        src, pre, out = (Path(tmp) / f for f in ("float.onnx", "pre.onnx", "int8.onnx"))
        onnx.save(model, str(src))
        try:
            # Symbolic shape inference fails on the exporter's batch-size arithmetic; ONNX's own
            # shape inference is enough for the quantizer.
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            quantize_static(
                str(pre),
                str(out),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.Percentile,
                nodes_to_exclude=keep_float,
                op_types_to_quantize=list(QUANTIZED_OPS),
                extra_options={"CalibPercentile": cfg.percentile},
            )
        except Exception as exc:  # the quantizer raises bare Exceptions and ValueErrors
            raise QuantizeError(f"{card.name}: ONNX Runtime's quantizer failed: {exc}") from exc
        return out.read_bytes(), rewrites


def quality_failures(reference: list[Metric], candidate: list[Metric], cfg: QuantizeConfig) -> list[str]:
    """What the candidate lost beyond the bounds, in words; empty when it passes."""
    ref = {m.name: m.value for m in reference}
    got = {m.name: m.value for m in candidate}
    failures = []
    if INCEPTION_METRIC in ref and INCEPTION_METRIC in got:
        rise = got[INCEPTION_METRIC] - ref[INCEPTION_METRIC]
        if rise > cfg.fid_bound + _SLACK:
            failures.append(
                f"Inception FID {got[INCEPTION_METRIC]:.3f} vs {ref[INCEPTION_METRIC]:.3f} float32 "
                f"(+{rise:.3f} > +{cfg.fid_bound})"
            )
    if "label_accuracy" in ref and "label_accuracy" in got:
        drop = ref["label_accuracy"] - got["label_accuracy"]
        if drop > cfg.accuracy_bound + _SLACK:
            failures.append(
                f"label accuracy {got['label_accuracy']:.4f} vs {ref['label_accuracy']:.4f} float32 "
                f"(−{100 * drop:.2f} > {100 * cfg.accuracy_bound:.2f} points)"
            )
    return failures


def _reference_metrics(model_dir: Path, card: ModelCard, cfg: QuantizeConfig) -> list[Metric]:
    """The float model's figures at the evaluation's sample counts: from its card, else measured."""
    ev = cfg.evaluation
    wanted = {INCEPTION_METRIC: ev.n_inception, "label_accuracy": ev.n_classifier}
    stored = [m for m in card.metrics if wanted.get(m.name) == m.n_samples and m.n_samples > 0]
    needed = {k for k, n in wanted.items() if n and (k != "label_accuracy" or card.conditional)}
    if {m.name for m in stored} >= needed:
        return stored
    log.info("%s: scoring the float32 model at the same sample counts", card.name)
    return evaluate_model(model_dir, ev)


def quantize_exported(model_dir: Path, cfg: QuantizeConfig | None = None) -> QuantizeResult:
    """Write ``<model_dir>-int8`` beside ``model_dir`` if the int8 variant passes the quality gate.

    Raises :class:`QualityRefusedError` (nothing written) when it does not, :class:`QuantizeError`
    when the model cannot be quantized at all.
    """
    cfg = cfg or QuantizeConfig()
    card = load_card(model_dir)
    if card.quantization is not None:
        raise QuantizeError(f"{card.name} is already quantized ({card.quantization.precision})")
    if _scored(cfg) and card.dataset not in EVALUATED_DATASETS:
        raise QuantizeError(
            f"{card.name}: no test split or classifier for dataset {card.dataset!r} to hold an int8 "
            f"variant to (scored: {', '.join(EVALUATED_DATASETS)})"
        )
    onnx_path = model_dir / card.onnx.file
    if sha256_file(onnx_path) != card.onnx.sha256:
        raise QuantizeError(f"{card.name}: {card.onnx.file} does not match the sha256 in its card")
    graph, rewrites = int8_graph(onnx_path.read_bytes(), card, cfg)
    name = f"{card.name}{SUFFIX}"
    # Scored from a hidden directory (the registry skips dot names); written like any export.
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=model_dir.parent) as tmp:
        staged = Path(tmp)
        (staged / card.onnx.file).write_bytes(graph)
        agreement = pixel_agreement(card, onnx_path, graph, cfg.agreement_rows, seed=CALIBRATION_SEED + 1)
        new_card = _int8_card(card, cfg, graph, rewrites)
        write_card(new_card, staged)
        reference = _reference_metrics(model_dir, card, cfg)
        metrics = evaluate_model(staged, cfg.evaluation) if _scored(cfg) else []
    metrics.append(
        Metric(
            name=AGREEMENT_METRIC,
            value=round(agreement, 4),
            n_samples=cfg.agreement_rows,
            reference=f"{card.name} (float32), same latents and labels",
            notes="share of uint8 pixels within one level of the float32 model's",
        )
    )
    if failures := quality_failures(reference, metrics, cfg):
        raise QualityRefusedError(f"{name} refused: {'; '.join(failures)}")
    dest = write_model_dir(model_dir.parent, graph, new_card.model_copy(update={"metrics": metrics}))
    log.info("%s: written (%s)", name, ", ".join(f"{m.name} {m.value}" for m in metrics))
    return QuantizeResult(dest, rewrites, metrics, reference)


def _scored(cfg: QuantizeConfig) -> bool:
    return bool(cfg.evaluation.n_inception or cfg.evaluation.n_classifier)


def _int8_card(card: ModelCard, cfg: QuantizeConfig, graph: bytes, rewrites: list[str]) -> ModelCard:
    # The int8 graph is built from the widened float32 weights: the source's float16 storage is not its.
    kept = [r for r in card.onnx.rewrites if not r.startswith(FLOAT16_WEIGHTS)]
    onnx_spec = card.onnx.model_copy(
        update={"sha256": hashlib.sha256(graph).hexdigest(), "rewrites": [*kept, *rewrites]}
    )
    return card.model_copy(
        update={
            "name": f"{card.name}{SUFFIX}",
            "description": f"{card.description} int8 variant of {card.name}.".strip(),
            "onnx": onnx_spec,
            "metrics": [],
            "quantization": Quantization(
                source=card.name,
                source_sha256=card.onnx.sha256,
                scheme=f"{SCHEME}; float32 kept from the output layer on",
                calibrated_on=calibration_words(card, cfg),
            ),
        }
    )
