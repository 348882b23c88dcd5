"""Contact sheets of a made dataset: one cell per LEGO part, one per face."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from trainer.datasets.faces import FacesConfig, make_faces
from trainer.datasets.jobs import DatasetError
from trainer.datasets.sheet import CAPTION, GAP, contact_sheet


def test_a_faces_sheet_has_a_captioned_cell_per_face(tmp_path: Path) -> None:
    make_faces(FacesConfig(out=tmp_path / "faces", count=14, workers=1))
    out = contact_sheet(tmp_path / "faces", tmp_path / "sheet.png")
    with Image.open(out) as sheet:
        # 14 faces, 12 to a row: two rows of 64 px cells, each with its caption.
        assert sheet.size == (12 * (64 + GAP) + GAP, 2 * (64 + CAPTION + GAP) + GAP)


def test_a_lego_sheet_has_three_renders_per_part(tmp_path: Path) -> None:
    pytest.importorskip("DracoPy", reason="the LDraw meshes need dracopy")
    from trainer.datasets.lego import LegoConfig, make_lego

    make_lego(LegoConfig(out=tmp_path / "lego", per_class=3, parts=("3001", "3003"), workers=1))
    with Image.open(contact_sheet(tmp_path / "lego", tmp_path / "sheet.png")) as sheet:
        assert sheet.size == (5 * (3 * 64 + GAP) + GAP, 64 + CAPTION + 2 * GAP)


def test_a_folder_without_a_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"no manifest\.json"):
        contact_sheet(tmp_path, tmp_path / "sheet.png")
