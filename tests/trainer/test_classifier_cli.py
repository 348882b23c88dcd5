"""The classifier command: which datasets it trains, and what it refuses."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tests.trainer.heldout_fixtures import write_data_root
from trainer.classifier_cli import FOLDER_KEYS, add_classifier_parser
from trainer.folder_datasets import FOLDER_KEYS as DATASET_KEYS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_classifier_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def test_it_trains_the_idx_and_the_folder_classifiers() -> None:
    assert set(FOLDER_KEYS) == set(DATASET_KEYS)
    args = _parser().parse_args(["classifier", "lego", "--data-dir", "d", "--out", "o"])
    assert (args.dataset, args.data_dir, args.out, args.threads) == ("lego", Path("d"), Path("o"), 1)
    for dataset in ("mnist", "fashion-mnist", "faces"):
        assert _parser().parse_args(["classifier", dataset]).dataset == dataset
    with pytest.raises(SystemExit):
        _parser().parse_args(["classifier", "celeba"])


def test_a_folder_that_is_not_the_datasets_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    root = write_data_root(tmp_path / "data")  # 3 classes of shapes, not the 50 LEGO parts
    args = _parser().parse_args(
        ["classifier", "lego", "--data-dir", str(root), "--out", str(tmp_path / "out")]
    )
    with pytest.raises(ValueError, match="50 classes expected; train has 3"):
        args.func(args)
    assert not (tmp_path / "out").exists()
