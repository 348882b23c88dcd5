"""The ``condgen`` command: models against a server or a directory, clear one-line errors, the
trainer's commands forwarded, and a clear message where the train extra is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from condgen.cli import main
from tests.service.live import live_zoo
from tests.service.onnx_fixtures import GRAY, RGB, UNCOND
from tests.service.process import REPO_ROOT

# Runs the command in a child where `import torch` fails, as in an install without the train extra.
WITHOUT_TORCH = (
    "import sys; sys.modules['torch'] = None; from condgen.cli import main; sys.exit(main(sys.argv[1:]))"
)


def _without_torch(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_models_lists_a_servers_models_one_line_each(zoo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with live_zoo(zoo) as url:
        assert main(["models", "--url", url]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert main(["models", RGB, "--url", url]) == 0
        card = json.loads(capsys.readouterr().out)
    assert [line.split()[0] for line in lines] == [GRAY, RGB, UNCOND]
    assert all(line.split()[1] == "ready" for line in lines)
    assert "3×6×10" in lines[1]
    assert "3 classes" in lines[1]
    assert lines[2].rstrip().endswith("CPU")  # the provider the session runs on
    assert card["labels"] == ["red", "green", "blue"]


def test_models_reads_a_directory_without_a_server(zoo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--models", str(zoo)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [
        [GRAY, "exported"],
        [RGB, "exported"],
        [UNCOND, "exported"],
    ]
    assert "unconditional" in lines[2]


def test_errors_are_one_line_with_the_servers_words(
    zoo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with live_zoo(zoo) as url:
        code = main(["generate", "--url", url, "--model", "nope", "--n", "3", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("condgen generate: HTTP 404 unknown_model: unknown model 'nope'")
    assert err.count("\n") == 1
    code = main(["models", "--url", "http://127.0.0.1:9", "--api-key", ""])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("condgen models: connection: http://127.0.0.1:9/models: ")
    assert err.count("\n") == 1


def test_generate_writes_a_dataset_in_process(
    zoo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "set.npz"
    args = ["generate", "--models", str(zoo), "--model", GRAY, "--label", "7", "--n", "9", "--seed", "4"]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith(f"9 images of {GRAY} (seed 4) → {out} [npz]")
    manifest = json.loads((tmp_path / "set.manifest.json").read_text())
    assert manifest["labels"] == [7]
    assert manifest["source"] == "in-process"


def test_serve_takes_the_services_options() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "condgen", "serve", "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert done.stdout.startswith("usage: condgen serve")
    assert "--models" in done.stdout
    assert "--log-format" in done.stdout


def test_trainer_commands_without_torch_say_how_to_get_them() -> None:
    for args in (["train", "--help"], ["evaluate", "score", "x"]):
        done = _without_torch(*args)
        assert done.returncode == 2
        assert "Traceback" not in done.stderr
        assert done.stderr.strip() == (
            f"condgen {args[0]}: the trainer's commands need torch, which is not installed; "
            "install the train extra: pip install 'condgen[train]'"
        )
    helped = _without_torch("--help")
    assert helped.returncode == 0
    assert "need torch: install the train extra: pip install 'condgen[train]'" in " ".join(
        helped.stdout.split()
    )


@pytest.mark.torch
def test_trainer_commands_are_forwarded(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    assert main(["list"]) == 0
    assert "condgen-mnist" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "trainer commands: " in capsys.readouterr().out
