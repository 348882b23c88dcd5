"""Model cards on disk: written atomically and readable by whoever serves the directory."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.card import (
    CARD_FILE,
    SCHEMA_DOC,
    CurvePoints,
    ModelCard,
    ToneCurve,
    card_dirs,
    card_json_schema,
    is_valid_name,
    load_card,
    write_card,
)
from tests.service.onnx_fixtures import write_model

REPO = Path(__file__).resolve().parents[2]


def test_a_card_is_readable_by_all_whatever_the_umask(tmp_path: Path) -> None:
    model_dir = write_model(tmp_path, "gray")
    card = load_card(model_dir)
    old = os.umask(0o077)  # a private umask: files would be created 0600
    try:
        write_card(card.model_copy(update={"description": "rewritten"}), model_dir)
    finally:
        os.umask(old)
    assert stat.S_IMODE((model_dir / CARD_FILE).stat().st_mode) == 0o644
    assert load_card(model_dir).description == "rewritten"
    assert sorted(p.name for p in model_dir.iterdir() if p.name.startswith(".")) == []


def test_a_failed_write_keeps_the_old_card_and_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = write_model(tmp_path, "gray")
    before = (model_dir / CARD_FILE).read_bytes()

    def broken_replace(src: str, dst: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_card(load_card(model_dir).model_copy(update={"description": "lost"}), model_dir)
    monkeypatch.undo()
    assert (model_dir / CARD_FILE).read_bytes() == before
    assert [p.name for p in model_dir.iterdir() if p.name.startswith(".")] == []


def test_card_dirs_lists_directories_with_a_card_or_the_one_named(tmp_path: Path) -> None:
    for name in ("b", "a"):
        write_model(tmp_path, name)
    (tmp_path / "no-card").mkdir()
    assert card_dirs(tmp_path) == [tmp_path / "a", tmp_path / "b"]
    assert card_dirs(tmp_path, "b") == [tmp_path / "b"]
    with pytest.raises(FileNotFoundError, match="no-card"):
        card_dirs(tmp_path, "no-card")


def test_a_tone_curve_round_trips_and_must_be_monotone(tmp_path: Path) -> None:
    model_dir = write_model(tmp_path, "gray")
    card = load_card(model_dir)
    assert card.onnx.tone_curve is None  # a card from before tone curves existed still reads
    curve = ToneCurve(
        curves=[CurvePoints(x=[-0.8, 0.2, 0.99], y=[-1.0, 0.1, 1.0])], fitted_on="mnist train split"
    )
    write_card(
        card.model_copy(update={"onnx": card.onnx.model_copy(update={"tone_curve": curve})}), model_dir
    )
    assert load_card(model_dir).onnx.tone_curve == curve
    with pytest.raises(ValidationError, match="strictly increasing"):
        CurvePoints(x=[0.0, 0.0], y=[-1.0, 1.0])
    with pytest.raises(ValidationError, match="must not decrease"):
        CurvePoints(x=[0.0, 0.5, 1.0], y=[-1.0, 0.5, 0.2])  # would swap tones
    with pytest.raises(ValidationError, match="3 x points but 2 y points"):
        CurvePoints(x=[0.0, 0.5, 1.0], y=[-1.0, 1.0])


def test_a_card_holds_one_tone_curve_or_one_per_label(tmp_path: Path) -> None:
    card = load_card(write_model(tmp_path, "digits", labels=["a", "b", "c"]))
    points = CurvePoints(x=[-0.8, 0.99], y=[-1.0, 1.0])

    def with_curves(k: int) -> dict[str, object]:
        tone = ToneCurve(curves=[points] * k, fitted_on="x")
        return {**card.model_dump(), "onnx": {**card.onnx.model_dump(), "tone_curve": tone.model_dump()}}

    for k in (1, 3):
        assert len(ModelCard.model_validate(with_curves(k)).onnx.tone_curve.curves) == k  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match="2 curves: one for every image, or one per label \\(3\\)"):
        ModelCard.model_validate(with_curves(2))


def test_the_committed_json_schema_is_the_cards_own() -> None:
    committed = (REPO / SCHEMA_DOC).read_text(encoding="utf-8")
    assert committed == card_json_schema(), f"regenerate it: python -m service.card > {SCHEMA_DOC}"


def test_the_json_schema_describes_an_imported_models_source() -> None:
    schema = json.loads((REPO / SCHEMA_DOC).read_text(encoding="utf-8"))
    assert set(schema["required"]) == {"name", "kind", "family", "dataset", "image", "latent", "onnx"}
    source = schema["$defs"]["ImportSource"]
    assert {"kind", "file", "sha256", "inputs", "outputs", "layout", "batch", "adapters"} <= set(
        source["required"]
    )
    assert source["properties"]["batch"]["enum"] == ["dynamic", "made dynamic", "row by row"]


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("condgen-mnist", True),
        ("a.b_c-1", True),
        ("x" * 64, True),
        ("x" * 65, False),
        ("Upper", False),
        ("-dash-first", False),
        ("a..b", False),
        ("abc\n", False),  # re.match's "$" would let a final newline through
        ("a/b", False),
        ("", False),
    ],
)
def test_model_names_that_can_name_a_directory_and_a_url_segment(name: str, valid: bool) -> None:
    assert is_valid_name(name) is valid
