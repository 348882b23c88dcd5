"""The ``condgen`` command: ``serve``, ``models``, ``generate``, and the trainer's commands
(``train``, ``export``, ``evaluate``, ``zoo``, ...) when the train extra is installed."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from condgen.client import DEFAULT_URL, Client, ModelInfo
from condgen.datasets import FORMATS, DatasetError, Format
from condgen.errors import CondgenError
from condgen.generate import DatasetSpec, make_dataset
from condgen.sources import LocalSource, ServerSource, Source
from condgen.version import __version__
from service.card import CARD_FILE, load_card
from trainer.extra import INSTALL_HINT, missing_train_extra

OWN_COMMANDS = ("serve", "models", "generate")
URL_ENV = "CONDGEN_URL"


def _trainer_commands() -> list[str] | None:
    """The trainer parser's subcommands, or None without the train extra."""
    try:
        from trainer.cli import build_parser
    except ModuleNotFoundError as exc:
        if missing_train_extra(exc) is None:
            raise
        return None
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return sorted(action.choices)
    return []


def _url_and_key(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get(URL_ENV, DEFAULT_URL),
        help=f"the server (${URL_ENV}; default {DEFAULT_URL})",
    )
    parser.add_argument(
        "--api-key", default=os.environ.get("CONDGEN_API_KEY"), help="bearer key ($CONDGEN_API_KEY)"
    )


