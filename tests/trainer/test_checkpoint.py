"""Checkpoints: a run written before checkpoints described themselves still loads and exports the same."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from trainer.checkpoint import FORMAT, generator_from_checkpoint, load_checkpoint
from trainer.cli import main
from trainer.export import export_checkpoint
from trainer.nets.build import config_from_dict, config_to_dict
from trainer.nets.cdcgan import CDCGANConfig
from trainer.recipes import RECIPES, get_recipe

FIXTURES = Path(__file__).parent / "fixtures"
# The generator snapshot (epochs/epoch_001.pt) of a 2-step run of the recipe below, and its export.
OLD_CHECKPOINT = FIXTURES / "cdcgan-mnist-tiny.pt"
OLD_EXPORT = FIXTURES / "cdcgan-mnist-tiny"
TINY = CDCGANConfig(z_features=4, label_features=4, base_channels=8)


@pytest.fixture
def tiny_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = replace(get_recipe("cdcgan-mnist"), name="cdcgan-mnist-tiny", net=TINY)
    monkeypatch.setitem(RECIPES, recipe.name, recipe)


def _timeless(card: dict[str, Any]) -> dict[str, Any]:
    """The card without what may change with the export code: training time, and the graph's
    hash and rewrites (graph passes added since the fixture was made)."""
    training = {k: v for k, v in card["training"].items() if k != "seconds"}
    onnx = {k: v for k, v in card["onnx"].items() if k not in ("sha256", "rewrites")}
    return {**card, "training": training, "onnx": onnx}


def _assert_same_function(graph: Path, reference: Path) -> None:
    """Both ONNX graphs give the same images (up to float rounding) for the same latents and labels."""
    dim = json.loads((reference.parent / "model.json").read_text())["latent"]["dim"]
    feeds = {
        "z": np.random.default_rng(0).standard_normal((64, dim)).astype(np.float32),
        "label": np.arange(64, dtype=np.int64) % 10,
    }
    got, want = (
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
        for path in (graph, reference)
    )
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_an_old_checkpoint_exports_the_same_graph_card_and_samples(tiny_recipe: None, tmp_path: Path) -> None:
    dest = export_checkpoint(OLD_CHECKPOINT, tmp_path)
    _assert_same_function(dest / "model.onnx", OLD_EXPORT / "model.onnx")
    got = json.loads((dest / "model.json").read_text())
    assert _timeless(got) == _timeless(json.loads((OLD_EXPORT / "model.json").read_text()))
    assert got["onnx"]["rewrites"]  # today's passes apply (BatchNorm folded) and are listed
    assert (dest / "samples.png").read_bytes() == (OLD_EXPORT / "samples.png").read_bytes()


def test_a_checkpoint_rebuilds_its_own_networks_after_the_recipe_changes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ckpt = load_checkpoint(OLD_CHECKPOINT)
    ckpt.update(format=FORMAT, net=config_to_dict(TINY))
    path = tmp_path / "checkpoint.pt"
    torch.save(ckpt, path)
    # The recipe of that name now builds the stock width: the checkpoint's own config still wins.
    monkeypatch.setitem(
        RECIPES, "cdcgan-mnist-tiny", replace(get_recipe("cdcgan-mnist"), name="cdcgan-mnist-tiny")
    )
    _, recipe, _ = generator_from_checkpoint(path)
    assert recipe.net == TINY
    dest = export_checkpoint(path, tmp_path / "out")
    _assert_same_function(dest / "model.onnx", OLD_EXPORT / "model.onnx")


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_network_config_survives_the_checkpoint_round_trip(name: str) -> None:
    net = RECIPES[name].net
    assert config_from_dict(config_to_dict(net)) == net


def test_an_unknown_network_config_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown network config"):
        config_from_dict({"type": "NoSuchConfig", "fields": {}})
    with pytest.raises(ValueError, match="fields this code does not have"):
        config_from_dict({"type": "CDCGANConfig", "fields": {"depth": 3}})


@pytest.mark.parametrize("kind", ["state_dict", "torchscript", "onnx"])
def test_export_of_a_foreign_file_says_what_it_expected_and_points_to_import(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fixtures = Path(__file__).parent / "fixtures"
    path = {
        "state_dict": fixtures / "cdcgan_state.pt",
        "torchscript": fixtures / "cdcgan_scripted.pt",
        "onnx": fixtures / "keras_cgan.onnx",
    }[kind]
    assert main(["export", str(path), "--out", str(tmp_path)]) == 2
    message = "\n".join(r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    assert "is not a condgen checkpoint: expected the dict `python -m trainer train` writes" in message
    assert "use `python -m trainer import SOURCE --name NAME`" in message
    assert len(message.splitlines()) == 2
    assert "Traceback" not in message
    assert not list(tmp_path.iterdir())


class _Planted:
    """Unpickled, this would create ``path``: what a hostile checkpoint's payload could do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (Path.touch, (self.path,))


def test_a_checkpoint_is_read_weights_only_and_runs_no_code_of_its(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "hostile.pt"
    torch.save({"recipe": "cdcgan-mnist", "model": {}, "payload": _Planted(marker)}, path)
    assert main(["export", str(path), "--out", str(tmp_path / "out")]) == 2
    assert not marker.exists()
    assert "holding more than tensors and plain data, left unread (it could run code)" in caplog.text
    # A checkpoint of this trainer is plain data, and an older one's torch version (TorchVersion) reads too.
    assert load_checkpoint(OLD_CHECKPOINT)["recipe"] == "cdcgan-mnist-tiny"
