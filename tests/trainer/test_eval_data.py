"""What each dataset is scored against: held-out images, training samples and the judge."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.trainer.heldout_fixtures import LEGO_CLASSES, train_tiny_classifiers, write_data_root
from trainer.data import CLASS_NAMES
from trainer.eval_data import EVALUATED_DATASETS, held_out, load_judge, training_sample


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_data_root(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def judges(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_classifiers(root, tmp_path_factory.mktemp("classifiers"))


def test_the_idx_and_folder_datasets_are_all_evaluated() -> None:
    assert set(EVALUATED_DATASETS) == {*CLASS_NAMES, "lego-bricks", "synthetic-faces"}


def test_a_held_out_folder_is_whole_or_a_fixed_random_subset_of_every_class(root: Path) -> None:
    whole, ref = held_out("lego-bricks", root)
    assert whole.images.shape == (36, 1, 64, 64)
    assert ref == "lego-bricks held-out folder lego-test, 36 images"
    sub, ref = held_out("lego-bricks", root, n=18)
    assert ref == "lego-bricks held-out folder lego-test, 18 images (a fixed random subset of 36)"
    # Not the first 18 (the folder is stored class by class): the third class is in it too.
    assert set(sub.labels) == {0, 1, 2}
    again, _ = held_out("lego-bricks", root, n=18)
    np.testing.assert_array_equal(again.images, sub.images)
    assert sub.source != whole.source  # the memo of real features tells them apart
    same, ref = held_out("lego-bricks", root, n=500)  # more than there are: all of them
    assert len(same) == 36
    assert ref.endswith(", 36 images")


def test_an_idx_test_split_is_its_first_images(in_repo: Path, mnist_dir: Path) -> None:
    first, ref = held_out("mnist", mnist_dir, n=200, first=True)
    assert first.images.shape == (200, 1, 28, 28)
    assert ref == "mnist test split, first 200 images"
    _, ref = held_out("mnist", mnist_dir, n=200)
    assert ref == "mnist test split, 200 images"


def test_a_training_sample_is_fixed_by_its_seed(root: Path) -> None:
    a = training_sample("synthetic-faces", 20, seed=5, data_dir=root)
    b = training_sample("synthetic-faces", 20, seed=5, data_dir=root)
    c = training_sample("synthetic-faces", 20, seed=6, data_dir=root)
    assert a.images.shape == (20, 3, 64, 64)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.labels, c.labels) or not np.array_equal(a.images, c.images)
    with pytest.raises(ValueError, match="49 training images asked of the 48"):
        training_sample("synthetic-faces", 49, seed=0, data_dir=root)


def test_the_judge_of_a_folder_dataset_is_its_classifier(judges: Path) -> None:
    judge = load_judge("lego-bricks", judges)
    assert judge.class_names == LEGO_CLASSES
    assert judge.size == 64
    assert judge.name.startswith("condgen lego classifier, penultimate 16-d (classifiers/lego.pt sha256 ")
    faces = load_judge("synthetic-faces", judges)
    assert faces.class_names == ["no Blond_Hair", "Blond_Hair"]
    mnist = load_judge("mnist")
    assert (mnist.size, mnist.class_names) == (28, CLASS_NAMES["mnist"])