def build_parser(list_trainer: bool = True) -> argparse.ArgumentParser:
    """``list_trainer``: name the trainer's commands in the help (importing the trainer takes
    seconds with torch, so only when the help is shown)."""
    trainer = _trainer_commands() if list_trainer else []
    epilog = (
        f"trainer commands: {', '.join(trainer or [])} (condgen <command> --help)"
        if trainer or not list_trainer
        else f"the trainer's commands (train, export, evaluate, zoo, ...) need torch: {INSTALL_HINT}"
    )
    parser = argparse.ArgumentParser(
        prog="condgen",
        description="Serve, list and sample conditional image generators; train them with the train extra.",
        epilog=epilog,
    )
    parser.add_argument("--version", action="version", version=f"condgen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="command")
    sub.add_parser(
        "serve", help="serve a model directory over HTTP (options: condgen serve --help)", add_help=False
    )

    p = sub.add_parser("models", help="list a server's models (or a directory's), or show one card")
    p.add_argument("name", nargs="?", help="a model: print its card as JSON")
    _url_and_key(p)
    p.add_argument("--models", type=Path, help="read the cards of an exported directory instead of a server")

    p = sub.add_parser("generate", help="write a labelled dataset (png-folder, npz or idx)")
    p.add_argument("--model", required=True)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--label", help="one class (id or name) for every image")
    which.add_argument(
        "--labels", help="'all' (default): every class in turn; or a comma-separated list, in turn"
    )
    p.add_argument("--n", type=int, required=True, help="number of images")
    p.add_argument("--seed", type=int, help="default: the unfinished run's seed, or a random one")
    p.add_argument("--offset", type=int, default=0, help="first latent index of the seed (default 0)")
    p.add_argument("--truncation", type=float, help="truncation trick bound (>= 0.1)")
    p.add_argument("--out", type=Path, required=True, help="a folder (png-folder, idx) or a .npz file")
    p.add_argument("--format", choices=FORMATS, help="default: npz for an --out ending .npz, else png-folder")
    _url_and_key(p)
    p.add_argument(
        "--models", type=Path, help="run the exported directory in this process instead of a server"
    )
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight (with --url)")
    p.add_argument("--step", type=int, help="images between two checkpoints of the manifest (default 1024)")
    p.add_argument("--restart", action="store_true", help="discard an unfinished run at --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _label(text: str) -> int | str:
    return int(text) if text.strip().isdigit() else text.strip()


def _print_models(models: list[ModelInfo]) -> None:
    width = max((len(m.name) for m in models), default=4)
    for m in models:
        card = m.card or {}
        image = card.get("image") or {}
        labels = card.get("labels")
        parts = [
            f"{m.name:<{width}}",
            f"{m.status:<9}",
            f"{card.get('dataset', '?'):<13}",
            f"{image.get('channels', '?')}×{image.get('height', '?')}×{image.get('width', '?')}",
            f"{len(labels)} classes" if labels else "unconditional",
        ]
        if m.providers:
            parts.append(",".join(p.removesuffix("ExecutionProvider") for p in m.providers))
        if m.reason and m.status != "ready":
            parts.append(f"({m.reason})")
        print("  ".join(parts))


def _local_models(models_dir: Path) -> list[ModelInfo]:
    infos = []
    for path in sorted(models_dir.glob(f"*/{CARD_FILE}")):
        try:
            card: dict[str, Any] | None = load_card(path.parent).model_dump(mode="json")
            infos.append(ModelInfo(path.parent.name, "exported", None, None, card))
        except (ValueError, OSError) as exc:
            infos.append(ModelInfo(path.parent.name, "invalid", str(exc).splitlines()[0], None, None))
    return infos


def _cmd_models(args: argparse.Namespace) -> int:
    if args.models is not None:
        if not args.models.is_dir():
            raise DatasetError(f"{args.models} is not a directory")
        models = _local_models(args.models)
        if args.name:
            print(json.dumps(LocalSource(args.models).card(args.name), indent=2))
            return 0
    else:
        with Client(args.url, args.api_key) as client:
            if args.name:
                print(json.dumps(client.card(args.name), indent=2))
                return 0
            models = client.models()
    if not models:
        print("no models", file=sys.stderr)
        return 1
    _print_models(models)
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    fmt: Format = args.format or ("npz" if args.out.suffix == ".npz" else "png-folder")
    labels: list[int | str] | None = None
    if args.label is not None:
        labels = [_label(args.label)]
    elif args.labels is not None and args.labels.strip().lower() != "all":
        labels = [_label(x) for x in args.labels.split(",") if x.strip()]
    spec = DatasetSpec(
        model=args.model,
        n=args.n,
        out=args.out,
        fmt=fmt,
        labels=labels,
        seed=args.seed,
        offset=args.offset,
        truncation=args.truncation,
        restart=args.restart,
        step=args.step,
    )
    client = None
    source: Source
    try:
        if args.models is not None:
            source = LocalSource(args.models)
        else:
            client = Client(args.url, args.api_key, concurrency=args.concurrency)
            source = ServerSource(client)  # asks the server for its max_n
        manifest = make_dataset(spec, source, progress=not args.no_progress)
    finally:
        if client is not None:
            client.close()
    rate = manifest.get("images_per_s")
    where = f", {rate:,.0f} images/s" if rate else ""
    print(
        f"{manifest['n']} images of {manifest['model']} (seed {manifest['seed']}) → {args.out} [{fmt}]{where}"
    )
    return 0


def _run_trainer(argv: list[str]) -> int:
    try:
        from trainer.cli import main as trainer_main
    except ModuleNotFoundError as exc:
        message = missing_train_extra(exc)
        if message is None:
            raise
        print(f"condgen {argv[0]}: {message}", file=sys.stderr)
        return 2
    return trainer_main(argv)


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else list(argv)
    if args_list and args_list[0] == "serve":
        from service.__main__ import main as serve

        serve(args_list[1:], prog="condgen serve")
        return 0
    if args_list and not args_list[0].startswith("-") and args_list[0] not in OWN_COMMANDS:
        return _run_trainer(args_list)
    wants_help = not args_list or args_list[0] in ("-h", "--help")
    parser = build_parser(list_trainer=wants_help)
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for noisy in ("httpx", "service"):  # request lines and session set-up: warnings only
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(_cmd_models(args) if args.command == "models" else _cmd_generate(args))
    except (CondgenError, DatasetError) as exc:
        print(f"condgen {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"condgen {args.command}: interrupted; run the same command again to go on", file=sys.stderr)
        return 130
