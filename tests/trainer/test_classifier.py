"""The domain classifiers: committed weights, recorded accuracy, augmentation, a tiny training run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from service.card import sha256_file
from trainer.classifier import (
    CLASSIFIER_DIR,
    ClassifierConfig,
    ClassifierTraining,
    DomainClassifier,
    augment,
    load_classifier,
    predict,
    to_classifier_size,
    train_classifier,
    weights_path,
)
from trainer.data import load_split

# What each committed classifier must reach (test-split accuracy).
REQUIRED_ACCURACY = {"mnist": 0.993, "fashion-mnist": 0.92}


@pytest.mark.parametrize("dataset", sorted(REQUIRED_ACCURACY))
def test_committed_classifier_is_small_recorded_and_accurate_enough(dataset: str) -> None:
    path = weights_path(dataset)
    assert path.is_file(), f"train it: python -m trainer classifier {dataset}"
    assert path.stat().st_size < 2 * 1024 * 1024
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["sha256"] == sha256_file(path), "the .json describes other weights"
    assert record["test_images"] == 10_000
    assert record["test_accuracy"] >= REQUIRED_ACCURACY[dataset]


def test_mnist_classifier_reproduces_its_recorded_test_accuracy(in_repo: Path, mnist_dir: Path) -> None:
    record = json.loads((CLASSIFIER_DIR / "mnist.json").read_text())
    test = load_split("mnist", "test", mnist_dir)
    logits, feats = predict(load_classifier("mnist"), test.images[:, None])
    assert feats.shape == (10_000, 128)
    accuracy = float((logits.argmax(1) == test.labels).mean())
    assert accuracy == pytest.approx(record["test_accuracy"], abs=1e-6)


def test_augment_shifts_within_bounds_and_flips_only_when_asked() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.full((8, 1, 28, 28), -1.0)
    x[:, :, 10:18, 12:14] = 1.0  # a bar in the middle
    out = augment(x, shift=2, hflip=False, gen=gen)
    assert out.shape == x.shape
    assert torch.equal(out.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)))  # nothing fell off the edge
    same = augment(x, shift=0, hflip=False, gen=gen)
    assert torch.equal(same, x)
    asym = torch.arange(28.0).expand(4, 1, 28, 28)
    flipped = augment(asym, shift=0, hflip=True, gen=torch.Generator().manual_seed(1))
    for img in flipped:
        assert torch.equal(img, asym[0]) or torch.equal(img, asym[0].flip(2))


def test_augment_moves_every_channel_of_an_image_together() -> None:
    gen = torch.Generator().manual_seed(2)
    x = torch.full((6, 3, 16, 16), -1.0)
    x[:, :, 6:10, 5:9] = torch.tensor([1.0, 0.5, 0.0])[:, None, None]  # one coloured square
    out = augment(x, shift=3, hflip=True, gen=gen)
    assert out.shape == x.shape
    for img in out:
        where = [torch.nonzero(img[c] > -1.0).tolist() for c in range(3)]
        assert where[0] == where[1] == where[2]  # the channels were not shifted apart
        assert len(where[0]) == 16  # the whole square stayed inside
    # One channel: the same draws give the same images as a 3-channel batch's first channel.
    one = augment(x[:, :1], shift=3, hflip=True, gen=torch.Generator().manual_seed(2))
    assert torch.equal(one, out[:, :1])


def test_features_are_the_penultimate_layer() -> None:
    model = DomainClassifier(ClassifierConfig()).eval()
    images = np.random.default_rng(0).integers(0, 256, (5, 1, 28, 28), dtype=np.uint8)
    logits, feats = predict(model, images)
    with torch.no_grad():
        expected = model.head(torch.from_numpy(feats).float()).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)


def test_a_tiny_training_run_writes_weights_and_record(
    tmp_path: Path, in_repo: Path, mnist_dir: Path
) -> None:
    record = train_classifier(
        "mnist",
        data_dir=mnist_dir,
        out_dir=tmp_path,
        training=ClassifierTraining(epochs=1, batch_size=64),
        limit=256,
        test_limit=200,
    )
    assert record["train_images"] == 256
    assert record["test_images"] == 200
    assert 0.0 <= record["test_accuracy"] <= 1.0
    assert json.loads((tmp_path / "mnist.json").read_text()) == record
    model = load_classifier("mnist", tmp_path)
    assert not model.training


def test_missing_classifier_says_how_to_train(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="python -m trainer classifier fashion-mnist"):
        load_classifier("fashion-mnist", tmp_path)


def test_other_sizes_are_resized_to_28() -> None:
    images = np.full((3, 1, 32, 32), 200, dtype=np.uint8)
    out = to_classifier_size(images)
    assert out.shape == (3, 1, 28, 28)
    assert out.dtype == np.uint8
    assert (out == 200).all()
    same = images[:, :, :28, :28]
    assert to_classifier_size(same) is same
    rgb = np.full((2, 3, 48, 48), 90, dtype=np.uint8)
    assert to_classifier_size(rgb, 64).shape == (2, 3, 64, 64)
