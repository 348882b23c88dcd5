"""Export: ONNX + card + samples, the parity gate, and the service serving what the trainer made."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from service.card import load_card, sha256_file
from tests.service.conftest import make_settings, serve_app
from trainer import export as export_mod
from trainer.export import ExportError, export_checkpoint, verify_export
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
    samples = Image.open(dest / "samples.png")
    assert samples.size == (2 * (8 * 30 + 2), 2 * (10 * 30 + 2))  # 8 latents × 10 labels

    session = ort.InferenceSession(str(dest / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["z", "label"]
    # The batch axis is dynamic: 1 and 7 images both run.
    for n in (1, 7):
        z = np.zeros((n, 5), dtype=np.float32)
        (out,) = session.run(["image"], {"z": z, "label": np.zeros(n, dtype=np.int64)})
        assert out.shape == (n, 1, 28, 28)


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
