"""The synthetic faces: CelebA's layout and base rates, every attribute visible where it should be."""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from trainer.attributes import read_attributes
from trainer.datasets.faces import (
    ATTR_FILE,
    ATTRIBUTES,
    IMAGE_FOLDER,
    FacesConfig,
    draw_face,
    make_faces,
    sample_attributes,
)
from trainer.datasets.jobs import MANIFEST, image_rng

COUNT = 24


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("faces") / "faces"
    make_faces(FacesConfig(out=out, seed=2, count=COUNT, workers=1))
    return out


def test_the_layout_and_attribute_table_are_celeba_s(faces: Path) -> None:
    files = sorted((faces / IMAGE_FOLDER).iterdir())
    assert [f.name for f in files[:2]] == ["000001.png", "000002.png"]
    assert len(files) == COUNT
    with (faces / ATTR_FILE).open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["image_id", *ATTRIBUTES]
    assert len(rows) == COUNT + 1
    assert all(v in ("1", "-1") for row in rows[1:] for v in row[1:])
    # The trainer's own reader takes it: one attribute → two classes.
    names, table = read_attributes(faces / ATTR_FILE, ["Blond_Hair"])
    assert names == ["Blond_Hair"]
    assert sorted(table) == [f.name for f in files]


def test_the_manifest_says_the_faces_are_synthetic(faces: Path) -> None:
    m = json.loads((faces / MANIFEST).read_text())
    assert m["synthetic"] is True
    assert "not real faces" in m["description"]
    assert m["images"] == COUNT
    assert m["seed"] == 2
    assert m["image"] == {"channels": 3, "height": 64, "width": 64, "format": "PNG"}
    assert set(m["attribute_rates"]) == set(ATTRIBUTES)


def test_the_same_seed_gives_the_same_bytes(faces: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    make_faces(FacesConfig(out=again, seed=2, count=COUNT, workers=2))
    for name in ("000001.png", "000024.png"):
        one, two = (faces / IMAGE_FOLDER / name).read_bytes(), (again / IMAGE_FOLDER / name).read_bytes()
        assert hashlib.sha256(one).digest() == hashlib.sha256(two).digest()
    assert (again / ATTR_FILE).read_bytes() == (faces / ATTR_FILE).read_bytes()


def test_base_rates_are_celeba_s() -> None:
    drawn = [sample_attributes(image_rng(0, "train", i)) for i in range(20_000)]
    rates = {
        "Male": np.mean([a.male for a in drawn]),
        "Blond_Hair": np.mean([a.blond for a in drawn]),
        "Smiling": np.mean([a.smiling for a in drawn]),
        "Eyeglasses": np.mean([a.glasses for a in drawn]),
    }
    celeba = {"Male": 0.417, "Blond_Hair": 0.148, "Smiling": 0.482, "Eyeglasses": 0.065}
    for name, rate in celeba.items():
        assert rates[name] == pytest.approx(rate, abs=0.012), name
    assert not any(a.blond and a.hair != "blond" for a in drawn)


def _changed(attribute: str, value: bool) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns where a face differs when only ``attribute`` is set to ``value``."""
    for i in range(200):
        base = sample_attributes(image_rng(9, "train", i))
        if getattr(base, attribute) != value and not base.male:
            break
    extra = {"hair": "blond"} if attribute == "blond" else {}
    one, _ = draw_face(image_rng(9, "train", i), attributes=base)
    two, _ = draw_face(image_rng(9, "train", i), attributes=replace(base, **{attribute: value}, **extra))
    diff = np.abs(np.asarray(one, dtype=int) - np.asarray(two, dtype=int)).sum(axis=2) > 30
    return np.flatnonzero(diff.any(axis=1)), np.flatnonzero(diff.any(axis=0))


@pytest.mark.parametrize(
    ("attribute", "rows"),
    [
        ("smiling", (28, 50)),  # the mouth (and the narrowed eyes)
        ("glasses", (24, 40)),  # a band across the eyes
        ("blond", (0, 64)),  # the hair, top to shoulders
    ],
)
def test_each_attribute_is_drawn_where_it_belongs(attribute: str, rows: tuple[int, int]) -> None:
    changed_rows, _ = _changed(attribute, True)
    assert len(changed_rows) >= 3, f"{attribute} is not visible"
    assert rows[0] <= changed_rows.min()
    assert changed_rows.max() < rows[1]
