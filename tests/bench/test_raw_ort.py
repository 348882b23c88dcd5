from __future__ import annotations

from pathlib import Path

import pytest

from bench.raw_ort import RawResult, measure
from tests.bench.conftest import GRAY


def test_raw_limit_reports_images_per_second_per_batch_size(tiny_zoo: Path) -> None:
    result = measure(tiny_zoo / GRAY, threads=1, batch_sizes=(1, 4, 16), seconds=0.05)
    assert result.model == GRAY
    assert [p.batch for p in result.points] == [1, 4, 16]
    for point in result.points:
        assert point.runs >= 1
        assert point.images_per_s > 0
        # images/s is the median of the rounds' rates (three by default)
        assert len(point.round_images_per_s) == 3
        assert point.images_per_s == pytest.approx(sorted(point.round_images_per_s)[1], abs=0.01)
        # ms_per_run is rounded to 4 decimals (a tiny graph runs in hundredths of a millisecond)
        expected_ms = point.batch / point.images_per_s * 1000.0
        assert point.ms_per_run == pytest.approx(expected_ms, rel=1e-3, abs=1e-4)
    assert result.best in result.points
    assert result.best.images_per_s == max(p.images_per_s for p in result.points)


def test_raw_result_round_trips_through_json(tiny_zoo: Path) -> None:
    result = measure(tiny_zoo / GRAY, threads=1, batch_sizes=(2,), seconds=0.01, max_runs=3)
    assert result.points[0].runs <= 3  # max_runs holds across the rounds
    data = result.to_json()
    assert data["best_batch"] == 2
    assert RawResult.from_json(data) == result


def test_every_round_visits_every_batch_size(tiny_zoo: Path) -> None:
    result = measure(tiny_zoo / GRAY, threads=1, batch_sizes=(1, 8), seconds=0.04, rounds=4)
    for point in result.points:
        assert len(point.round_images_per_s) == 4
        assert point.runs >= 4
    with pytest.raises(ValueError, match="rounds"):
        measure(tiny_zoo / GRAY, threads=1, batch_sizes=(1,), rounds=0)
