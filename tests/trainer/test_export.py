"""Export: ONNX + card + samples, the parity gate, and the service serving what the trainer made."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from service.card import load_card, sha256_file
from tests.service.conftest import make_settings, serve_app
from trainer import cli, graph_passes
from trainer import export as export_mod
from trainer.data import load_split
from trainer.export import (
    ExportError,
    calibrate_exported,
    export_checkpoint,
    optimize_exported,
    verify_export,
)
from trainer.graph_passes import BATCHNORM, ONE_CHANNEL_CONV, UPSAMPLE_CONV
from trainer.tone import apply_tone_curve
from trainer.training import TrainConfig, train


@pytest.fixture(scope="module")
def cdcgan_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.trainer.conftest import REPO

    run = tmp_path_factory.mktemp("run")
    ckpt, _ = train(
        "cdcgan-mnist",
        TrainConfig(
            run_dir=run, epochs=1, limit=500, max_steps=4, data_dir=REPO / "data" / "mnist", threads=1
        ),
    )
    return ckpt


def test_export_writes_a_valid_model_directory(cdcgan_ckpt: Path, tmp_path: Path) -> None:
    dest = export_checkpoint(cdcgan_ckpt, tmp_path)
    assert dest == tmp_path / "cdcgan-mnist"
    card = verify_export(dest)
    assert card.name == "cdcgan-mnist"
    assert card.labels == [str(i) for i in range(10)]
    assert card.latent.dim == 5
    assert card.onnx.sha256 == sha256_file(dest / "model.onnx")
    assert card.training is not None
    assert card.training.steps == 4
    assert "torch" in card.training.libraries
    assert card.training.device == "cpu"
    samples = Image.open(dest / "samples.png")
    assert samples.size == (2 * (8 * 30 + 2), 2 * (10 * 30 + 2))  # 8 latents × 10 labels

    session = ort.InferenceSession(str(dest / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["z", "label"]
    # The batch axis is dynamic: 1 and 7 images both run.
    for n in (1, 7):
        z = np.zeros((n, 5), dtype=np.float32)
        (out,) = session.run(["image"], {"z": z, "label": np.zeros(n, dtype=np.int64)})
        assert out.shape == (n, 1, 28, 28)


def test_the_card_names_every_device_the_run_trained_on(cdcgan_ckpt: Path, tmp_path: Path) -> None:
    ckpt = torch.load(cdcgan_ckpt, map_location="cpu", weights_only=False)
    ckpt["state"]["devices"] = ["cpu", "cuda (NVIDIA H100 80GB HBM3)"]  # resumed on a GPU
    moved = tmp_path / "run" / "checkpoint.pt"
    moved.parent.mkdir()
    torch.save(ckpt, moved)
    card = verify_export(export_checkpoint(moved, tmp_path / "out"))
    assert card.training is not None
    assert card.training.device == "cpu, cuda (NVIDIA H100 80GB HBM3)"


def test_a_broken_graph_fails_the_export_and_writes_nothing(
    cdcgan_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export_mod, "parity", lambda *a, **k: 0.5)
    with pytest.raises(ExportError, match="differs from torch"):
        export_checkpoint(cdcgan_ckpt, tmp_path)
    assert not (tmp_path / "cdcgan-mnist").exists()


def test_a_failed_re_export_keeps_the_previous_model(
    cdcgan_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = export_checkpoint(cdcgan_ckpt, tmp_path)
    before = sha256_file(dest / "model.onnx")
    monkeypatch.setattr(export_mod, "parity", lambda *a, **k: float("nan"))
    with pytest.raises(ExportError):
        export_checkpoint(cdcgan_ckpt, tmp_path)
    assert sha256_file(dest / "model.onnx") == before
    assert load_card(dest).onnx.sha256 == before


async def test_the_service_serves_the_exported_model(cdcgan_ckpt: Path, tmp_path: Path) -> None:
    export_checkpoint(cdcgan_ckpt, tmp_path)
    async with serve_app(make_settings(tmp_path)) as (_, client):
        models = (await client.get("/models")).json()
        assert "cdcgan-mnist" in str(models)
        resp = await client.post("/generate", json={"model": "cdcgan-mnist", "label": 3, "seed": 7})
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "image/png"
        img = Image.open(io.BytesIO(resp.content))
        assert img.size == (28, 28)
        again = await client.post("/generate", json={"model": "cdcgan-mnist", "label": "3", "seed": 7})
        assert again.content == resp.content


def _tiny_checkpoint(recipe: str, dataset: str, run_dir: Path) -> Path:
    """Two optimiser steps of ``recipe``: weights that are not the initial ones, in seconds."""
    from tests.trainer.conftest import REPO

    cfg = TrainConfig(
        run_dir=run_dir, epochs=1, limit=200, max_steps=2, data_dir=REPO / "data" / dataset, threads=1
    )
    ckpt, _ = train(recipe, cfg)
    return ckpt


def test_the_export_serves_the_rewritten_graph(tmp_path: Path) -> None:
    """An upsample-conv generator is exported with its pairs folded, and still passes the gate."""
    ckpt = _tiny_checkpoint("cgan-fashion-bce-10", "fashion-mnist", tmp_path / "run")
    dest = export_checkpoint(ckpt, tmp_path / "out")
    card = verify_export(dest)
    assert card.onnx.rewrites == [f"{UPSAMPLE_CONV} ×2", f"{BATCHNORM} ×1", f"{ONE_CHANNEL_CONV} ×1"]
    ops = [n.op_type for n in onnx.load(str(dest / "model.onnx")).graph.node]
    assert "Resize" not in ops
    assert "BatchNormalization" not in ops
    assert ops.count("ConvTranspose") == 3  # the two folded pairs and the one-channel output layer


def _export_unoptimized(ckpt: Path, out: Path) -> Path:
    """Export as before the rewrites existed."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(export_mod, "optimize_onnx", lambda path: [])
        dest = export_checkpoint(ckpt, out)
    assert verify_export(dest).onnx.rewrites == []
    return dest


