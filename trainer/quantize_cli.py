"""``python -m trainer quantize <model|all>``: int8 variants behind the quality gate."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .arg_types import count, positive_int
from .evaluate import EvalConfig


def add_quantize_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quantize",
        help="write <model>-int8 (static int8) beside each float32 model whose quality holds",
    )
    p.add_argument(
        "model", help="a model directory name under --models, 'all', or 'zoo' (the zoo's int8 sources)"
    )
    p.add_argument("--models", type=Path, default=Path("exported"))
    p.add_argument("--n-inception", type=count, default=10_000, help="images for Inception FID (0 skips)")
    p.add_argument("--n-classifier", type=count, default=10_000, help="images for label accuracy (0 skips)")
    p.add_argument("--fid-bound", type=float, default=0.5, help="largest allowed Inception FID rise")
    p.add_argument(
        "--accuracy-bound",
        type=float,
        default=0.005,
        help="largest allowed label-accuracy drop (0.005 = 0.5 points)",
    )
    p.add_argument("--calibration-rows", type=positive_int, default=512)
    p.add_argument("--data-dir", type=Path, help="the datasets' directory (default: data/<dataset>)")
    p.set_defaults(func=run_quantize)


def run_quantize(args: argparse.Namespace) -> int:
    from service.card import card_dirs, load_card

    from .evaluate import EvaluationError
    from .quantize import QualityRefusedError, QuantizeConfig, QuantizeError, quantize_exported
    from .zoo import INT8_SOURCES

    try:
        names = INT8_SOURCES if args.model == "zoo" else (args.model,)
        dirs = [d for name in names for d in card_dirs(args.models, name)]
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.calibration_rows < 1 or args.n_inception < 0 or args.n_classifier < 0:
        print("--calibration-rows must be >= 1 and sample counts >= 0", file=sys.stderr)
        return 2
    cfg = QuantizeConfig(
        calibration_rows=args.calibration_rows,
        fid_bound=args.fid_bound,
        accuracy_bound=args.accuracy_bound,
        evaluation=EvalConfig(
            n_inception=args.n_inception,
            n_classifier=args.n_classifier,
            data_dir=args.data_dir,
        ),
    )
    failed = 0
    for model_dir in dirs:
        if args.model == "all" and load_card(model_dir).quantization is not None:
            continue  # a variant is not quantized again
        try:
            result = quantize_exported(model_dir, cfg)
        except QualityRefusedError as exc:
            print(f"{model_dir.name}: {exc}")
            failed += 1
            continue
        except (QuantizeError, EvaluationError, ValueError) as exc:
            print(f"{model_dir.name}: FAILED {exc}")
            failed += 1
            continue
        figures = ", ".join(f"{m.name} {m.value}" for m in result.metrics)
        reference = ", ".join(f"{m.name} {m.value}" for m in result.reference)
        print(f"{model_dir.name}: → {result.model_dir} ({figures}; float32: {reference or 'not scored'})")
    return 1 if failed else 0
