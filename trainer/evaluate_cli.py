"""``python -m trainer evaluate``: its parser, one :class:`EvaluatePlan` per invocation, and the actions.

The older flag spelling (``evaluate MODEL --reference-only | --doc-only | --checkpoints DIR ...``)
still parses: :func:`with_action` routes it to a hidden parser and :func:`legacy_plan` maps it to
the same :class:`EvaluatePlan` the subcommand builds, so both run the same action.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .arg_types import count, positive_int
from .device import DEVICE_CHOICES, resolve_device

if TYPE_CHECKING:
    from service.card import Metric

    from .evaluate import EvalConfig

log = logging.getLogger(__name__)

ACTIONS = ("score", "reference", "doc", "curve")
LEGACY = "legacy"  # the hidden action the older flag spelling is parsed by
DEFAULT_SEED = 20250  # trainer.evaluate.EVAL_SEED; a literal keeps parsing free of its imports
DEFAULT_DOC = Path("docs/quality.md")
DEFAULT_MODELS = Path("exported")
DESCRIPTION = """\
  score MODEL...|all [--reference] [--no-doc]   score models (names under --models, or model directories)
                                                into their cards (and, with --reference, their
                                                datasets' reference rows); rewrite the doc
  reference DATASET...|all [--no-doc]           score real train vs test images: the reference rows
                                                (mnist, fashion-mnist, lego-bricks, synthetic-faces)
  doc                                           re-render the doc from the cards and <doc>.json
  curve MODEL [--checkpoints DIR] [--append]    score every kept epoch (default DIR: runs/MODEL/epochs)

The older spelling `evaluate MODEL [--reference | --reference-only | --doc-only | --checkpoints DIR]`
still works and runs the same actions."""


@dataclass(frozen=True)
class Scoring:
    """How many images, on which device: the options every scoring action shares."""

    n: int = 10_000
    real_n: int = 10_000
    classifier_n: int = 10_000
    classifier_real_n: int | None = None
    data_dir: Path | None = None
    threads: int = 1
    device: str = "auto"


@dataclass(frozen=True)
class EvaluatePlan:
    """One evaluate action with its options, whichever spelling asked for it."""

    action: str  # one of ACTIONS
    targets: tuple[str, ...] = ()  # models (score, curve) or datasets (reference)
    scoring: Scoring | None = None  # None for doc, which scores nothing
    models: Path = DEFAULT_MODELS
    doc: Path = DEFAULT_DOC
    seed: int = DEFAULT_SEED
    reference: bool = False  # score: also the reference rows of the scored models' datasets
    write_doc: bool = True
    checkpoints: Path | None = None  # curve
    append: bool = False  # curve


# ---------------------------------------------------------------------------------------------
# Parsing


def _scoring_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--n", type=count, default=10_000, help="generated images for Inception FID (0 skips it)")
    p.add_argument(
        "--real-n", type=positive_int, default=10_000, help="real test images behind the Inception statistics"
    )
    p.add_argument(
        "--classifier-n",
        type=count,
        default=10_000,
        help="generated images for the classifier metrics (0 skips)",
    )
    p.add_argument(
        "--classifier-real-n",
        type=positive_int,
        help="real test images for the classifier metrics (default: all)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        help="IDX directory, or the root holding the image folders (<root>/lego, <root>/lego-test)",
    )
    p.add_argument("--threads", type=positive_int, default=1, help="torch intra-op threads")
    p.add_argument("--device", default="auto", help=f"where the Inception network runs: {DEVICE_CHOICES}")
    return p


def _doc_options(models: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    if models:
        p.add_argument("--models", type=Path, default=DEFAULT_MODELS)
    p.add_argument("--doc", type=Path, default=DEFAULT_DOC, help="the quality document (and <doc>.json)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="latent seed: z_i = latents_for(seed, i)")
    return p


def _no_doc(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-doc", action="store_true", help="do not rewrite the quality document")


def _add_legacy(actions: argparse._SubParsersAction, scoring: argparse.ArgumentParser) -> None:
    # No help=: the older spelling is reached through with_action, not listed beside the subcommands.
    p = actions.add_parser(LEGACY, parents=[scoring, _doc_options()])
    p.add_argument("target")
    p.add_argument("--reference", action="store_true")
    p.add_argument("--reference-only", action="store_true")
    _no_doc(p)
    p.add_argument("--doc-only", action="store_true")
    p.add_argument("--checkpoints", type=Path)
    p.add_argument("--append", action="store_true")


def add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    """``evaluate`` and its actions, under the top-level ``sub``."""
    evaluate = sub.add_parser(
        "evaluate",
        help="score exported models (FID, accuracy, diversity, P/R): score | reference | doc | curve",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.set_defaults(func=cmd_evaluate)
    actions = evaluate.add_subparsers(
        dest="evaluate_action", required=True, metavar="{" + ",".join(ACTIONS) + "}"
    )
    scoring = _scoring_options()

    p = actions.add_parser(
        "score", parents=[scoring, _doc_options()], help="score models into their cards, then rewrite the doc"
    )
    p.add_argument(
        "targets",
        nargs="+",
        metavar="MODEL",
        help="model name(s) under --models, model directories, or `all`",
    )
    p.add_argument(
        "--reference",
        action="store_true",
        help="also score real train images of their datasets (reference rows)",
    )
    _no_doc(p)

    p = actions.add_parser(
        "reference",
        parents=[scoring, _doc_options()],
        help="score real train vs test images (the reference rows)",
    )
    p.add_argument(
        "targets",
        nargs="+",
        metavar="DATASET",
        help="mnist, fashion-mnist, lego-bricks (lego), synthetic-faces (faces), or `all`",
    )
    _no_doc(p)

    actions.add_parser("doc", parents=[_doc_options()], help="re-render the quality document from the cards")

    p = actions.add_parser(
        "curve",
        parents=[scoring, _doc_options(models=False)],
        help="score every kept epoch of a run → <doc dir>/<doc stem>/MODEL-curve.{json,png}",
    )
    p.add_argument("model")
    p.add_argument("--checkpoints", type=Path, help="the epochs' *.pt (default: runs/MODEL/epochs)")
    p.add_argument(
        "--append", action="store_true", help="keep the curve's other epochs (a run continued later)"
    )
    _add_legacy(actions, scoring)


def with_action(argv: Sequence[str]) -> list[str]:
    """``evaluate MODEL --flags`` (no action named) → ``evaluate legacy MODEL --flags``."""
    out = list(argv)
    i = 0
    while i < len(out) and out[i].startswith("-"):
        i += 2 if out[i] == "--log-level" else 1  # the one top-level option that takes a value
    if i + 1 < len(out) and out[i] == "evaluate" and out[i + 1] not in (*ACTIONS, LEGACY, "-h", "--help"):
        out.insert(i + 1, LEGACY)
    return out


def _scoring(args: argparse.Namespace) -> Scoring:
    return Scoring(
        n=args.n,
        real_n=args.real_n,
        classifier_n=args.classifier_n,
        classifier_real_n=args.classifier_real_n,
        data_dir=args.data_dir,
        threads=args.threads,
        device=args.device,
    )


def legacy_plan(args: argparse.Namespace) -> EvaluatePlan:
    """The older flag matrix, one combination → one action (as ``_cmd_evaluate`` ran them)."""
    if args.checkpoints is not None:  # --checkpoints ran the curve and nothing else
        return plan_from_args(
            argparse.Namespace(**{**vars(args), "evaluate_action": "curve", "model": args.target})
        )
    if args.doc_only and args.no_doc:
        raise ValueError("--doc-only with --no-doc leaves nothing to do")
    action = "doc" if args.doc_only else "reference" if args.reference_only else "score"
    plan = plan_from_args(
        argparse.Namespace(**{**vars(args), "evaluate_action": action, "targets": [args.target]})
    )
    return plan if action == "doc" else replace(plan, reference=args.reference and action == "score")


def plan_from_args(args: argparse.Namespace) -> EvaluatePlan:
    """The parsed command line → the plan :func:`run_plan` carries out."""
    action = args.evaluate_action
    if action == LEGACY:
        return legacy_plan(args)
    if action == "doc":
        return EvaluatePlan("doc", models=args.models, doc=args.doc, seed=args.seed)
    if action == "curve":
        checkpoints = args.checkpoints or Path("runs") / args.model / "epochs"
        return EvaluatePlan(
            "curve",
            (args.model,),
            _scoring(args),
            doc=args.doc,
            seed=args.seed,
            checkpoints=checkpoints,
            append=args.append,
        )
    return EvaluatePlan(
        action,
        tuple(dict.fromkeys(args.targets)),  # a name given twice is scored once
        _scoring(args),
        models=args.models,
        doc=args.doc,
        seed=args.seed,
        reference=getattr(args, "reference", False),
        write_doc=not args.no_doc,
    )


# ---------------------------------------------------------------------------------------------
# Running


def _config(plan: EvaluatePlan) -> EvalConfig:
    import torch

    from .evaluate import EvalConfig

    s = plan.scoring or Scoring()
    torch.set_num_threads(s.threads)
    resolve_device(s.device)  # a device this machine lacks fails now, not after the first model
    return EvalConfig(
        n_inception=s.n,
        real_n=s.real_n,
        n_classifier=s.classifier_n,
        classifier_real_n=s.classifier_real_n,
        seed=plan.seed,
        data_dir=s.data_dir,
        device=s.device,
    )


def _summary(metrics: list[Metric]) -> str:
    return ", ".join(f"{m.name}={m.value:g} (N={m.n_samples})" for m in metrics)


def _write_doc(plan: EvaluatePlan) -> int:
    from .quality_doc import write_quality_doc

    if plan.write_doc:
        cards = write_quality_doc(plan.models, plan.doc, plan.doc.with_suffix(".json"), seed=plan.seed)
        print(f"{len(cards)} models → {plan.doc}")
    return 0


def _score_references(plan: EvaluatePlan, datasets: list[str]) -> None:
    from .evaluate import reference_metrics, save_reference

    cfg = _config(plan)
    for dataset in sorted(datasets):
        metrics = reference_metrics(dataset, cfg)
        save_reference(plan.doc.with_suffix(".json"), dataset, metrics)
        print(f"real train vs test ({dataset}): {_summary(metrics)}")


def run_score(plan: EvaluatePlan) -> int:
    from .evaluate import evaluate_model, model_dirs, write_metrics

    cfg = _config(plan)
    dirs = list(dict.fromkeys(d for target in plan.targets for d in model_dirs(plan.models, target)))
    failed = 0
    datasets: set[str] = set()
    for model_dir in dirs:
        try:
            metrics = evaluate_model(model_dir, cfg)
        except Exception as exc:  # one unscorable model must not stop the others
            log.exception("%s: evaluation failed", model_dir.name)
            print(f"{model_dir.name}: FAILED {type(exc).__name__}: {exc}")
            failed += 1
            continue
        card = write_metrics(model_dir, metrics)
        datasets.add(card.dataset)
        print(f"{card.name}: {_summary(metrics)}")
    if plan.reference:
        _score_references(plan, sorted(datasets))
    _write_doc(plan)
    return 1 if failed else 0


def reference_datasets(targets: tuple[str, ...]) -> list[str]:
    """Datasets by their cards' names, a folder dataset's classifier key (lego, faces), or ``all``."""
    from .eval_data import EVALUATED_DATASETS
    from .folder_datasets import FOLDER_KEYS

    if "all" in targets:
        return sorted(EVALUATED_DATASETS)
    datasets = {FOLDER_KEYS[t].name if t in FOLDER_KEYS else t for t in targets}
    unknown = datasets - set(EVALUATED_DATASETS)
    if unknown:
        raise ValueError(
            f"reference takes datasets ({', '.join(EVALUATED_DATASETS)}) or all, "
            f"not {', '.join(sorted(unknown))}"
        )
    return sorted(datasets)


def run_reference(plan: EvaluatePlan) -> int:
    _score_references(plan, reference_datasets(plan.targets))
    return _write_doc(plan)


def run_doc(plan: EvaluatePlan) -> int:
    return _write_doc(plan)


def run_curve(plan: EvaluatePlan) -> int:
    from .curves import evaluate_checkpoints

    assert plan.checkpoints is not None  # plan_from_args fills in runs/MODEL/epochs
    ckpts = sorted(plan.checkpoints.glob("*.pt"))
    if not ckpts:
        raise FileNotFoundError(f"no *.pt checkpoints in {plan.checkpoints}")
    out = evaluate_checkpoints(
        ckpts, _config(plan), plan.doc.with_suffix(""), plan.targets[0], append=plan.append
    )
    print(f"{len(ckpts)} checkpoints → {out}")
    return 0


RUNNERS = {"score": run_score, "reference": run_reference, "doc": run_doc, "curve": run_curve}


def run_plan(plan: EvaluatePlan) -> int:
    return RUNNERS[plan.action](plan)


def cmd_evaluate(args: argparse.Namespace) -> int:
    return run_plan(plan_from_args(args))
