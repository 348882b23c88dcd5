"""``python -m trainer train --name``: two folder models trained and exported side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.card import load_card
from tests.trainer.folder_fixtures import write_folder
from trainer.cli import main

SMOKE = ["--limit", "16", "--max-steps", "1", "--epochs", "1", "--threads", "1"]


def test_named_runs_and_exports_do_not_overwrite_each_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_folder(tmp_path / "shapes")  # class subfolders a/ and b/nested/
    monkeypatch.chdir(tmp_path)
    common = ["--data-dir", str(folder), "--export-to", "models", *SMOKE]
    assert main(["train", "cgan64-folder", "--name", "shapes-by-folder", *common]) == 0
    assert main(["train", "cgan64-folder", "--name", "shapes-round", "--attributes", "Round", *common]) == 0
    by_folder = load_card(tmp_path / "models" / "shapes-by-folder")
    round_ = load_card(tmp_path / "models" / "shapes-round")
    # Class subfolders are the labels of the first, the attribute the labels of the second.
    assert by_folder.labels == ["a", "b"]
    assert round_.labels == ["no Round", "Round"]
    assert (by_folder.name, round_.name) == ("shapes-by-folder", "shapes-round")
    assert by_folder.dataset == "shapes"  # the folder's name, not "folder"
    for name in ("shapes-by-folder", "shapes-round"):
        run = json.loads((tmp_path / "runs" / name / "run.json").read_text())
        assert run["recipe"] == "cgan64-folder"
        assert run["data"]["images"] == 16
    assert (
        json.loads((tmp_path / "runs" / "shapes-round" / "run.json").read_text())["data"]["labels_from"]
        == "attributes: Round"
    )
    assert "exported → models/shapes-round" in capsys.readouterr().out


def test_the_card_takes_the_dataset_name_and_description_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_folder(tmp_path / "shapes")
    monkeypatch.chdir(tmp_path)
    args = ["train", "dcgan64-folder", "--data-dir", str(folder), "--export-to", "models", *SMOKE]
    assert (
        main([*args, "--dataset-name", "coloured-shapes", "--dataset-description", "discs and squares"]) == 0
    )
    card = load_card(tmp_path / "models" / "dcgan64-folder")
    assert card.dataset == "coloured-shapes"
    assert card.training is not None
    assert card.training.dataset == "coloured-shapes"
    assert card.description.endswith("Data: discs and squares.")


def test_a_bad_name_is_refused_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "dcgan64-folder", "--name", "Not A Name", "--data-dir", str(tmp_path)]) == 2
    assert "--name 'Not A Name'" in capsys.readouterr().err


@pytest.mark.parametrize(("option", "value"), [("--limit", "0"), ("--epochs", "-1"), ("--max-steps", "x")])
def test_counts_below_one_are_refused_in_one_line(
    option: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "cdcgan-mnist", "--run-dir", str(tmp_path / "run"), option, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}:" in err
    assert "must be at least 1" in err or "expected a whole number" in err
    assert not (tmp_path / "run").exists()  # refused before anything was written
