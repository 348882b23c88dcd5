"""The orchestrator end to end on the tiny zoo: condgen only, the Python client, short windows."""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.native_profile import perf_problem
from bench.run import (
    DEV_LOCK,
    MODEL64,
    Results,
    cell_set,
    int8_pairs,
    label_for,
    lock_drift,
    locked_versions,
    main,
    other_load,
    parse_args,
    resolve_models,
    stage_int8,
    stage_rewrites,
)
from tests.bench.conftest import GRAY, RGB, UNCOND
from tests.service.onnx_fixtures import DIGITS, edit_card, write_model


@pytest.mark.slow
def test_run_writes_results_and_report(tiny_zoo: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    main(
        [
            "--models-dir",
            str(tiny_zoo),
            "--out",
            str(out),
            "--small",
            "cond-gray",
            "--large",
            "cond-rgb",
            "--servers",
            "condgen",
            "--n",
            "1,4",
            "--concurrency",
            "1,4",
            "--duration",
            "0.4",
            "--warmup",
            "0.2",
            "--raw-seconds",
            "0.05",
            "--raw-batch-sizes",
            "1,8",
            "--costs-seconds",
            "0.002",
            "--cold-starts",
            "1",
            "--profile-seconds",
            "1",
            "--loadgen",
            "python",
            "--server-cpus",
            "",
            "--client-cpus",
            "",
            # The 64×64 slot's place taken by the unconditional model: its own cell set, no label.
            "--model64",
            "uncond",
            "--n64",
            "2",
            "--concurrency64",
            "3",
        ]
    )
    results = json.loads((out / "results.json").read_text())
    assert not results["problems"]
    assert set(results["raw"]) == {"cond-gray", "cond-rgb", "uncond"}
    assert results["meta"]["model64"] == "uncond"
    assert results["meta"]["labels"] == {"cond-gray": 3, "cond-rgb": 2, "uncond": None}
    slot = [c for c in results["cells"] if c["model"] == "uncond"]
    assert [(c["n"], c["concurrency"], c["error_count"]) for c in slot] == [(2, 3, 0)]
    assert "round_images_per_s" not in slot[0]  # no goal reads the slot: one round
    results["cells"] = [c for c in results["cells"] if c["model"] != "uncond"]
    assert len(results["cells"]) == 2 * 2 * 2
    assert all(c["error_count"] == 0 and c["requests"] > 0 for c in results["cells"])
    assert all(c["server_cpu_ms_per_request"] > 0 for c in results["cells"])
    # The goal cells (here the largest n, 4, at every c) are the median of three rounds.
    for cell in results["cells"]:
        rounds = cell.get("round_images_per_s")
        if cell["n"] == 4:
            assert len(rounds) == 3, cell
            # Both are rounded to two places, as results.json writes every rate.
            assert cell["images_per_s"] == sorted(rounds)[1]
        else:
            assert rounds is None, cell
    assert results["cold_start"]["models_ready"] == 3
    assert {r["step"] for r in results["costs"]["cond-gray"]} >= {"float→uint8", "metrics (4 observations)"}
    assert results["memory"]["condgen_rss_mb_after_load"] > 0
    assert (out / "RESULTS.md").is_file()
    assert (out / "throughput_latency.png").is_file()
    assert "## `uncond` (64×64 slot): HTTP ÷ raw" in (out / "RESULTS.md").read_text()
    # Both profilers at n=1 and n=64 on each goal model (not the slot); perf only where it may record.
    assert set(results["profile"]) == {f"{m} n={n} c=32" for m in ("cond-gray", "cond-rgb") for n in (1, 64)}
    report = (out / "RESULTS.md").read_text()
    if perf_problem() is None:
        assert set(results["native_profile"]) == set(results["profile"])
        for summary in results["native_profile"].values():
            shares = {r["name"]: r["percent"] for r in summary["libraries"]}
            assert sum(shares.values()) == pytest.approx(100.0, abs=0.1)
            # The tiny models leave ONNX Runtime few samples; the serving Python never misses.
            assert shares["Python interpreter"] > 10, summary
        assert "## On-CPU time by library (perf on condgen)" in report
    else:
        assert any("on-CPU profile skipped" in note for note in results["notes"])
    # No raw captures kept: they hold machine paths, and the summaries are what is reported.
    assert not list(out.glob("*.data"))
    assert not list(out.glob("profile-*.txt"))


def _reported(marker: str, expected: bool) -> bool:
    """Whether other_load() lists ``marker`` as ``expected`` within 10 s (/proc lags a signal)."""
    deadline = time.monotonic() + 10
    while any(marker in cmd for cmd in other_load()) != expected:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_running_training_job_is_reported_and_a_stopped_one_is_not() -> None:
    # A real process whose command line reads like a training job (the words are its argv).
    argv = [sys.executable, "-c", "import time; time.sleep(60)", "-m", "trainer", "train", "x"]
    job = subprocess.Popen(argv)
    try:
        assert _reported("trainer train x", True)
        os.kill(job.pid, signal.SIGSTOP)  # paused for a quiet benchmark: no CPU taken
        assert _reported("trainer train x", False)
        os.kill(job.pid, signal.SIGCONT)
        assert _reported("trainer train x", True)
    finally:
        job.kill()
        job.wait()


def test_goal_rounds_below_one_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--goal-rounds", "0"])
    assert "--goal-rounds must be >= 1" in capsys.readouterr().err


def test_reported_versions_are_the_locks_and_drift_is_a_problem(tmp_path: Path) -> None:
    locked = locked_versions(DEV_LOCK)
    assert locked["onnxruntime"] == importlib.metadata.version("onnxruntime")
    assert locked["torch"].startswith("2.13.0")
    assert lock_drift(locked) == []
    stale = tmp_path / "dev.txt"
    stale.write_text(
        "onnxruntime==0.0.1 \\\n    --hash=sha256:00\n    # via condgen (pyproject.toml)\nnumpy==0.0.2\n"
    )
    assert locked_versions(stale) == {"onnxruntime": "0.0.1", "numpy": "0.0.2"}
    drift = lock_drift(locked_versions(stale))
    assert [d.split()[0] for d in drift] == ["onnxruntime", "numpy"]
    assert drift[0].endswith("the lock has 0.0.1 (make install-dev)")


def test_label_for_a_50_class_a_2_class_and_an_unconditional_model(tmp_path: Path) -> None:
    bricks = [f"{3001 + i} Brick {i}" for i in range(50)]
    write_model(tmp_path, "lego64", height=64, width=64, labels=bricks)
    write_model(tmp_path, "faces64", channels=3, height=64, width=64, labels=["a", "b"])
    write_model(tmp_path, "uncond64", height=64, width=64)
    cfg = parse_args(["--models-dir", str(tmp_path), "--small", "lego64", "--large", "faces64"])
    assert label_for(cfg, "lego64") == 3
    assert label_for(cfg, "faces64") == 1  # the last class of a smaller model
    assert label_for(cfg, "uncond64") is None  # no label in the body: it would be refused


def _zoo_args(tiny_zoo: Path, *more: str) -> list[str]:
    return ["--models-dir", str(tiny_zoo), "--small", GRAY, "--large", RGB, *more]


def test_a_64x64_slot_not_exported_is_skipped_with_a_note(
    tiny_zoo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    res = Results()
    with caplog.at_level("WARNING", logger="bench"):
        models = resolve_models(parse_args(_zoo_args(tiny_zoo)), res)
    assert models == [GRAY, RGB]
    assert res.meta["model64"] is None
    assert f"64×64 slot skipped: {MODEL64} is not in {tiny_zoo}" in caplog.text
    assert any(note.startswith("64×64 slot skipped") for note in res.notes)
    # Turned off: no slot, nothing to note.
    res = Results()
    assert resolve_models(parse_args(_zoo_args(tiny_zoo, "--model64", "")), res) == [GRAY, RGB]
    assert res.notes == []


def test_the_64x64_slot_has_its_own_cell_set_outside_the_goals(tiny_zoo: Path) -> None:
    cfg = parse_args(_zoo_args(tiny_zoo, "--model64", UNCOND))
    res = Results()
    assert resolve_models(cfg, res) == [GRAY, RGB, UNCOND]
    assert res.meta["model64"] == UNCOND
    slot, small = cell_set(cfg, UNCOND), cell_set(cfg, GRAY)
    assert (slot.ns, slot.concurrency, slot.goals) == ((1, 16), (8, 32), False)
    assert (small.ns, small.concurrency, small.goals) == ((1, 16, 64), (1, 8, 32, 128), True)


def test_the_64x64_slot_cannot_be_the_small_or_large_model(
    tiny_zoo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_args(_zoo_args(tiny_zoo, "--model64", GRAY))
    assert "is already the small or large model" in capsys.readouterr().err


def _as_int8_of(variant: Path, source: str, fid: float) -> None:
    quantization = {"source": source, "source_sha256": "0" * 64, "scheme": "static QDQ", "calibrated_on": "z"}
    metric = {"name": "fid_inception", "value": fid, "n_samples": 10_000}
    edit_card(variant, quantization=quantization, metrics=[metric])


def test_every_int8_variant_is_measured_against_its_float32_model(tmp_path: Path) -> None:
    write_model(tmp_path, "cond-a", labels=DIGITS)
    edit_card(tmp_path / "cond-a", metrics=[{"name": "fid_inception", "value": 5.0, "n_samples": 10_000}])
    _as_int8_of(write_model(tmp_path, "cond-a-int8", labels=DIGITS, seed=1), "cond-a", 5.25)
    _as_int8_of(write_model(tmp_path, "orphan-int8", labels=DIGITS, seed=2), "gone", 1.0)
    assert int8_pairs(tmp_path) == [("cond-a", "cond-a-int8")]  # a variant without its source is left out
    cfg = parse_args(
        ["--models-dir", str(tmp_path), "--small", "cond-a", "--large", "cond-a", "--server-cpus", ""]
    )
    res = Results()
    stage_int8(cfg, res)
    assert res.problems == []
    row = res.int8["cond-a-int8"]
    assert row["source"] == "cond-a"
    assert [g["model"] for g in row["graphs"]["graphs"]] == ["cond-a", "cond-a-int8"]
    assert row["graphs"]["threads"] == 1
    assert row["graphs"]["clock"] == "cpu"
    assert row["quality"]["cond-a-int8"]["fid_inception"] == {"value": 5.25, "n": 10_000}
    assert row["quality"]["cond-a"]["fid_inception"]["value"] == 5.0


def test_the_rewrites_stage_measures_the_bench_models_and_the_int8_sources(tmp_path: Path) -> None:
    write_model(tmp_path, "cond-a", labels=DIGITS)
    _as_int8_of(write_model(tmp_path, "cond-b-int8", labels=DIGITS, seed=1), "cond-b", 5.0)
    write_model(tmp_path, "cond-b", labels=DIGITS, seed=2)
    cfg = parse_args(
        ["--models-dir", str(tmp_path), "--small", "cond-a", "--large", "cond-a", "--server-cpus", ""]
    )
    res = Results()
    stage_rewrites(cfg, ["cond-a"], res)
    assert res.problems == []
    rows = res.rewrites["models"]
    assert [r["model"] for r in rows] == ["cond-a", "cond-b"]
    assert {r["baseline"] for r in rows} == {f"not in the zoo at {res.rewrites['commit']}"}
