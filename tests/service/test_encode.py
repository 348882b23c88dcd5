"""Content negotiation and the PNG / grid / NPY / JSON encoders."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from service import encode as encode_module
from service.encode import (
    MediaType,
    grid_shape,
    json_images,
    negotiate,
    npy_bytes,
    png_bytes,
    png_of_batch,
    tile,
)
from service.errors import NotAcceptable


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, MediaType.PNG),
        ("", MediaType.PNG),
        ("*/*", MediaType.PNG),
        ("image/*", MediaType.PNG),
        ("image/png", MediaType.PNG),
        ("application/json", MediaType.JSON),
        ("application/x-npy", MediaType.NPY),
        ("application/*", MediaType.JSON),
        ("Application/JSON; charset=utf-8", MediaType.JSON),
        ("application/json, */*;q=0.1", MediaType.JSON),
        ("application/json;q=0.5, image/png;q=0.9", MediaType.PNG),
        ("image/png;q=0.1, application/json;q=0.9", MediaType.JSON),
        ("text/html, application/x-npy;q=0.2", MediaType.NPY),
        ("application/x-npy, application/json", MediaType.NPY),  # equal q: the client's order
        ("*/*, application/json", MediaType.JSON),  # the specific range beats the wildcard
        ("image/png;q=0, */*", MediaType.JSON),  # explicitly refused PNG
    ],
)
def test_negotiate(accept: str | None, expected: MediaType) -> None:
    assert negotiate(accept) is expected
    assert negotiate(accept) is expected  # the second time from the memo: the same answer


def test_the_negotiation_memo_stays_bounded_and_keeps_answering() -> None:
    for i in range(1000):  # a client sending a different header every time
        assert negotiate(f"image/png, application/x-custom-{i}") is MediaType.PNG
    assert len(encode_module._NEGOTIATED) <= encode_module._NEGOTIATED_MAX
    assert negotiate("application/json") is MediaType.JSON


@pytest.mark.parametrize("accept", ["text/html", "image/jpeg, text/*", "*/*;q=0", "image/png;q=abc"])
def test_negotiate_refuses(accept: str) -> None:
    with pytest.raises(NotAcceptable, match="offers image/png"):
        negotiate(accept)
    with pytest.raises(NotAcceptable):  # refusals are not remembered as answers
        negotiate(accept)


@pytest.mark.parametrize(
    ("n", "shape"),
    [(1, (1, 1)), (2, (1, 2)), (3, (2, 2)), (4, (2, 2)), (5, (2, 3)), (10, (3, 4)), (64, (8, 8))],
)
def test_grid_shape_is_near_square(n: int, shape: tuple[int, int]) -> None:
    assert grid_shape(n) == shape
    rows, cols = shape
    assert rows * cols >= n
    assert (rows - 1) * cols < n


def test_tile_places_images_row_major_with_padding() -> None:
    images = np.stack([np.full((3, 2, 4), i + 1, dtype=np.uint8) for i in range(5)])
    out = tile(images, rows=2, cols=3, padding=2)
    assert out.shape == (3, 2 * 4 + 2, 3 * 6 + 2)
    assert (out[:, 2:4, 2:6] == 1).all()
    assert (out[:, 2:4, 14:18] == 3).all()
    assert (out[:, 6:8, 2:6] == 4).all()
    assert (out[:, 6:8, 8:12] == 5).all()
    assert (out[:, 6:8, 14:18] == 0).all()  # empty sixth cell
    assert (out[:, :2] == 0).all()
    assert (out[:, :, :2] == 0).all()
    with pytest.raises(ValueError, match="do not fit"):
        tile(images, rows=1, cols=3)


@pytest.mark.parametrize(("n", "rows", "cols"), [(1, 1, 1), (3, 1, 4), (5, 2, 3), (7, 3, 3), (64, 8, 8)])
@pytest.mark.parametrize("channels", [1, 3])
def test_tile_is_each_image_placed_in_its_cell(n: int, rows: int, cols: int, channels: int) -> None:
    images = np.random.default_rng(n).integers(0, 256, (n, channels, 4, 5), dtype=np.uint8)
    expected = np.full((channels, rows * 7 + 3, cols * 8 + 3), 9, dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        expected[:, 3 + r * 7 : 3 + r * 7 + 4, 3 + q * 8 : 3 + q * 8 + 5] = images[i]
    assert np.array_equal(tile(images, rows, cols, padding=3, pad_value=9), expected)


@pytest.mark.parametrize("level", [0, 1, 9])
@pytest.mark.parametrize("channels", [1, 3])
def test_png_round_trip(channels: int, level: int) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (channels, 5, 7), dtype=np.uint8)
    data = png_bytes(image, compress_level=level)
    decoded = Image.open(io.BytesIO(data))
    decoded.verify()  # chunk CRCs and structure
    decoded = Image.open(io.BytesIO(data))
    assert decoded.size == (7, 5)
    assert decoded.mode == ("L" if channels == 1 else "RGB")
    arr = np.asarray(decoded)
    back = arr[None] if channels == 1 else arr.transpose(2, 0, 1)
    assert np.array_equal(back, image)
    assert png_bytes(image, compress_level=level) == data  # deterministic
    with pytest.raises(ValueError, match="uint8"):
        png_bytes(image.astype(np.float32))
    with pytest.raises(ValueError, match="compress_level"):
        png_bytes(image, compress_level=10)


def test_png_of_a_strided_view_is_the_image() -> None:
    """Grids and batches hand over views (slices, transposes); the bytes are the pixels'."""
    rng = np.random.default_rng(1)
    batch = rng.integers(0, 256, (4, 3, 6, 9), dtype=np.uint8)
    view = batch[:, :, ::2, 1:][2]  # non-contiguous (3, 3, 8)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png_bytes(view)))).transpose(2, 0, 1), view)


def test_png_of_batch_single_and_grid() -> None:
    images = np.zeros((4, 1, 3, 3), dtype=np.uint8)
    assert Image.open(io.BytesIO(png_of_batch(images[:1]))).size == (3, 3)
    assert Image.open(io.BytesIO(png_of_batch(images))).size == (2 * 5 + 2, 2 * 5 + 2)
    assert Image.open(io.BytesIO(png_of_batch(images, layout=(1, 4)))).size == (4 * 5 + 2, 7)


def test_npy_round_trip() -> None:
    images = np.arange(2 * 3 * 4 * 5, dtype=np.uint8).reshape(2, 3, 4, 5)
    back = np.load(io.BytesIO(npy_bytes(images)), allow_pickle=False)
    assert back.dtype == np.uint8
    assert np.array_equal(back, images)
    assert npy_bytes(images[:, :, ::-1]) == npy_bytes(np.ascontiguousarray(images[:, :, ::-1]))


def test_json_images_carry_metadata_and_png() -> None:
    images = np.stack([np.full((1, 2, 2), v, dtype=np.uint8) for v in (10, 200)])
    out = json_images(images, [{"index": 0, "label": 1}, {"index": 1, "label": 2}])
    assert [o["index"] for o in out] == [0, 1]
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(str(out[1]["png_base64"])))))
    assert (pixels == 200).all()
    with pytest.raises(ValueError, match="one metadata entry"):
        json_images(images, [{}])
