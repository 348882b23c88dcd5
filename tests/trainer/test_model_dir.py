"""A model directory is written whole: the old model stays until the new one is complete."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from service.card import CARD_FILE, ONNX_FILE, SAMPLES_FILE, ModelCard, load_card
from tests.service.onnx_fixtures import write_model
from trainer.model_dir import write_model_dir


def _graph_and_card(tmp_path: Path, name: str, description: str) -> tuple[bytes, ModelCard]:
    """A tiny real generator (tests/service/onnx_fixtures) and its card, described ``description``."""
    source = write_model(tmp_path / description, name, dim=4)
    card = load_card(source).model_copy(update={"description": description})
    return (source / ONNX_FILE).read_bytes(), card


def test_a_model_is_written_readable_and_replaced_whole(tmp_path: Path) -> None:
    out = tmp_path / "models"
    graph, card = _graph_and_card(tmp_path, "m", "first")
    dest = write_model_dir(out, graph, card)
    assert {p.name for p in dest.iterdir()} == {ONNX_FILE, CARD_FILE, SAMPLES_FILE}
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755
    graph2, card2 = _graph_and_card(tmp_path, "m", "second")
    write_model_dir(out, graph2, card2)
    assert load_card(dest).description == "second"
    assert [p.name for p in out.iterdir()] == ["m"]  # no staging or old copies left behind


def test_a_failed_write_leaves_the_old_model_as_it_was(tmp_path: Path) -> None:
    out = tmp_path / "models"
    graph, card = _graph_and_card(tmp_path, "m", "first")
    write_model_dir(out, graph, card)
    before = {p.name: p.read_bytes() for p in (out / "m").iterdir()}
    with pytest.raises(Exception):  # noqa: B017, PT011 - ONNX Runtime's own error type
        write_model_dir(out, b"not a graph", card)
    assert {p.name: p.read_bytes() for p in (out / "m").iterdir()} == before
    assert [p.name for p in out.iterdir()] == ["m"]
