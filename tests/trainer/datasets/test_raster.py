"""The z-buffer rasteriser: known triangles cover the pixels they should, the nearest one wins."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.datasets.raster import (
    Lighting,
    RenderSettings,
    normalise,
    random_lighting,
    random_rotation,
    rasterize,
    render,
)

BG = -1.0


def _rect(x0: float, y0: float, x1: float, y1: float, z: float) -> np.ndarray:
    """Two triangles covering the axis-aligned rectangle, at depth z (pixel coordinates)."""
    a, b, c, d = (x0, y0, z), (x1, y0, z), (x1, y1, z), (x0, y1, z)
    return np.array([[a, b, c], [a, c, d]], dtype=np.float64)


def _cube() -> tuple[np.ndarray, np.ndarray]:
    v = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
    # Each face as two triangles (vertex index = 4x + 2y + z over {0, 1}); winding left mixed on purpose.
    quads = [(0, 1, 3, 2), (4, 5, 7, 6), (0, 1, 5, 4), (2, 3, 7, 6), (0, 2, 6, 4), (1, 3, 7, 5)]
    f = [t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))]
    return v, np.array(f, dtype=np.int64)


def test_a_rectangle_covers_exactly_the_pixels_whose_centres_it_contains() -> None:
    image = rasterize(_rect(2, 3, 6, 5, 0.0), np.array([0.5, 0.5]), 8, BG)
    expected = np.full((8, 8), BG)
    expected[3:5, 2:6] = 0.5  # rows y 3..4, columns x 2..5: centres (x + 0.5, y + 0.5) inside
    np.testing.assert_array_equal(image, expected)


def test_the_nearest_triangle_wins_whatever_the_order() -> None:
    near, far = _rect(0, 0, 6, 6, 2.0), _rect(2, 2, 8, 8, 1.0)
    for tris, shade in (
        (np.concatenate([near, far]), np.array([0.9, 0.9, 0.1, 0.1])),
        (np.concatenate([far, near]), np.array([0.1, 0.1, 0.9, 0.9])),
    ):
        image = rasterize(tris, shade, 8, BG)
        assert (image[:6, :6] == 0.9).all()  # the near square, over the far one where they overlap
        assert (image[6:, 2:] == 0.1).all()
        assert (image[2:, 6:] == 0.1).all()
        assert (image[6:, :2] == BG).all()


def test_degenerate_and_off_screen_triangles_draw_nothing() -> None:
    flat = np.array([[[1, 1, 0], [5, 5, 0], [3, 3, 0]]], dtype=np.float64)  # zero area
    away = _rect(20, 20, 30, 30, 0.0)
    image = rasterize(np.concatenate([flat, away]), np.array([0.5, 0.5, 0.5]), 8, BG)
    assert (image == BG).all()


def test_a_cube_seen_face_on_is_a_centred_square_lit_by_its_facing_side() -> None:
    settings = RenderSettings(size=32, supersample=3)
    v, f = _cube()
    light = Lighting(direction=np.array([0.0, 0.0, 1.0]), ambient=0.1, diffuse=0.5)
    image = render(normalise(v), f, np.eye(3), light, settings).astype(int)
    # Bounding sphere radius √3 → 1: the square's half side is fill × 16 px / √3 ≈ 8.5 px.
    half = settings.fill * 16 / np.sqrt(3)
    assert image[16, 16] == round(0.6 * 255)  # ambient + diffuse × |n · l| with n = l
    assert image[0, 0] == 255
    assert image[31, 31] == 255
    covered = (image < 255).sum()
    assert abs(covered - (2 * half) ** 2) < 4 * 2 * half  # the area, within an edge pixel's worth
    rows = np.flatnonzero((image < 255).any(axis=1))
    assert rows[0] + rows[-1] == 31  # centred


def test_random_rotations_are_proper_and_a_function_of_the_generator() -> None:
    r = random_rotation(np.random.default_rng(3))
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)
    np.testing.assert_array_equal(r, random_rotation(np.random.default_rng(3)))
    light = random_lighting(np.random.default_rng(4), RenderSettings())
    assert light.direction[2] >= 0  # faces the viewer
    assert np.linalg.norm(light.direction) == pytest.approx(1.0)


def test_normalise_centres_the_bounding_box_in_a_unit_sphere() -> None:
    v = np.array([[10.0, 0, 0], [14, 2, 0], [10, 2, 4]])
    n = normalise(v)
    np.testing.assert_allclose((n.min(0) + n.max(0)) / 2, 0.0, atol=1e-12)
    assert np.sqrt((n**2).sum(1)).max() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="nothing to render"):
        normalise(np.zeros((3, 3)))
