"""The zoo's table: one row per exported model, rendered from the model cards.

``python -m trainer report`` rewrites ``exported/README.md`` (the table with every sample grid) and
the block between the zoo markers in the repository README, so both stay in step with the cards.
"""

from __future__ import annotations

import logging
from pathlib import Path

from service.card import CARD_FILE, SAMPLES_FILE, ModelCard, card_dirs, load_card

log = logging.getLogger(__name__)

START, END = "<!-- zoo:start -->", "<!-- zoo:end -->"


def load_cards(root: Path) -> list[ModelCard]:
    cards = []
    for model_dir in card_dirs(root):
        try:
            cards.append(load_card(model_dir))
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            log.warning("skipping %s: %s", model_dir.name, exc)
    return cards


def _minutes(card: ModelCard) -> str:
    return f"{card.training.seconds / 60:.1f}" if card.training else "–"


def _metric(card: ModelCard, name: str) -> str:
    for m in card.metrics:
        if m.name == name:
            return f"{m.value:.3g} (N={m.n_samples})"
    return "–"


def zoo_table(cards: list[ModelCard], image_prefix: str) -> str:
    """Markdown table; ``image_prefix`` is the path from the document to ``exported/``."""
    lines = [
        "| model | data | loss | z | labels | epochs | train min | Inception FID | samples |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in cards:
        t = c.training
        labels = f"{len(c.labels)} classes" if c.labels else "none"
        grid = f"![{c.name}]({image_prefix}{c.name}/{SAMPLES_FILE})"
        name = f"`{c.name}`" + (f" (int8 of `{c.quantization.source}`)" if c.quantization else "")
        lines.append(
            f"| {name} | {c.dataset} | {t.loss if t else '–'} | {c.latent.dim} | {labels} "
            f"| {t.epochs if t else '–'} | {_minutes(c)} | {_metric(c, 'fid_inception')} | {grid} |"
        )
    return "\n".join(lines) + "\n"


def write_reports(root: Path = Path("exported"), readme: Path = Path("README.md")) -> list[ModelCard]:
    cards = load_cards(root)
    body = (
        "# The bundled zoo\n\n"
        "Every model here is served by `make run`. Each row comes from the model's card "
        f"(`<name>/{CARD_FILE}`); the grids show rows of labels and columns of latents "
        "(`latents_for(seed=0, index=column)`), so a cell can be asked of the service again.\n"
        "Regenerate this page with `python -m trainer report`.\n\n" + zoo_table(cards, "")
    )
    (root / "README.md").write_text(body, encoding="utf-8")
    if readme.exists():
        text = readme.read_text(encoding="utf-8")
        if START in text and END in text:
            head, rest = text.split(START, 1)
            _, tail = rest.split(END, 1)
            block = f"{START}\n{zoo_table(cards, root.as_posix().rstrip('/') + '/')}{END}"
            readme.write_text(head + block + tail, encoding="utf-8")
    return cards
