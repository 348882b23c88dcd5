"""The trainer's count types: whole numbers, refused below their floor in one line."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from trainer.arg_types import count, positive_int
from trainer.cli import main


def test_positive_int_takes_one_and_up() -> None:
    assert positive_int("1") == 1
    assert positive_int("10000") == 10_000
    refused = (("0", "at least 1"), ("-3", "at least 1"), ("2.5", "whole number"), ("x", "whole number"))
    for text, why in refused:
        with pytest.raises(argparse.ArgumentTypeError, match=why):
            positive_int(text)


def test_count_takes_zero_as_skip() -> None:
    assert count("0") == 0
    assert count("7") == 7
    for text, why in (("-1", "0 \\(skip\\) or more"), ("", "whole number"), ("1e3", "whole number")):
        with pytest.raises(argparse.ArgumentTypeError, match=why):
            count(text)


@pytest.mark.parametrize(
    ("argv", "option", "why"),
    [
        (["evaluate", "score", "cdcgan-mnist", "--n", "-1"], "--n", "0 (skip) or more"),
        (["evaluate", "score", "cdcgan-mnist", "--threads", "0"], "--threads", "at least 1"),
        (
            ["evaluate", "curve", "cdcgan-mnist", "--classifier-real-n", "0"],
            "--classifier-real-n",
            "at least",
        ),
        (["quantize", "cdcgan-mnist", "--calibration-rows", "0"], "--calibration-rows", "at least 1"),
        (["quantize", "cdcgan-mnist", "--n-classifier", "-5"], "--n-classifier", "0 (skip) or more"),
        (["calibrate", "cdcgan-mnist", "--segments", "0"], "--segments", "at least 1"),
        (["calibrate", "cdcgan-mnist", "--n", "many"], "--n", "whole number"),
        (["classifier", "lego", "--threads", "-2"], "--threads", "at least 1"),
    ],
)
def test_the_commands_refuse_a_bad_count_before_any_work(
    argv: list[str], option: str, why: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--models" if argv[0] in ("quantize", "calibrate") else "--data-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: " in err
    assert why in err
    assert list(tmp_path.iterdir()) == []  # nothing written
