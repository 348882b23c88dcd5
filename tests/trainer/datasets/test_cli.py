"""``python -m trainer data ...``: datasets made from the command line, bad requests refused in a line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.cli import main


def test_data_faces_writes_the_dataset_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "faces"
    assert main(["data", "faces", "--out", str(out), "--count", "5", "--seed", "3", "--workers", "1"]) == 0
    assert "synthetic-faces: 5 images" in capsys.readouterr().out
    assert json.loads((out / "manifest.json").read_text())["seed"] == 3
    # Again without --overwrite: refused with the way out, no traceback.
    assert main(["data", "faces", "--out", str(out), "--count", "5", "--workers", "1"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err


def test_data_lego_takes_a_part_list_and_refuses_an_unknown_part(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("DracoPy", reason="the LDraw meshes need dracopy")
    out = tmp_path / "lego"
    args = ["data", "lego", "--out", str(out), "--per-class", "1", "--workers", "1"]
    assert main([*args, "--parts", "3001,3003"]) == 0
    assert "2 images in 2 classes" in capsys.readouterr().out
    assert main([*args, "--parts", "nope", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "not in the mesh library: nope" in err
    assert "Traceback" not in err
