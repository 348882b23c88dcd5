"""The registry: every recipe means what it meant when ``fixtures/recipes.json`` was written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.recipes import RECIPES

EXPECTED = json.loads((Path(__file__).parent / "fixtures" / "recipes.json").read_text())


def test_every_recipe_is_registered() -> None:
    assert set(EXPECTED) <= set(RECIPES)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_recipe_keeps_its_card_latent_classes_epochs_and_networks(name: str) -> None:
    recipe = RECIPES[name]
    generator, critic = recipe.build(recipe)
    got = {
        "hyperparameters": recipe.hyperparameters(),
        "z_dim": recipe.z_dim,
        "num_classes": recipe.num_classes,
        "epochs": recipe.epochs,
        "kind": recipe.kind,
        "family": recipe.family,
        "image_size": recipe.image_size,
        "channels": recipe.channels,
        "parameters": [
            sum(p.numel() for p in m.parameters()) if m is not None else 0 for m in (generator, critic)
        ],
    }
    assert got == EXPECTED[name]
