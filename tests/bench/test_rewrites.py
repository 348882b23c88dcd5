"""bench.rewrites on tiny real ONNX models in a real git repository: which baseline each model
gets, and the pixel agreement that tells a rewrite from a change of weights (no timings)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bench.graph_ratio import RatioConfig
from bench.report import rewrites_table
from bench.rewrites import compare, main
from tests.service.onnx_fixtures import DIGITS, edit_card, write_model

QUICK = RatioConfig(batch_sizes=(2,), reps=1, runs=1)
TRAINING = {
    "recipe": "r",
    "dataset": "d",
    "loss": "hinge",
    "epochs": 3,
    "steps": 300,
    "batch_size": 64,
    "seconds": 12.5,
    "seed": 0,
}


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _model(exported: Path, name: str, seed: int, **training: object) -> None:
    write_model(exported, name, labels=DIGITS, seed=seed)
    edit_card(exported / name, training={**TRAINING, **training})


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A checkout whose first commit is the baseline; the working tree has the zoo after it."""
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "user.email", "zoo@example.invalid")
    _git(tmp_path, "config", "user.name", "zoo")
    exported = tmp_path / "exported"
    _model(exported, "kept", seed=1)
    _model(exported, "retrained", seed=2)
    _git(tmp_path, "add", "exported")
    _git(tmp_path, "commit", "-qm", "baseline")
    _model(exported, "retrained", seed=3, steps=600)  # trained on: another training record
    _model(exported, "new", seed=4)  # not in the zoo at the baseline
    _model(exported, "changed", seed=5)  # the same record, other weights: not an exact rewrite
    return tmp_path


def test_each_model_is_compared_with_its_own_graph_before(repo: Path, tmp_path: Path) -> None:
    commit = _git(repo, "rev-parse", "HEAD")
    scratch = tmp_path / "scratch"
    kept = compare(repo, repo / "exported", "kept", commit, scratch, QUICK)
    assert kept["baseline"] == "ok"
    assert kept["agreement"]["within_one_level"] == 1.0
    assert kept["agreement"]["max_level_diff"] == 0
    assert [g["model"] for g in kept["graphs"]] == ["kept", "kept"]
    assert kept["graphs"][0]["ratio"] == 1.0
    retrained = compare(repo, repo / "exported", "retrained", commit, scratch, QUICK)
    assert retrained["baseline"] == f"trained again since {commit}"
    assert compare(repo, repo / "exported", "new", commit, scratch, QUICK)["baseline"] == (
        f"not in the zoo at {commit}"
    )


def test_other_weights_under_the_same_record_fail_the_pixel_goal(repo: Path, tmp_path: Path) -> None:
    _git(repo, "add", "exported")
    _git(repo, "commit", "-qm", "changed")
    commit = _git(repo, "rev-parse", "HEAD")
    write_model(repo / "exported", "changed", labels=DIGITS, seed=6)  # weights swapped, card rewritten
    edit_card(repo / "exported" / "changed", training=TRAINING)
    row = compare(repo, repo / "exported", "changed", commit, tmp_path / "scratch", QUICK)
    assert row["baseline"] == "ok"
    assert row["agreement"]["within_one_level"] < 0.999
    table = rewrites_table({"rewrites": {"commit": commit, "models": [row]}})
    assert "**not met**" in table.splitlines()[2]


def test_the_cli_prints_one_json_line(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commit = _git(repo, "rev-parse", "HEAD")
    main(["new", "--models-dir", str(repo / "exported"), "--repo", str(repo), "--commit", commit])
    out = json.loads(capsys.readouterr().out)
    assert out["commit"] == commit
    assert out["models"][0]["baseline"] == f"not in the zoo at {commit}"


def test_a_checkout_without_the_baseline_commit_is_refused_in_one_line(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["kept", "--models-dir", str(repo / "exported"), "--repo", str(repo), "--commit", "0" * 40])
    assert exit_info.value.code == 2
    assert f"the baseline commit {'0' * 40} is not in" in capsys.readouterr().err


def test_a_model_that_does_not_load_is_a_row_not_a_lost_run(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    commit = _git(repo, "rev-parse", "HEAD")
    (repo / "exported" / "kept" / "model.onnx").write_bytes(b"not onnx")
    main(["kept", "new", "--models-dir", str(repo / "exported"), "--repo", str(repo), "--commit", commit])
    rows = json.loads(capsys.readouterr().out)["models"]
    assert rows[0]["model"] == "kept"
    assert rows[0]["baseline"].startswith("failed: ")
    assert rows[1]["baseline"] == f"not in the zoo at {commit}"
