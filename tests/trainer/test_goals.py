"""Goal verdicts from cards: met, missed by how much, or not measured."""

from __future__ import annotations

from pathlib import Path

from service.card import Metric, ModelCard, load_card
from tests.service.onnx_fixtures import write_model
from trainer.goals import Goal, goals_table


def _card(tmp_path: Path, name: str, metrics: list[Metric]) -> ModelCard:
    model_dir = write_model(tmp_path, name)
    card = load_card(model_dir)
    return card.model_copy(update={"metrics": metrics})


def test_a_goal_knows_its_direction_and_gap() -> None:
    fid = Goal("m", "fid_inception", "<=", 5.0, "x")
    assert fid.met(5.0)
    assert not fid.met(5.5)
    assert fid.gap(7.5) == 2.5
    assert fid.gap(4.0) == 0.0
    acc = Goal("m", "label_accuracy", ">=", 0.99, "x")
    assert acc.gap(0.97) == 0.99 - 0.97
    assert Goal("m", "fid_inception", "<", 5.0, "x").met(5.0) is False


def test_the_table_gives_each_named_model_its_verdict(tmp_path: Path) -> None:
    goals = (
        Goal("cgan-*", "fid_inception", "<", 38.15, "published"),
        Goal("flag", "label_accuracy", ">=", 0.99, "target"),
    )
    cards = [
        _card(tmp_path, "cgan-a", [Metric(name="fid_inception", value=30.0, n_samples=1000)]),
        _card(tmp_path, "cgan-b", [Metric(name="fid_inception", value=40.5, n_samples=10000)]),
        _card(tmp_path, "cgan-c", []),
        _card(tmp_path, "flag", [Metric(name="label_accuracy", value=0.975, n_samples=10000)]),
        _card(tmp_path, "other", [Metric(name="fid_inception", value=1.0, n_samples=10)]),
    ]
    rows = {line.split(" | ")[0].strip("| `"): line for line in goals_table(cards, goals).splitlines()[2:]}
    assert set(rows) == {"cgan-a", "cgan-b", "cgan-c", "flag"}
    assert "| 30 | 1000 | met |" in rows["cgan-a"]
    assert "| < 38.15 |" in rows["cgan-b"]
    assert "**missed** by 2.35" in rows["cgan-b"]
    assert "not measured" in rows["cgan-c"]
    assert "| ≥ 99% | 97.5% | 10000 | **missed** by 1.5 points |" in rows["flag"]
