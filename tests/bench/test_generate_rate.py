from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from bench.generate_rate import main
from tests.bench.conftest import GRAY


def test_rounds_pair_the_raw_limit_with_a_whole_generate_run(
    tiny_zoo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["--model-dir", str(tiny_zoo / GRAY), "--n", "200", "--rounds", "2", "--seconds", "0.05"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["model"] == GRAY
    assert summary["n"] == 200
    assert len(summary["rounds"]) == 2
    for r in summary["rounds"]:
        assert r["raw_images_per_s"] > 0
        assert r["generate_images_per_s"] > 0
        assert r["ratio"] == pytest.approx(r["generate_images_per_s"] / r["raw_images_per_s"], abs=1e-3)
    ratios = [r["ratio"] for r in summary["rounds"]]
    assert summary["median_ratio"] == pytest.approx(statistics.median(ratios), abs=1e-3)
