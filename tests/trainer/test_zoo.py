"""The bundled zoo is what ``python -m trainer zoo``, ``make train-64`` and ``python -m trainer
quantize zoo`` rebuild: every committed float32 model's card names a recipe of
``EXPORTED_MODELS``, trained for the planned epochs with the recipe's current settings, and every
int8 variant was made from the committed graph of one of ``INT8_SOURCES``, so each quality figure
in ``docs/quality.md`` is reproduced by the documented command."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from service.card import load_card
from trainer.recipes import RECIPES, Recipe
from trainer.zoo import EXPORTED_MODELS, INT8_SOURCES

EXPORTED = Path(__file__).resolve().parents[2] / "exported"
VARIANTS = sorted(EXPORTED.glob("*-int8/model.json"))
CARDS = sorted(set(EXPORTED.glob("*/model.json")) - set(VARIANTS))
# A knob added to the trainer after a model was trained is absent from its card; the model was
# then trained without it, which is the field's default (off) and must still be the recipe's value.
FIELD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Recipe)}


def test_the_zoo_holds_exactly_the_planned_models() -> None:
    assert sorted(p.parent.name for p in CARDS) == sorted(EXPORTED_MODELS)
    assert sorted(p.parent.name for p in VARIANTS) == sorted(f"{m}-int8" for m in INT8_SOURCES)


@pytest.mark.parametrize("card_path", VARIANTS, ids=lambda p: p.parent.name)
def test_each_int8_variant_is_of_the_committed_graph_and_passed_the_gate(card_path: Path) -> None:
    card = load_card(card_path.parent)
    assert card.quantization is not None
    source = load_card(EXPORTED / card.quantization.source)
    assert card.name == f"{source.name}-int8"
    assert card.quantization.source_sha256 == source.onnx.sha256, "re-quantize: the float32 graph changed"
    ours = {m.name: m for m in card.metrics}
    theirs = {m.name: m for m in source.metrics}
    # Scored like its source, at the same sample counts, within the quantizer's bounds.
    assert ours["fid_inception"].n_samples == theirs["fid_inception"].n_samples == 10_000
    assert ours["fid_inception"].value <= theirs["fid_inception"].value + 0.5
    assert ours["label_accuracy"].n_samples == theirs["label_accuracy"].n_samples == 10_000
    assert ours["label_accuracy"].value >= theirs["label_accuracy"].value - 0.005


@pytest.mark.parametrize("card_path", CARDS, ids=lambda p: p.parent.name)
def test_each_model_was_trained_as_the_plan_and_its_recipe_say(card_path: Path) -> None:
    card = load_card(card_path.parent)
    training = card.training
    assert training is not None
    recipe = RECIPES[training.recipe]
    assert training.recipe == card.name
    assert training.epochs == EXPORTED_MODELS[card.name]
    # A folder recipe's card names the data it was trained on (its manifest's name).
    dataset = recipe.dataset if recipe.dataset != "folder" else card.dataset
    assert (training.dataset, training.loss, training.batch_size) == (dataset, recipe.loss, recipe.batch_size)
    trained = training.hyperparameters
    assert set(trained) <= set(recipe.hyperparameters()), "the card names a knob no recipe has"
    for key, value in recipe.hyperparameters().items():
        if key in trained:
            assert trained[key] == value, f"{key}: trained with {trained[key]}, the recipe now says {value}"
        else:
            assert key in FIELD_DEFAULTS, f"{key}: absent from the card and not a recipe field"
            assert value == FIELD_DEFAULTS[key], (
                f"{key}: absent from the card (trained before the knob existed, so off), "
                f"but the recipe now sets it to {value}"
            )
