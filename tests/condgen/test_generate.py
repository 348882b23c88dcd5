"""``condgen generate``: the same pixels from a server and in-process, every format, and a run
killed midway that finishes as if it never stopped."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from condgen import Client
from condgen.datasets import DatasetError, class_folders
from condgen.generate import DatasetSpec, make_dataset
from condgen.sources import LocalSource, ServerSource
from service.config import Settings
from tests.service.live import live_zoo
from tests.service.onnx_fixtures import DIGITS, GRAY, UNCOND
from tests.service.process import REPO_ROOT
from tests.service.slow_model import SLOW


def _local(zoo: Path, out: Path, fmt: str, **spec: object) -> dict[str, object]:
    return make_dataset(DatasetSpec(out=out, fmt=fmt, **spec), LocalSource(zoo), progress=False)  # type: ignore[arg-type]


def _png_rows(folder: Path, seed: int, n: int, labels: list[int]) -> np.ndarray:
    names = class_folders(DIGITS)
    rows = [
        np.asarray(Image.open(folder / names[labels[r % len(labels)]] / f"{seed}-{r}.png")) for r in range(n)
    ]
    return np.stack(rows)[:, None]


def test_server_and_in_process_give_the_same_pixels(zoo: Path, tmp_path: Path) -> None:
    local = _local(zoo, tmp_path / "local.npz", "npz", model=GRAY, n=50, seed=7)
    with live_zoo(zoo, max_n=8) as url, Client(url, concurrency=2) as client:
        spec = DatasetSpec(model=GRAY, n=50, out=tmp_path / "served", fmt="png-folder", seed=7)
        served = make_dataset(spec, ServerSource(client), progress=False)
    data = np.load(tmp_path / "local.npz")
    assert data["images"].shape == (50, 1, 8, 8)
    assert data["labels"].tolist() == [r % 10 for r in range(50)]
    assert data["seeds"].tolist() == [7] * 50
    assert data["indices"].tolist() == list(range(50))
    assert np.array_equal(_png_rows(tmp_path / "served", 7, 50, list(range(10))), data["images"])
    for manifest in (local, served):
        assert manifest["complete"] is True
        assert manifest["done"] == 50
        assert manifest["labels"] == list(range(10))
        assert manifest["label_names"] == DIGITS
        assert (
            manifest["model_sha256"] == json.loads((zoo / GRAY / "model.json").read_text())["onnx"]["sha256"]
        )
    assert served["source"].startswith("server http://127.0.0.1:")
    assert json.loads((tmp_path / "local.manifest.json").read_text())["files"] == ["local.npz"]
    assert sorted(p.name for p in (tmp_path / "served").iterdir())[:2] == ["0-zero", "1-one"]


def test_idx_files_read_as_mnists_do(zoo: Path, tmp_path: Path) -> None:
    _local(zoo, tmp_path / "ref.npz", "npz", model=GRAY, n=30, seed=3, labels=["two", 5], offset=100)
    _local(zoo, tmp_path / "idx", "idx", model=GRAY, n=30, seed=3, labels=["two", 5], offset=100, step=7)
    ref = np.load(tmp_path / "ref.npz")
    raw = (tmp_path / "idx" / "images-idx3-ubyte").read_bytes()
    assert struct.unpack(">IIII", raw[:16]) == (0x0803, 30, 8, 8)
    assert np.array_equal(np.frombuffer(raw[16:], np.uint8).reshape(30, 1, 8, 8), ref["images"])
    labels = (tmp_path / "idx" / "labels-idx1-ubyte").read_bytes()
    assert struct.unpack(">II", labels[:8]) == (0x0801, 30)
    assert list(labels[8:]) == [2, 5] * 15
    assert ref["indices"].tolist() == list(range(100, 130))


def test_unconditional_npz_has_no_labels(zoo: Path, tmp_path: Path) -> None:
    manifest = _local(zoo, tmp_path / "u.npz", "npz", model=UNCOND, n=5, seed=1)
    data = np.load(tmp_path / "u.npz")
    assert "labels" not in data
    assert manifest["labels"] is None
    with pytest.raises(DatasetError, match="unconditional"):
        _local(zoo, tmp_path / "v.npz", "npz", model=UNCOND, n=5, seed=1, labels=[1])


def test_a_run_with_other_arguments_is_refused_until_restart(zoo: Path, tmp_path: Path) -> None:
    out = tmp_path / "d"
    _local(zoo, out, "png-folder", model=GRAY, n=12, seed=1)
    again = _local(zoo, out, "png-folder", model=GRAY, n=12)  # no seed: the finished run's
    assert again["seed"] == 1
    with pytest.raises(DatasetError, match=r"seed 1 \(now 2\).*--restart"):
        _local(zoo, out, "png-folder", model=GRAY, n=12, seed=2)
    restarted = _local(zoo, out, "png-folder", model=GRAY, n=12, seed=2, restart=True)
    assert restarted["seed"] == 2
    assert len(list(out.glob("*/2-*.png"))) == 12
    assert not list(out.glob("*/1-*.png"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not empty"):
        _local(zoo, tmp_path / "other", "png-folder", model=GRAY, n=2, seed=1)
    with pytest.raises(DatasetError, match="not removing it"):  # --restart never empties a stranger's folder
        _local(zoo, tmp_path / "other", "png-folder", model=GRAY, n=2, seed=1, restart=True)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_a_resume_without_its_rows_file_is_refused_and_keeps_the_dataset(zoo: Path, tmp_path: Path) -> None:
    """The rows written so far are gone (deleted by hand, or a run killed between packing the .npz
    and marking it complete, before this was ordered): refused, never packed again as zeros."""
    out = tmp_path / "x.npz"
    _local(zoo, out, "npz", model=GRAY, n=6, seed=1)
    packed = out.read_bytes()
    manifest_file = tmp_path / "x.manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["complete"] = False
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match=r"x\.npz\.partial\.npy.*missing.*--restart"):
        _local(zoo, out, "npz", model=GRAY, n=6, seed=1)
    assert out.read_bytes() == packed


def _command(models: Path, fmt: str, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "condgen",
        "generate",
        "--models",
        str(models),
        "--model",
        SLOW,
        "--n",
        "300",
        "--step",
        "100",
        "--seed",
        "3",
        "--format",
        fmt,
        "--out",
        str(out),
        "--no-progress",
    ]


def _manifest(fmt: str, out: Path) -> Path:
    return out.with_suffix(".manifest.json") if fmt == "npz" else out / "manifest.json"


def _read_all(fmt: str, out: Path) -> dict[str, bytes]:
    if fmt == "npz":
        data = np.load(out)
        return {key: data[key].tobytes() for key in data.files}
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.suffix != ".json"
    }


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["png-folder", "npz", "idx"])
def test_a_killed_run_resumes_and_ends_as_an_uninterrupted_one(
    slow_zoo: Path, tmp_path: Path, fmt: str
) -> None:
    # One session run of the slow model (~0.2 s) a step: the kill lands between two steps' ends.
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "CONDGEN_RUN_BATCH_SIZE": "100"}
    suffix = ".npz" if fmt == "npz" else ""
    killed, whole = tmp_path / f"killed{suffix}", tmp_path / f"whole{suffix}"
    proc = subprocess.Popen(_command(slow_zoo, fmt, killed), env=env, cwd=tmp_path, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    done = 0
    while done < 100:  # the first step is on disk: kill it in the middle of the next
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline
        path = _manifest(fmt, killed)
        done = json.loads(path.read_text())["done"] if path.is_file() else 0
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    stopped = json.loads(_manifest(fmt, killed).read_text())
    assert stopped["complete"] is False
    assert 100 <= stopped["done"] < 300
    resumed = subprocess.run(
        _command(slow_zoo, fmt, killed), env=env, cwd=tmp_path, capture_output=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert f"{stopped['done']} of 300 images were written by an earlier run" in resumed.stderr.decode()
    make_dataset(
        DatasetSpec(model=SLOW, n=300, out=whole, fmt=fmt, seed=3, step=100),  # type: ignore[arg-type]
        LocalSource(slow_zoo, Settings(models_dir=slow_zoo, run_batch_size=100)),
        progress=False,
    )
    assert json.loads(_manifest(fmt, killed).read_text())["complete"] is True
    got, want = _read_all(fmt, killed), _read_all(fmt, whole)
    assert sorted(got) == sorted(want)
    assert got == want
    assert not list(tmp_path.glob("*.partial.npy"))
