"""bench.graph_ratio on tiny real ONNX models: its report's shape and its refusals (no timings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.graph_ratio import RatioConfig, main, measure
from tests.service.onnx_fixtures import DIGITS, write_model


def test_every_graph_gets_a_rate_per_batch_size_and_a_ratio_to_the_first(tmp_path: Path) -> None:
    a = write_model(tmp_path, "cond-a", labels=DIGITS)
    b = write_model(tmp_path, "cond-b", labels=DIGITS, seed=1)
    result = measure([a, b], RatioConfig(batch_sizes=(1, 4), reps=1, runs=1))
    assert result["clock"] == "cpu"
    graphs = result["graphs"]
    assert isinstance(graphs, list)
    assert [g["model"] for g in graphs] == ["cond-a", "cond-b"]
    assert graphs[0]["ratio"] == 1.0
    for g in graphs:
        assert set(g["images_per_s"]) == {"1", "4"}
        assert g["best_batch"] in (1, 4)
        assert g["raw_limit"] == max(g["images_per_s"].values())


def test_cpu_time_needs_one_thread(tmp_path: Path) -> None:
    a = write_model(tmp_path, "cond-a", labels=DIGITS)
    with pytest.raises(ValueError, match="--clock cpu needs --threads 1"):
        measure([a], RatioConfig(threads=2))


def test_the_cli_prints_json_and_refuses_a_missing_model_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = write_model(tmp_path, "cond-a", labels=DIGITS)
    main([str(a), "--batch-sizes", "2", "--reps", "1", "--runs", "1", "--clock", "wall"])
    assert json.loads(capsys.readouterr().out)["graphs"][0]["model"] == "cond-a"
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "nope")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "nope" in err
    assert "\n" not in err