def test_optimize_exported_rewrites_an_old_export_in_place(tmp_path: Path) -> None:
    """A model exported before the rewrites existed: folded behind the parity gate, card updated."""
    dest = _export_unoptimized(_tiny_checkpoint("dcgan-mnist", "mnist", tmp_path / "run"), tmp_path / "out")
    feeds = {"z": np.random.default_rng(1).standard_normal((16, 100)).astype(np.float32)}
    session = ort.InferenceSession(str(dest / "model.onnx"), providers=["CPUExecutionProvider"])
    before = session.run(["image"], feeds)[0]

    rewrites = [f"{UPSAMPLE_CONV} ×2", f"{BATCHNORM} ×1", f"{ONE_CHANNEL_CONV} ×1"]
    assert optimize_exported(dest) == rewrites
    card = verify_export(dest)  # the digest follows the new file
    assert card.onnx.rewrites == rewrites
    session = ort.InferenceSession(str(dest / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(["image"], feeds)[0], before, atol=1e-5)
    assert optimize_exported(dest) == []  # idempotent: nothing left, nothing written
    assert verify_export(dest).onnx.sha256 == card.onnx.sha256


def test_optimize_exported_refuses_a_rewrite_that_changes_the_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = _export_unoptimized(_tiny_checkpoint("dcgan-mnist", "mnist", tmp_path / "run"), tmp_path / "out")
    before = sha256_file(dest / "model.onnx")
    # A wrong tap map: the folded kernel no longer equals the pair it replaces.
    monkeypatch.setattr(graph_passes, "_TAPS", graph_passes._TAPS[::-1].copy())
    with pytest.raises(ExportError, match="differs"):
        optimize_exported(dest)
    assert sha256_file(dest / "model.onnx") == before
    assert verify_export(dest).onnx.rewrites == []


def test_a_saturating_output_exports_as_a_clip(tmp_path: Path) -> None:
    """dcgan-mnist's gained tanh becomes Tanh → Mul → Clip in ONNX, and passes the parity gate."""
    ckpt = _tiny_checkpoint("dcgan-mnist", "mnist", tmp_path / "run")
    dest = export_checkpoint(ckpt, tmp_path / "out")
    verify_export(dest)
    ops = [n.op_type for n in onnx.load(str(dest / "model.onnx")).graph.node if n.op_type != "Constant"]
    assert ops[-3:] == ["Tanh", "Mul", "Clip"]
    session = ort.InferenceSession(str(dest / "model.onnx"), providers=["CPUExecutionProvider"])
    z = np.random.default_rng(0).standard_normal((16, 100)).astype(np.float32) * 8
    (out,) = session.run(["image"], {"z": z})
    assert out.min() >= -1.0
    assert out.max() <= 1.0


def _mnist_dir() -> Path:
    from tests.trainer.conftest import REPO

    return REPO / "data" / "mnist"


def test_calibrate_ends_an_export_with_its_tone_curve(cdcgan_ckpt: Path, tmp_path: Path) -> None:
    dest = export_checkpoint(cdcgan_ckpt, tmp_path)
    feeds: dict[str, np.ndarray] = {
        "z": np.random.default_rng(3).standard_normal((32, 5)).astype(np.float32) * 3,
        "label": np.arange(32, dtype=np.int64) % 10,
    }
    session = ort.InferenceSession(str(dest / "model.onnx"), providers=["CPUExecutionProvider"])
    before = session.run(["image"], feeds)[0]
    grid_before = (dest / "samples.png").read_bytes()

    curve = calibrate_exported(dest, _mnist_dir(), n=500, segments=8)
    card = verify_export(dest)  # the digest follows the new file
    assert card.onnx.tone_curve == curve
    assert len(curve.curves) == 10  # one per label
    assert all(len(c.x) == 8 + 3 for c in curve.curves)  # 8 segments, black to white, and the ends
    assert "mnist train split" in curve.fitted_on
    assert card.metrics == []  # they measured the graph before: stale
    assert card.training is not None
    assert card.training.hyperparameters["tone_curve"] is True
    session = ort.InferenceSession(str(dest / "model.onnx"), providers=["CPUExecutionProvider"])
    after = session.run(["image"], feeds)[0]
    points = [(c.x, c.y) for c in curve.curves]
    np.testing.assert_allclose(after, apply_tone_curve(before, points, feeds["label"]), atol=1e-5)
    assert (dest / "samples.png").read_bytes() != grid_before  # the grid shows what is served now

    # Fitted on the training seed's latents, the served images have MNIST's share of exact black.
    from service.latents import latents_for
    from service.runtime import to_uint8

    fit_feeds = {"z": latents_for(0, 500, 5), "label": np.arange(500, dtype=np.int64) % 10}
    black = np.mean(to_uint8(session.run(["image"], fit_feeds)[0], (-1.0, 1.0)) == 0)
    assert black == pytest.approx(np.mean(load_split("mnist", "train", _mnist_dir()).images == 0), abs=0.01)

    with pytest.raises(ExportError, match="already ends with a tone curve"):
        calibrate_exported(dest, _mnist_dir())
    assert verify_export(dest).onnx.sha256 == card.onnx.sha256


def test_a_flagship_exports_with_its_tone_curve(tmp_path: Path) -> None:
    ckpt = _tiny_checkpoint("condgen-mnist", "mnist", tmp_path / "run")
    card = verify_export(export_checkpoint(ckpt, tmp_path / "out", data_dir=_mnist_dir()))
    assert card.onnx.tone_curve is not None
    assert card.training is not None
    assert card.training.hyperparameters["tone_curve"] is True
    assert len(card.onnx.tone_curve.curves) == 10  # one per digit
    nodes = onnx.load(str(tmp_path / "out" / "condgen-mnist" / "model.onnx")).graph.node
    assert [n.op_type for n in nodes][-7:] == ["Unsqueeze", "Max", "Min", "Sub", "Mul", "ReduceSum", "Add"]
    # Each image's segment tables are gathered by its label.
    assert sorted(n.name for n in nodes if n.op_type == "Gather" and n.name.startswith("tone_")) == [
        "tone_highs_gather",
        "tone_lows_gather",
        "tone_slopes_gather",
        "tone_y0_gather",
    ]


def test_calibrate_cli_reports_a_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["calibrate", "nope", "--models", str(tmp_path)]) == 2
    assert "nope" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # refused by the parser, before the model is looked up
        cli.main(["calibrate", "nope", "--models", str(tmp_path), "--n", "0"])
    assert exit_info.value.code == 2
    assert "argument --n: must be at least 1" in capsys.readouterr().err
    with pytest.raises(ExportError, match="at least one generated image"):  # and by the API, for callers
        calibrate_exported(tmp_path / "nope", n=0)
