"""The image-folder loader and attribute tables, on a folder the tests write themselves."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.trainer.folder_fixtures import (
    ATTR_FILE,
    N_IMAGES,
    attribute_rows,
    folder_images,
    write_celeba_txt,
    write_csv,
    write_folder,
)
from trainer.attributes import AttributeTableError, class_names_for
from trainer.imagefolder import ImageFolderError, find_images, load_image, load_image_folder

SIZE = 16  # pixels: small enough that every load in this file takes milliseconds


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_folder(tmp_path_factory.mktemp("folder"))


def _expected_ids(files: list[str], bits: list[str]) -> list[int]:
    """Class ids by the documented scheme: bit i set when the image has attribute i."""
    by_name = {im.name: im for im in folder_images()}
    specs = [by_name[f.rsplit("/", 1)[-1]] for f in files]
    return [sum(1 << i for i, b in enumerate(bits) if getattr(spec, b)) for spec in specs]


def test_loads_every_image_sorted_with_shapes_dtypes_and_ranges(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="trainer.imagefolder"):
        data = load_image_folder(folder, image_size=SIZE, channels=3)
    assert data.images.shape == (N_IMAGES, 3, SIZE, SIZE)
    assert data.images.dtype == np.uint8
    assert data.labels is None
    assert data.class_names is None
    # Recursive, sorted by relative path; the hidden file and the text file are never candidates.
    assert data.files == sorted(im.rel for im in folder_images())
    assert data.skipped_unreadable == 1
    assert "skipped 1 unreadable files" in caplog.text
    assert "broken.jpg" in caplog.text
    # Real content, not a constant: gray background and saturated shapes span most of 0..255.
    assert data.images.min() < 60
    assert data.images.max() > 200


def test_gray_and_rgb_sources_convert_to_the_requested_channels(folder: Path) -> None:
    rgb = load_image_folder(folder, image_size=SIZE, channels=3)
    gray = load_image_folder(folder, image_size=SIZE, channels=1)
    assert gray.images.shape == (N_IMAGES, 1, SIZE, SIZE)
    specs = {im.rel: im for im in folder_images()}
    for i, rel in enumerate(rgb.files):
        img = rgb.images[i].astype(int)
        centre = img[:, SIZE // 2, SIZE // 2]
        if specs[rel].gray:
            # gray → three equal channels
            assert (img[0] == img[1]).all()
            assert (img[1] == img[2]).all()
        elif specs[rel].red:
            assert centre[0] > centre[2] + 100
        else:
            assert centre[2] > centre[0] + 100


def test_resize_of_the_shorter_side_then_centre_crop(tmp_path: Path) -> None:
    # 96×64 landscape, three 32-pixel vertical stripes R, G, B. The centre square is x 16..80, so
    # at 16 px the output is red over x 0..4, green over 4..12 and blue over 12..16.
    wide = np.zeros((64, 96, 3), dtype=np.uint8)
    wide[:, :32, 0] = wide[:, 32:64, 1] = wide[:, 64:, 2] = 255
    Image.fromarray(wide).save(tmp_path / "wide.png")
    out = load_image(tmp_path / "wide.png", SIZE, 3)
    assert out.shape == (3, SIZE, SIZE)
    assert out[:, 8, 1].argmax() == 0
    assert out[:, 8, 8].argmax() == 1
    assert out[:, 8, 14].argmax() == 2
    # Portrait: the top and bottom bands are cut the same way.
    tall = np.ascontiguousarray(wide.transpose(1, 0, 2))
    Image.fromarray(tall).save(tmp_path / "tall.png")
    out = load_image(tmp_path / "tall.png", SIZE, 3)
    assert [int(out[:, y, 8].argmax()) for y in (1, 8, 14)] == [0, 1, 2]
    # An image already at the target size comes back unchanged (no resampling blur).
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "exact.png")
    np.testing.assert_array_equal(load_image(tmp_path / "exact.png", SIZE, 3), noise.transpose(2, 0, 1))


def test_transparency_is_composited_on_white_and_16_bit_gray_is_scaled(tmp_path: Path) -> None:
    rgba = np.zeros((SIZE, SIZE, 4), dtype=np.uint8)  # fully transparent black
    Image.fromarray(rgba).save(tmp_path / "clear.png")
    assert (load_image(tmp_path / "clear.png", SIZE, 3) == 255).all()
    deep = np.full((SIZE, SIZE), 65535 // 2, dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert abs(int(load_image(tmp_path / "deep.png", SIZE, 1).mean()) - 127) <= 1


def test_limit_keeps_the_first_images_and_workers_do_not_change_the_result(folder: Path) -> None:
    full = load_image_folder(folder, image_size=SIZE, channels=3)
    first = load_image_folder(folder, image_size=SIZE, channels=3, limit=5)
    assert first.files == full.files[:5]
    np.testing.assert_array_equal(first.images, full.images[:5])
    threaded = load_image_folder(folder, image_size=SIZE, channels=3, workers=2)
    assert threaded.files == full.files
    np.testing.assert_array_equal(threaded.images, full.images)


def test_class_names_scheme() -> None:
    assert class_names_for(["Blond_Hair"]) == ["no Blond_Hair", "Blond_Hair"]
    assert class_names_for(["Blond_Hair", "Male"]) == ["none", "Blond_Hair", "Male", "Blond_Hair+Male"]
    three = class_names_for(["A", "B", "C"])
    assert len(three) == 8
    assert three[0b101] == "A+C"
    assert three[7] == "A+B+C"


def test_one_attribute_gives_two_classes(folder: Path) -> None:
    data = load_image_folder(folder, image_size=SIZE, channels=3, attributes=["Red_Shape"])
    assert data.class_names == ["no Red_Shape", "Red_Shape"]
    assert data.labels is not None
    assert data.labels.dtype == np.int64
    assert data.labels.tolist() == _expected_ids(data.files, ["red"])
    assert data.images.shape[0] == N_IMAGES
    assert data.skipped_unreadable == 1  # broken.jpg has a row but no image in it


def test_attribute_combinations_give_two_to_the_k_classes(folder: Path) -> None:
    # Names match the table's columns case-insensitively; class names keep the table's spelling.
    data = load_image_folder(folder, image_size=SIZE, channels=1, attributes=["red_shape", "Round"])
    assert data.class_names == ["none", "Red_Shape", "Round", "Red_Shape+Round"]
    assert data.labels is not None
    assert data.labels.tolist() == _expected_ids(data.files, ["red", "round"])
    assert set(data.labels.tolist()) == {0, 1, 2, 3}


def test_celeba_txt_layout_and_zero_one_values(folder: Path, tmp_path: Path) -> None:
    rows = attribute_rows(folder_images(), zero_one=True)
    table = write_celeba_txt(tmp_path / "list_attr_celeba.txt", rows)
    data = load_image_folder(folder, SIZE, 3, attributes=["Round", "Big"], attr_csv=table)
    assert data.class_names == ["none", "Round", "Big", "Round+Big"]
    assert data.labels is not None
    assert data.labels.tolist() == _expected_ids(data.files, ["round", "big"])
    # broken.jpg has no row in this table: it is skipped as unlabelled before anyone reads it.
    assert data.skipped_unlabelled == 1
    assert data.skipped_unreadable == 0


def test_images_missing_from_the_table_are_skipped_with_a_warning(
    folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    images = folder_images()
    dropped = {images[3].name, images[10].name, images[40].name}
    rows = [r for r in attribute_rows(images) if r[0] not in dropped]
    table = write_csv(tmp_path / "partial.csv", [*rows, ["broken.jpg", "1", "1", "1"]])
    with caplog.at_level(logging.WARNING, logger="trainer.imagefolder"):
        data = load_image_folder(folder, SIZE, 3, attributes=["Big"], attr_csv=table)
    assert data.images.shape[0] == N_IMAGES - 3
    assert data.skipped_unlabelled == 3
    assert not dropped & {f.rsplit("/", 1)[-1] for f in data.files}
    assert "skipped 3 images with no row in the attribute table" in caplog.text


def test_an_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ImageFolderError, match="no images under"):
        load_image_folder(tmp_path, SIZE, 3)
    (tmp_path / "readme.txt").write_text("nothing to see\n", encoding="utf-8")
    with pytest.raises(ImageFolderError, match=r"looked recursively for .*\.png"):
        load_image_folder(tmp_path, SIZE, 3)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "missing", SIZE, 3)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG but not really")
    with pytest.raises(ImageFolderError, match="could be read"):
        load_image_folder(tmp_path, SIZE, 3)


def test_unusable_attribute_requests_are_clear_errors(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(AttributeTableError, match="'Smiling' is not a column"):
        load_image_folder(folder, SIZE, 3, attributes=["Smiling"])
    with pytest.raises(AttributeTableError, match="repeat"):
        load_image_folder(folder, SIZE, 3, attributes=["Big", "big"])
    with pytest.raises(AttributeTableError, match="at most 6"):
        load_image_folder(folder, SIZE, 3, attributes=[f"A{i}" for i in range(7)])
    with pytest.raises(AttributeTableError, match="without attributes"):
        load_image_folder(folder, SIZE, 3, attr_csv=folder / ATTR_FILE)
    bad = write_csv(tmp_path / "bad.csv", [["img_000.png", "2", "1", "1"]])
    with pytest.raises(AttributeTableError, match="expected -1/1 or 0/1"):
        load_image_folder(folder, SIZE, 3, attributes=["Red_Shape"], attr_csv=bad)
    other = write_csv(tmp_path / "other.csv", [["someone_else.jpg", "1", "1", "1"]])
    with pytest.raises(ImageFolderError, match="has a row in"):
        load_image_folder(folder, SIZE, 3, attributes=["Big"], attr_csv=other)
    untabled = tmp_path / "deeper" / "no_table"
    untabled.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(untabled / "x.png")
    with pytest.raises(AttributeTableError, match="--attr-csv"):
        load_image_folder(untabled, SIZE, 3, attributes=["Big"])


def test_find_images_skips_hidden_entries_and_survives_a_link_loop(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "sub" / "B.PNG")  # suffixes match case-insensitively
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    (tmp_path / ".cache").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / ".cache" / "c.png")
    (tmp_path / "sub" / "loop").symlink_to(tmp_path, target_is_directory=True)
    assert find_images(tmp_path) == ["a.jpg", "sub/B.PNG"]


def test_class_subfolders_are_labels_in_sorted_order(folder: Path) -> None:
    data = load_image_folder(folder, SIZE, 3, class_folders=True)
    assert data.class_names == ["a", "b"]  # b/nested/... belongs to b
    assert data.labels is not None
    expected = [0 if f.startswith("a/") else 1 for f in data.files]
    assert data.labels.tolist() == expected
    assert np.bincount(data.labels).tolist() == [N_IMAGES // 2, N_IMAGES // 2]  # broken.jpg skipped
    # Attributes, when given too, are the labels.
    both = load_image_folder(folder, SIZE, 3, attributes=["Round"], class_folders=True)
    assert both.class_names == ["no Round", "Round"]


def test_a_limit_on_class_folders_keeps_every_class_share(tmp_path: Path) -> None:
    for cls, count in (("a", 6), ("b", 3), ("c", 3)):
        (tmp_path / cls).mkdir()
        for i in range(count):
            Image.new("L", (8, 8), 10 * i).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "a" / "2.png").write_bytes(b"not an image")
    data = load_image_folder(tmp_path, SIZE, 1, limit=6, class_folders=True)
    # Six evenly spaced over a0..a5 b0..b2 c0..c2 are a0 a2 a4 b0 b2 c2; a2 cannot be read, and
    # the first file left, a1, makes up for it. The first six would have been class a alone.
    assert data.files == ["a/0.png", "a/4.png", "b/0.png", "b/2.png", "c/2.png", "a/1.png"]
    assert data.labels is not None
    assert data.labels.tolist() == [0, 0, 1, 1, 2, 0]


def test_images_outside_the_class_folders_are_skipped_and_one_class_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for rel in ("cats/1.png", "dogs/2.png", "dogs/3.png", "stray.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (9, 9, 9)).save(tmp_path / rel)
    with caplog.at_level(logging.WARNING):
        data = load_image_folder(tmp_path, SIZE, 1, class_folders=True)
    assert data.files == ["cats/1.png", "dogs/2.png", "dogs/3.png"]
    assert data.skipped_unlabelled == 1
    assert "outside the class subfolders" in caplog.text
    assert "stray.png" in caplog.text
    with pytest.raises(ImageFolderError, match=r"only the class folder 'cats'.*--attributes"):
        load_image_folder(_one_class(tmp_path), SIZE, 1, class_folders=True)


def _one_class(tmp_path: Path) -> Path:
    root = tmp_path / "one"
    (root / "cats").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "cats" / "1.png")
    return root
