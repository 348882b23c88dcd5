"""Command line: ``python -m trainer list | train <recipe> | export <checkpoint> | optimize <model|all> |
calibrate <model> | zoo | report | classifier <dataset> | evaluate score|reference|doc|curve |
data lego|faces|sheet``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .arg_types import positive_int
from .classifier_cli import add_classifier_parser
from .datasets.cli import add_data_parser
from .device import DEVICE_CHOICES
from .evaluate_cli import add_evaluate_parser, with_action
from .importer.cli import add_import_parser
from .quantize_cli import add_quantize_parser
from .recipes import RECIPES

log = logging.getLogger("trainer")


def _cmd_list(args: argparse.Namespace) -> int:
    width = max(len(n) for n in RECIPES)
    for name, r in sorted(RECIPES.items()):
        if r.conditional:
            # A folder recipe's classes are the attribute combinations of its data (2^k).
            cond = (
                "classes from class subfolders or --attributes"
                if r.dataset == "folder"
                else f"{r.num_classes} classes"
            )
        else:
            cond = "unconditional"
        print(f"{name:<{width}}  {r.dataset:<13} {r.loss:<8} z={r.z_dim:<4} {r.image_size}px  {cond}")
        if args.verbose:
            print(f"{'':<{width}}  {r.description}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from service.card import is_valid_name

    from .export import export_checkpoint
    from .training import TrainConfig, train

    if args.name is not None and not is_valid_name(args.name):
        print(f"--name {args.name!r}: lower-case letters, digits, '.', '_' and '-' only", file=sys.stderr)
        return 2
    name = args.name or args.recipe
    folder_options = {}
    if args.attributes:
        folder_options["attributes"] = [a.strip() for a in args.attributes.split(",") if a.strip()]
    if args.attr_csv:
        folder_options["attr_csv"] = args.attr_csv
    cfg = TrainConfig(
        run_dir=args.run_dir or Path("runs") / name,
        epochs=args.epochs,
        minutes=args.minutes,
        seed=args.seed,
        data_dir=args.data_dir,
        download=args.download,
        limit=args.limit,
        max_steps=args.max_steps,
        threads=args.threads,
        device=args.device,
        resume=not args.restart,
        folder_options=folder_options,
        dataset_name=args.dataset_name,
        dataset_description=args.dataset_description,
    )
    ckpt, state = train(args.recipe, cfg)
    print(f"trained {args.recipe}: {state.epoch} epochs, {state.step} steps, {state.seconds:.0f} s → {ckpt}")
    if args.export_to is not None:
        dest = export_checkpoint(ckpt, args.export_to, name=name, data_dir=args.data_dir)
        print(f"exported → {dest}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export_checkpoint

    dest = export_checkpoint(args.checkpoint, args.out, name=args.name, data_dir=args.data_dir)
    print(f"exported → {dest}")
    return 0


def _cmd_optimize(args: argparse.Namespace) -> int:
    from service.card import card_dirs

    from .export import ExportError, optimize_exported, store_float16

    try:
        dirs = card_dirs(args.models, args.target)
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    failed = 0
    for model_dir in dirs:
        try:
            rewrites = optimize_exported(model_dir)
            agreement = store_float16(model_dir) if args.float16_weights else None
        except (ExportError, ValueError) as exc:
            print(f"{model_dir.name}: FAILED {exc}")
            failed += 1
            continue
        done = list(rewrites)
        if agreement is not None:
            done.append(f"float16 weights ({100 * agreement:.3f}% of pixels within one level)")
        print(f"{model_dir.name}: {'; '.join(done) if done else 'nothing to rewrite'}")
    return 1 if failed else 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from .export import ExportError, calibrate_exported
    from .tone import TONE_SAMPLES, TONE_SEGMENTS, ToneError

    model_dir = args.models / args.model
    try:
        curve = calibrate_exported(
            model_dir,
            args.data_dir,
            n=TONE_SAMPLES if args.n is None else args.n,
            segments=TONE_SEGMENTS if args.segments is None else args.segments,
            per_label=not args.one_curve,
        )
    except (ExportError, ToneError, FileNotFoundError) as exc:
        message = str(exc)
        print(message if message.startswith(args.model) else f"{args.model}: {message}", file=sys.stderr)
        return 2
    print(
        f"{args.model}: {len(curve.curves)} tone curve(s), fitted on {curve.fitted_on}; "
        f"its metrics are cleared: python -m trainer evaluate score {args.model}"
    )
    return 0


def _cmd_zoo(args: argparse.Namespace) -> int:
    from .zoo import build_zoo

    only = [n.strip() for n in args.only.split(",")] if args.only else None
    results = build_zoo(
        args.export_to,
        runs=args.runs,
        workers=args.workers,
        only=only,
        epochs_scale=args.epochs_scale,
        data_dir=args.data_dir,
        device=args.device,
    )
    failed = [name for name, _, error in results if error]
    for name, seconds, error in sorted(results):
        print(f"{name:<24} {seconds / 60:6.1f} min  {error or 'ok'}")
    return 1 if failed else 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import write_reports

    cards = write_reports(args.models, args.readme)
    print(f"{len(cards)} models → {args.models / 'README.md'} and {args.readme}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list the recipes")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("train", help="train a recipe (resumes from runs/<name>/checkpoint.pt)")
    p.add_argument("recipe", choices=sorted(RECIPES), metavar="recipe")
    p.add_argument("--epochs", type=positive_int, help="epochs in all (default: the recipe's)")
    p.add_argument("--minutes", type=float, help="wall-clock budget; stops at an epoch boundary")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", type=Path, help="IDX directory, or the image folder for 64×64 recipes")
    p.add_argument("--download", action="store_true", help="fetch the standard files when online")
    p.add_argument(
        "--limit",
        type=positive_int,
        help="use N training images: the first N; with class folders, N spread over every class by its share",
    )
    p.add_argument("--max-steps", type=positive_int, help="stop after N optimiser steps")
    p.add_argument("--threads", type=positive_int, help="torch intra-op threads")
    p.add_argument("--device", default="auto", help=f"{DEVICE_CHOICES} (auto: CUDA when torch sees one)")
    p.add_argument(
        "--name", help="names the run (runs/<name>) and the exported model (default: the recipe's name)"
    )
    p.add_argument("--run-dir", type=Path, help="default: runs/<name>")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--attributes", help="image folders: comma-separated attribute columns as labels")
    p.add_argument("--attr-csv", type=Path, help="image folders: CelebA-style attribute CSV")
    p.add_argument(
        "--dataset-name",
        help="image folders: the card's dataset (default: manifest.json, else the folder name)",
    )
    p.add_argument("--dataset-description", help="image folders: the card's words on the data")
    p.add_argument("--export-to", type=Path, help="export to DIR/<name>/ when training ends")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "optimize", help="apply the exact graph rewrites to exported models (parity-checked, in place)"
    )
    p.add_argument("target", help="model name, or `all`")
    p.add_argument("--models", type=Path, default=Path("exported"))
    p.add_argument(
        "--float16-weights",
        action="store_true",
        help="also store the weights as float16 (half the file; gated on the served pixels)",
    )
    p.set_defaults(func=_cmd_optimize)

    p = sub.add_parser("zoo", help="train and export the bundled zoo (resumable)")
    p.add_argument("--workers", type=positive_int, default=2, help="parallel single-threaded trainings")
    p.add_argument("--only", help="comma-separated recipe names (default: the whole zoo)")
    p.add_argument("--epochs-scale", type=float, default=1.0, help="multiply every planned epoch count")
    p.add_argument("--export-to", type=Path, default=Path("exported"))
    p.add_argument("--runs", type=Path, default=Path("runs"))
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--device", default="auto", help=f"{DEVICE_CHOICES}; every worker trains on it")
    p.set_defaults(func=_cmd_zoo)

    p = sub.add_parser("report", help="rewrite the zoo tables from the model cards")
    p.add_argument("--models", type=Path, default=Path("exported"))
    p.add_argument("--readme", type=Path, default=Path("README.md"))
    p.set_defaults(func=_cmd_report)

    add_classifier_parser(sub)
    add_evaluate_parser(sub)
    add_import_parser(sub)
    add_quantize_parser(sub)
    add_data_parser(sub)

    p = sub.add_parser("export", help="export a checkpoint to ONNX + model card + samples")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--out", type=Path, default=Path("exported"))
    p.add_argument("--name", help="model name (default: the recipe's)")
    p.add_argument("--data-dir", type=Path, help="where the training split is, for recipes with a tone curve")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "calibrate",
        help="end an exported model with a tone curve fitted to its training split (in place)",
    )
    p.add_argument("model")
    p.add_argument("--models", type=Path, default=Path("exported"))
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--n", type=positive_int, help="generated images to fit on (default: 2000)")
    p.add_argument(
        "--segments", type=positive_int, help="linear pieces of the curve (default: 16; 1 = levels)"
    )
    p.add_argument(
        "--one-curve",
        action="store_true",
        help="one curve for every label (default for a conditional model: one per label)",
    )
    p.set_defaults(func=_cmd_calibrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(with_action(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        code: int = args.func(args)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    return code
