"""Device choice: auto falls back to the CPU, an explicit GPU this torch cannot see is an error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainer import cli
from trainer.device import describe, resolve_device


def test_auto_is_cuda_exactly_when_torch_sees_a_gpu() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(" AUTO ").type == expected


def test_cpu_is_always_there() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert describe(torch.device("cpu")) == "cpu"


@pytest.mark.parametrize("name", ["tpu", "gpu", "cuda:x", ""])
def test_unknown_devices_are_refused_with_the_choices(name: str) -> None:
    with pytest.raises(ValueError, match="choose auto, cpu, cuda or cuda:N"):
        resolve_device(name)


def test_a_gpu_torch_cannot_see_is_an_error_not_a_silent_cpu_run() -> None:
    if torch.cuda.is_available():
        assert resolve_device("cuda").type == "cuda"
        assert describe(resolve_device("cuda")).startswith("cuda (")
        count = torch.cuda.device_count()
        with pytest.raises(ValueError, match=f"torch sees {count} CUDA device"):
            resolve_device(f"cuda:{count}")
    else:
        with pytest.raises(ValueError, match="sees no CUDA device"):
            resolve_device("cuda")
        with pytest.raises(ValueError, match="sees no CUDA device"):
            resolve_device("cuda:0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA device")
def test_train_and_zoo_refuse_cuda_without_one_before_any_work(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    assert cli.main(["train", "gan-mnist", "--device", "cuda", "--run-dir", str(run_dir)]) == 2
    assert "sees no CUDA device" in caplog.text
    assert not run_dir.exists()  # refused before the run directory or the data were touched
    zoo = ["zoo", "--device", "cuda", "--only", "gan-mnist", "--runs", str(tmp_path / "runs")]
    assert cli.main([*zoo, "--export-to", str(tmp_path / "zoo")]) == 2
    assert not (tmp_path / "runs").exists()
