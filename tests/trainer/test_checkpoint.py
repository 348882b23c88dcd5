"""Checkpoints: a run written before checkpoints described themselves still loads and exports the same."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from trainer.export import export_checkpoint
from trainer.nets.cdcgan import CDCGANConfig, CDCGANDiscriminator, CDCGANGenerator
from trainer.recipes import RECIPES, _pair, get_recipe

FIXTURES = Path(__file__).parent / "fixtures"
# The generator snapshot (epochs/epoch_001.pt) of a 2-step run of the recipe below, and its export.
OLD_CHECKPOINT = FIXTURES / "cdcgan-mnist-tiny.pt"
OLD_EXPORT = FIXTURES / "cdcgan-mnist-tiny"
TINY = CDCGANConfig(z_features=4, label_features=4, base_channels=8)


@pytest.fixture
def tiny_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = replace(
        get_recipe("cdcgan-mnist"),
        name="cdcgan-mnist-tiny",
        build=lambda r: _pair(CDCGANGenerator(TINY), CDCGANDiscriminator(TINY)),
    )
    monkeypatch.setitem(RECIPES, recipe.name, recipe)


def _timeless(card: dict[str, Any]) -> dict[str, Any]:
    training = {k: v for k, v in card["training"].items() if k != "seconds"}
    return {**card, "training": training}


def test_an_old_checkpoint_exports_the_same_graph_card_and_samples(tiny_recipe: None, tmp_path: Path) -> None:
    dest = export_checkpoint(OLD_CHECKPOINT, tmp_path)
    assert (dest / "model.onnx").read_bytes() == (OLD_EXPORT / "model.onnx").read_bytes()
    got = json.loads((dest / "model.json").read_text())
    assert _timeless(got) == _timeless(json.loads((OLD_EXPORT / "model.json").read_text()))
    assert (dest / "samples.png").read_bytes() == (OLD_EXPORT / "samples.png").read_bytes()
