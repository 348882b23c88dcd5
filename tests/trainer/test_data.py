from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pytest

from trainer.data import DataNotFoundError, load_split, read_idx, read_idx_file, resize_images, write_idx


def _idx_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    write_idx(array, buf)
    return buf.getvalue()


def test_idx_round_trip_raw_and_gzip(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    raw = _idx_bytes(images)
    assert np.array_equal(read_idx(raw), images)
    (tmp_path / "a.gz").write_bytes(gzip.compress(raw))
    assert np.array_equal(read_idx_file(tmp_path / "a.gz"), images)


def test_idx_rejects_bad_magic_and_truncated_payload() -> None:
    with pytest.raises(ValueError, match="magic"):
        read_idx(b"\x01\x02\x08\x01" + b"\x00" * 8)
    raw = _idx_bytes(np.zeros((3, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="promises"):
        read_idx(raw[:-1])


def test_real_mnist_splits_load_in_canonical_order(in_repo: Path, mnist_dir: Path) -> None:
    train = load_split("mnist", "train", mnist_dir)
    test = load_split("mnist", "test", mnist_dir)
    assert train.images.shape == (60000, 28, 28)
    assert test.images.shape == (10000, 28, 28)
    assert train.images.dtype == np.uint8
    # The canonical files start with a 5, 0, 4 (train) and a 7, 2, 1 (test).
    assert train.labels[:3].tolist() == [5, 0, 4]
    assert test.labels[:3].tolist() == [7, 2, 1]
    assert np.bincount(train.labels).min() > 5000


def test_torchvision_layout_is_found(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    imgs = np.full((4, 28, 28), 7, dtype=np.uint8)
    (raw / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(imgs))
    (raw / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.arange(4, dtype=np.uint8)))
    split = load_split("mnist", "test", tmp_path)
    assert len(split) == 4
    assert split.labels.tolist() == [0, 1, 2, 3]


def test_missing_data_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no data/ or node_modules/ here
    monkeypatch.delenv("CONDGEN_DATA_DIR", raising=False)
    monkeypatch.setattr("trainer.data._from_pureml", lambda split: None)
    with pytest.raises(DataNotFoundError, match="make data"):
        load_split("mnist", "train", tmp_path / "nowhere")


def test_resize_images_keeps_uint8_range_and_flat_regions() -> None:
    images = np.zeros((3, 1, 28, 28), dtype=np.uint8)
    images[1] = 255
    images[2, :, 10:18, 10:18] = 200  # a bright square on black
    out = resize_images(images, 32)
    assert out.shape == (3, 1, 32, 32)
    assert out.dtype == np.uint8
    assert not out[0].any()
    assert (out[1] == 255).all()
    # Bilinear: the square keeps its plateau, its edges get in-between values, the corners stay black.
    assert out[2, 0, 16, 16] == 200
    assert out[2, 0, 0, 0] == 0
    assert set(np.unique(out[2])) - {0, 200}
    assert resize_images(out, 32) is out  # already at size: untouched


def test_resize_images_wants_n_c_h_w() -> None:
    with pytest.raises(ValueError, match="N×C×H×W"):
        resize_images(np.zeros((2, 28, 28), dtype=np.uint8), 32)
