"""The zoo's quality goals, and how far each model's card is from them.

Two kinds of target: the figures the earlier implementations of each family published (Inception
FID after 200 epochs; the CDCGAN's complaint that it ignored its latent vector), which a model
must beat, and the flagships' own targets. :func:`goals_table` renders the verdicts for
``docs/quality.md`` straight from the cards, so the table and the verdicts cannot disagree.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from service.card import Metric, ModelCard


@dataclass(frozen=True)
class Goal:
    models: str  # a model name, or an fnmatch pattern over names
    metric: str  # a card metric name
    op: Literal["<", "<=", ">="]
    target: float
    why: str

    def met(self, value: float) -> bool:
        if self.op == "<":
            return value < self.target
        if self.op == "<=":
            return value <= self.target
        return value >= self.target

    def gap(self, value: float) -> float:
        """How far ``value`` is from the target in the wrong direction (0 when met)."""
        if self.met(value):
            return 0.0
        return value - self.target if self.op in ("<", "<=") else self.target - value


_PUBLISHED = "the original's published figure (200 epochs)"
_FLAGSHIP = "flagship target"

GOALS: tuple[Goal, ...] = (
    Goal("condgen-mnist", "fid_inception", "<=", 5.0, _FLAGSHIP),
    Goal("condgen-mnist", "label_accuracy", ">=", 0.99, _FLAGSHIP),
    Goal("condgen-mnist", "z_diversity", ">=", 0.9, _FLAGSHIP),
    Goal("condgen-fashion", "fid_inception", "<=", 12.0, _FLAGSHIP),
    Goal("condgen-fashion", "label_accuracy", ">=", 0.95, _FLAGSHIP),
    Goal("condgen-fashion", "z_diversity", ">=", 0.9, _FLAGSHIP),
    Goal("dcgan-mnist", "fid_inception", "<", 44.99, _PUBLISHED),
    Goal("cgan-mnist", "fid_inception", "<", 79.92, _PUBLISHED),
    Goal("lsgan-mnist", "fid_inception", "<", 94.01, _PUBLISHED),
    Goal("gan-mnist", "fid_inception", "<", 103.69, _PUBLISHED),
    Goal(
        "cgan-fashion-*",
        "fid_inception",
        "<",
        38.15,
        "the family's best published figure (BCE, 10, 30 epochs)",
    ),
    Goal("cdcgan-mnist", "z_diversity", ">=", 0.8, "the original ignored its latent vector"),
    Goal("cdcgan-mnist", "label_accuracy", ">=", 0.98, "the original ignored its latent vector"),
)

_OPS = {"<": "<", "<=": "≤", ">=": "≥"}
_LABELS = {
    "fid_inception": "Inception FID",
    "label_accuracy": "accuracy",
    "z_diversity": "diversity",
}


def _metric(card: ModelCard, name: str) -> Metric | None:
    return next((m for m in card.metrics if m.name == name), None)


def _fmt(metric: str, value: float) -> str:
    return f"{value * 100:.1f}%" if metric == "label_accuracy" else f"{value:.4g}"


def goals_table(cards: Iterable[ModelCard], goals: Iterable[Goal] = GOALS) -> str:
    """A markdown table: one row per (goal, model it names), with the card's figure and its N."""
    cards = sorted(cards, key=lambda c: c.name)
    lines = [
        "| model | figure | goal | measured | N gen | verdict | target from |",
        "| --- | --- | --- | ---: | ---: | --- | --- |",
    ]
    for goal in goals:
        for card in (c for c in cards if fnmatch.fnmatchcase(c.name, goal.models)):
            metric = _metric(card, goal.metric)
            label = _LABELS.get(goal.metric, goal.metric)
            shown = f"{goal.target * 100:g}%" if goal.metric == "label_accuracy" else f"{goal.target:g}"
            target = f"{_OPS[goal.op]} {shown}"
            if metric is None:
                lines.append(f"| `{card.name}` | {label} | {target} | – | – | not measured | {goal.why} |")
                continue
            gap = goal.gap(metric.value)
            if gap == 0:
                verdict = "met"
            elif goal.metric == "label_accuracy":
                verdict = f"**missed** by {gap * 100:.1f} points"
            else:
                verdict = f"**missed** by {gap:.3g}"
            lines.append(
                f"| `{card.name}` | {label} | {target} | {_fmt(goal.metric, metric.value)} "
                f"| {metric.n_samples} | {verdict} | {goal.why} |"
            )
    return "\n".join(lines) + "\n"
