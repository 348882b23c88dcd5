"""What a run records of its data: a fingerprint that tells data apart, a name from the data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trainer.run_data import DataRecord, fingerprint, folder_identity, refuse_other_data


def _record(images: int, fp: str) -> DataRecord:
    return DataRecord(
        dir="data/x", images=images, classes=["a", "b"], labels_from="class folders", fingerprint=fp, name="x"
    )


def test_the_fingerprint_changes_with_any_pixel_label_or_shape() -> None:
    x = np.zeros((4, 1, 8, 8), dtype=np.uint8)
    y = np.array([0, 1, 0, 1])
    base = fingerprint(x, y)
    assert fingerprint(x.copy(), y.copy()) == base
    changed = x.copy()
    changed[3, 0, 7, 7] = 1
    assert fingerprint(changed, y) != base
    assert fingerprint(x, np.array([0, 1, 1, 1])) != base
    assert fingerprint(x, None) != base
    assert fingerprint(x.reshape(2, 2, 8, 8), y) != base


def test_the_dataset_name_comes_from_options_then_the_manifest_then_the_folder(tmp_path: Path) -> None:
    plain = tmp_path / "my-photos"
    plain.mkdir()
    assert folder_identity(plain) == ("my-photos", None)
    assert folder_identity(plain, "holiday", "beach photos") == ("holiday", "beach photos")
    made = tmp_path / "made"
    (made / "img_align_celeba").mkdir(parents=True)
    (made / "manifest.json").write_text(json.dumps({"name": "synthetic-faces", "description": "drawn"}))
    assert folder_identity(made) == ("synthetic-faces", "drawn")
    assert folder_identity(made / "img_align_celeba") == ("synthetic-faces", "drawn")  # the parent's
    assert folder_identity(made, "faces-v2") == ("faces-v2", "drawn")


def test_a_resume_on_other_data_is_refused_and_on_the_same_or_unrecorded_data_allowed() -> None:
    current = _record(10, "f1")
    refuse_other_data(None, current, Path("runs/x/checkpoint.pt"))  # a run from before data was recorded
    refuse_other_data(current.as_dict(), current, Path("runs/x/checkpoint.pt"))
    moved = DataRecord.from_dict({**current.as_dict(), "dir": "elsewhere"})
    refuse_other_data(moved.as_dict(), current, Path("runs/x/checkpoint.pt"))  # same data, moved
    with pytest.raises(
        ValueError, match=r"runs/x/checkpoint.pt was trained on data/x \(12 images, 2 classes\)"
    ):
        refuse_other_data(_record(12, "f0").as_dict(), current, Path("runs/x/checkpoint.pt"))
