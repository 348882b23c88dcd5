"""``python -m trainer classifier mnist|fashion-mnist|lego|faces``: train a domain classifier.

MNIST and FashionMNIST train :mod:`trainer.classifier`'s 28×28 network on their IDX training
split; ``lego`` and ``faces`` train :mod:`trainer.folder_classifier`'s 64×64 one on their image
folders. Each writes ``<out>/<dataset>.pt`` and ``.json`` with its held-out accuracy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .arg_types import positive_int

IDX_DATASETS = ("mnist", "fashion-mnist")
FOLDER_KEYS = ("lego", "faces")  # trainer.folder_datasets.FOLDER_KEYS; literals keep parsing import-free


def add_classifier_parser(sub: argparse._SubParsersAction) -> None:
    """``classifier`` under the top-level ``sub``."""
    p = sub.add_parser("classifier", help="train the domain classifier the evaluator judges with")
    p.add_argument("dataset", choices=[*IDX_DATASETS, *FOLDER_KEYS])
    p.add_argument(
        "--data-dir",
        type=Path,
        help="IDX directory, or the root holding the image folders (<root>/lego and <root>/lego-test)",
    )
    p.add_argument("--out", type=Path, help="default: trainer/classifiers/")
    p.add_argument("--threads", type=positive_int, default=1, help="torch intra-op threads")
    p.set_defaults(func=cmd_classifier)


def cmd_classifier(args: argparse.Namespace) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.dataset in FOLDER_KEYS:
        from .folder_classifier import train_folder_classifier

        record = train_folder_classifier(args.dataset, data_dir=args.data_dir, out_dir=args.out)
    else:
        from .classifier import train_classifier

        record = train_classifier(args.dataset, data_dir=args.data_dir, out_dir=args.out)
    acc, n, minutes = record["test_accuracy"], record["test_images"], record["seconds"] / 60
    print(
        f"{args.dataset} classifier: test accuracy {acc:.4f} on {n} test images, trained in {minutes:.1f} min"
    )
    return 0
