"""The image-folder datasets the evaluator knows: where their folders are, how they are labelled."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.trainer.heldout_fixtures import FACE_ATTRIBUTES, LEGO_CLASSES, write_data_root
from trainer.folder_datasets import FOLDER_DATASETS, folder_dataset, load_folder_split, split_dir


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_data_root(tmp_path_factory.mktemp("data"))


def test_cards_name_the_datasets_as_their_manifests_do(in_repo: Path) -> None:
    for manifest in (in_repo / "data").glob("*/manifest.json"):
        name = json.loads(manifest.read_text())["name"]
        if manifest.parent.name in ("lego", "faces"):
            assert name in FOLDER_DATASETS
    assert folder_dataset("lego") is folder_dataset("lego-bricks")
    assert folder_dataset("faces").name == "synthetic-faces"
    with pytest.raises(ValueError, match="lego \\(lego-bricks\\)"):
        folder_dataset("celeba")


def test_folders_are_found_under_the_data_root_first(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lego = folder_dataset("lego")
    assert split_dir(lego, "train", root) == root / "lego"
    assert split_dir(lego, "test", root) == root / "lego-test"
    monkeypatch.setenv("CONDGEN_DATA_DIR", str(root))
    assert split_dir(lego, "test", tmp_path) == root / "lego-test"  # the environment's root next
    monkeypatch.delenv("CONDGEN_DATA_DIR")
    monkeypatch.chdir(tmp_path)  # no data/ here either
    with pytest.raises(FileNotFoundError, match="python -m trainer data lego --split test"):
        split_dir(lego, "test", tmp_path / "nowhere")


def test_lego_classes_are_the_sorted_subfolders(root: Path) -> None:
    split = load_folder_split(folder_dataset("lego"), "test", root)
    assert split.class_names == LEGO_CLASSES
    assert split.images.shape == (36, 1, 64, 64)
    assert split.images.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(split.labels), [12, 12, 12])
    assert split.aux.shape == (36, 0)
    labeled = split.labeled()
    assert labeled.images is split.images
    assert "lego-test" in labeled.source


def test_faces_are_judged_on_blond_hair_and_learn_the_other_attributes(root: Path) -> None:
    faces = folder_dataset("faces")
    split = load_folder_split(faces, "train", root, limit=30, aux=True)
    assert split.class_names == ["no Blond_Hair", "Blond_Hair"]
    assert split.images.shape == (30, 3, 64, 64)
    np.testing.assert_array_equal(split.labels, (np.arange(30) % 3 == 0).astype(np.int64))
    assert set(faces.aux_attributes) == set(FACE_ATTRIBUTES) - {"Blond_Hair"}
    # The auxiliary targets are the table's columns, row by row.
    table = (root / "faces" / "list_attr_celeba.csv").read_text().splitlines()
    header = table[0].split(",")
    for i in (0, 7, 29):
        row = table[i + 1].split(",")
        expected = [row[header.index(a)] == "1" for a in faces.aux_attributes]
        np.testing.assert_array_equal(split.aux[i] > 0.5, expected)
    assert set(np.unique(split.aux)) <= {0.0, 1.0}
