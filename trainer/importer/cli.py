"""``python -m trainer import SOURCE --name NAME``: the command line of :func:`import_model`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from .options import ENCODINGS, LAYOUTS, ImportOptions, ImportRefused, class_names, parse_ints, parse_range

log = logging.getLogger(__name__)


def options_from_args(args: argparse.Namespace) -> ImportOptions:
    try:
        kwargs = json.loads(args.kwargs) if args.kwargs else {}
    except json.JSONDecodeError as exc:
        raise ImportRefused(
            f"--kwargs {args.kwargs!r}: not JSON ({exc.msg}); e.g. --kwargs '{{\"nz\": 16}}'"
        ) from None
    if not isinstance(kwargs, dict):
        raise ImportRefused(f"--kwargs {args.kwargs!r}: expected a JSON object of constructor arguments")
    if args.latent_dim is not None and args.latent_dim < 1:
        raise ImportRefused(f"--latent-dim {args.latent_dim}: expected at least 1")
    image = parse_ints(args.image, 3, "--image") if args.image else None
    return ImportOptions(
        source=args.source,
        name=args.name,
        out=args.out,
        weights=args.weights,
        kwargs=kwargs,
        latent_dim=args.latent_dim,
        labels=class_names(args.labels, args.num_classes),
        z_input=args.z_input,
        label_input=args.label_input,
        output=args.output,
        label_encoding=args.label_encoding,
        layout=args.layout,
        image=image,  # type: ignore[arg-type]
        value_range=parse_range(args.value_range) if args.value_range else None,
        dataset=args.dataset,
        description=args.description,
        license=args.license,
        replace=args.replace,
    )


def _cmd_import(args: argparse.Namespace) -> int:
    from .importing import import_model

    try:
        report = import_model(options_from_args(args), announce=print)
    except ImportRefused as exc:
        print(f"import refused: {exc}", file=sys.stderr)
        return 2
    card = report.card
    src = card.source
    assert src is not None
    for adapter in report.adapters:
        print(f"adapter  {adapter}")
    labels = f"{card.num_classes} labels" if card.conditional else "unconditional"
    print(
        f"checked  parity max |source - imported| = {report.parity_max_diff:.2e} on 32 images; "
        f"every label ({labels}): {report.labels_max_diff:.2e}; batch {src.batch}"
    )
    for warning in report.warnings:
        print(f"warning  {warning}")
    print(f"imported {card.name} → {report.directory} in {report.seconds:.1f} s")
    return 0


def add_import_parser(sub: Any) -> None:
    """Register ``import`` on the trainer's subcommand parser."""
    p = sub.add_parser(
        "import",
        help="serve a generator trained elsewhere: ONNX, TorchScript, or a PyTorch class + state_dict",
        description=(
            "Wrap a foreign generator in condgen's signature (z float32 [N, D], label int64 [N], "
            "image float32 [N, C, H, W]), check it against its source and write DIR/NAME/. "
            "Options left out are inferred where the source leaves no doubt, and printed."
        ),
    )
    p.add_argument(
        "source", help="an .onnx file, a TorchScript file, or path/to/file.py:Class | package.module:Class"
    )
    p.add_argument("--name", required=True, help="model name (the directory and the API's name)")
    p.add_argument("--out", type=Path, default=Path("exported"), help="models directory (default: exported)")
    p.add_argument("--weights", type=Path, help="a PyTorch class's state_dict (torch.save)")
    p.add_argument("--kwargs", help="a PyTorch class's constructor arguments, as a JSON object")
    p.add_argument("--latent-dim", type=int, help="latent size D")
    p.add_argument("--labels", help="class names a,b,c (index = class id)")
    p.add_argument("--num-classes", type=int, help="K classes named 0..K-1 (neither option: unconditional)")
    p.add_argument("--z-input", help="ONNX input that takes z")
    p.add_argument("--label-input", help="ONNX input that takes the label")
    p.add_argument("--output", help="ONNX output that gives the image")
    p.add_argument(
        "--label-encoding",
        choices=ENCODINGS,
        help="integer index, float one-hot, or [z, one-hot] concatenated",
    )
    p.add_argument("--layout", choices=LAYOUTS, help="channels-first or channels-last output")
    p.add_argument("--image", help="C,H,W of a flat [N, C·H·W] output")
    p.add_argument(
        "--value-range",
        help="LO,HI of the raw output, e.g. 0,1 or =-1,1 (default: inferred by sampling)",
    )
    p.add_argument("--dataset", default="unknown", help="what it was trained on, for the card")
    p.add_argument("--description", default="", help="one line for the card")
    p.add_argument("--license", help="the weights' licence, for the card")
    p.add_argument("--replace", action="store_true", help="replace a model of this name already in --out")
    p.set_defaults(func=_cmd_import)
