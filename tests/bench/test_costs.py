from __future__ import annotations

from pathlib import Path

from bench.costs import markdown, measure, time_us
from tests.bench.conftest import GRAY


def test_time_us_is_positive() -> None:
    assert time_us(lambda: sum(range(100)), target_s=0.01) > 0


def test_every_step_is_timed(tiny_zoo: Path) -> None:
    rows = measure(tiny_zoo / GRAY, threads=1, ns=(1, 4), target_s=0.005)
    steps = {(r["step"], r["n"]) for r in rows}
    assert ("plan: labels + latents from (seed, i)", 4) in steps
    assert ("session run + uint8, batch 64 (per image)", 1) in steps
    assert all(float(r["us"]) > 0 for r in rows)  # type: ignore[arg-type]
    assert "| PNG encode (level 1) | 4 |" in markdown(rows, "t")
