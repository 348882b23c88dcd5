"""``python -m trainer import``: what it prints, how it refuses, and that it replaces a model whole."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from service.card import load_card
from tests.trainer.fixtures.tiny_graphs import write_linear
from trainer.cli import main

REPO = Path(__file__).resolve().parents[2]
KERAS = REPO / "tests" / "trainer" / "fixtures" / "keras_cgan.onnx"


def test_an_import_prints_what_it_inferred_applied_and_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import", str(KERAS), "--name", "keras", "--out", str(tmp_path), "--license", "MIT"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "inferred --layout nhwc" in out
    assert any(line.startswith("inferred --value-range=-1,1  (sampled 256 images") for line in out)
    assert "adapter  Transpose(output [N, 28, 28, 1] NHWC → NCHW)" in out
    assert any(line.startswith("checked  parity max |source - imported| = ") for line in out)
    assert out[-1].startswith(f"imported keras → {tmp_path / 'keras'} in ")
    card = load_card(tmp_path / "keras")
    assert card.license == "MIT"
    assert card.family == "imported"
    assert card.training is None


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--name", "Bad Name"], "--name 'Bad Name'"),
        (["--name", "m", "--kwargs", "{nz: 1}"], "--kwargs '{nz: 1}': not JSON"),
        (["--name", "m", "--labels", "a,a"], "--labels 'a,a'"),
        (["--name", "m", "--num-classes", "3", "--labels", "a,b,c"], "pass one of them"),
        (["--name", "m", "--image", "1,28"], "--image '1,28'"),
        (["--name", "m", "--value-range=1,0"], "--value-range '1,0': LO must be below HI"),
        (["--name", "m", "--layout", "nchw"], "pass --layout nchw|nhwc"),
    ],
)
def test_a_refusal_is_one_or_two_lines_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], option: str
) -> None:
    source = write_linear(tmp_path / "g.onnx", row=(3, 3, 3)) if "--layout" in args else KERAS
    if "--layout" in args:
        args = [a for a in args if a not in ("--layout", "nchw")]
    assert main(["import", str(source), "--out", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert 1 <= len(err) <= 2
    assert err[0].startswith("import refused: ")
    assert option in " ".join(err)
    assert not (tmp_path / "out").exists()


def test_a_failed_import_keeps_the_model_it_would_replace(tmp_path: Path) -> None:
    assert main(["import", str(KERAS), "--name", "m", "--out", str(tmp_path)]) == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}
    noisy = write_linear(tmp_path / "noisy.onnx", noise=True)
    args = ["import", str(noisy), "--name", "m", "--out", str(tmp_path), "--value-range=-2,2", "--replace"]
    assert main(args) == 2  # the parity check fails
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "noisy.onnx"]


def test_a_name_already_taken_is_refused_unless_replace_is_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import", str(KERAS), "--name", "m", "--out", str(tmp_path)]) == 0
    card = tmp_path / "m" / "model.json"
    before = card.read_bytes()
    assert main(["import", str(KERAS), "--name", "m", "--out", str(tmp_path), "--license", "MIT"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"import refused: {tmp_path / 'm'} already exists: " + (
        "choose another --name, or pass --replace to replace that model"
    )
    assert card.read_bytes() == before
    assert (
        main(["import", str(KERAS), "--name", "m", "--out", str(tmp_path), "--license", "MIT", "--replace"])
        == 0
    )
    assert json.loads(card.read_text())["license"] == "MIT"


def test_the_command_line_as_a_user_runs_it(tmp_path: Path) -> None:
    """A real process from the repository root: exit status, stdout, and a card on disk."""
    proc = subprocess.run(
        [sys.executable, "-m", "trainer", "import", str(KERAS), "--name", "k", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    card = json.loads((tmp_path / "k" / "model.json").read_text())
    assert card["source"]["inputs"][0] == {"name": "noise", "dtype": "float32", "shape": ["unk__77", 16]}
    refused = subprocess.run(
        [sys.executable, "-m", "trainer", "import", str(tmp_path / "k" / "samples.png"), "--name", "x"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2
    assert refused.stderr.strip().startswith("import refused: ")
    assert len(refused.stderr.strip().splitlines()) <= 2
