from __future__ import annotations

from pathlib import Path

from bench.ab import Variant, compare
from tests.bench.conftest import GRAY


def test_ab_runs_both_variants_in_turn(tiny_zoo: Path, tmp_path: Path) -> None:
    rows = compare(
        Variant("A", {}),
        Variant("B", {"CONDGEN_MAX_WAIT_MS": "1"}),
        tiny_zoo,
        GRAY,
        n=2,
        concurrency=2,
        rounds=2,
        duration_s=0.3,
        threads=1,
        server_cpus=None,
        client_cpus=None,
        loadgen="python",
        log_dir=tmp_path,
    )
    assert set(rows) == {"A", "B"}
    for results in rows.values():
        assert len(results) == 2
        assert all(
            r["images_per_s"] > 0 and r["errors"] == 0 and r["cpu_ms_per_request"] > 0 for r in results
        )
