"""A vectorised numpy z-buffer rasteriser: a triangle mesh, a rotation and a light → a gray image.

Orthographic projection along the view axis (+z towards the viewer), flat shading with a
two-sided Lambert term (mesh winding need not be consistent), ``supersample``× supersampling per
axis averaged down to the output size. The part is centred on its bounding box and scaled so its
bounding sphere fills ``fill`` of the frame, so no rotation ever cuts it off.

Pure numpy in float64: the same inputs give the same pixels on every machine, without GL.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RenderSettings:
    size: int = 64  # output side, pixels
    supersample: int = 3  # samples per output pixel per axis (3 → 192×192 rendered, then averaged)
    fill: float = 0.92  # bounding-sphere diameter / frame side
    background: float = 1.0  # white, the usual backdrop of part renders
    # Per image, uniform in these ranges: light = ambient + diffuse × |n · l|, in [0, 1] gray.
    ambient: tuple[float, float] = (0.08, 0.22)
    diffuse: tuple[float, float] = (0.45, 0.65)

    def as_dict(self) -> dict[str, object]:
        return {
            "size": self.size,
            "supersample": self.supersample,
            "fill": self.fill,
            "background": self.background,
            "ambient": list(self.ambient),
            "diffuse": list(self.diffuse),
            "projection": "orthographic",
            "shading": "flat, two-sided Lambert",
        }


@dataclass(frozen=True)
class Lighting:
    direction: np.ndarray  # unit 3-vector, pointing from the part towards the light
    ambient: float
    diffuse: float


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix uniform on SO(3): a unit quaternion from four normals is uniform on S³."""
    q = rng.standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def random_lighting(rng: np.random.Generator, settings: RenderSettings) -> Lighting:
    """A light uniform over the hemisphere facing the viewer, with random strengths."""
    d = rng.standard_normal(3)
    d[2] = abs(d[2])  # a light behind the part would leave only its ambient silhouette
    return Lighting(
        direction=d / np.linalg.norm(d),
        ambient=float(rng.uniform(*settings.ambient)),
        diffuse=float(rng.uniform(*settings.diffuse)),
    )


def normalise(vertices: np.ndarray) -> np.ndarray:
    """Vertices centred on their bounding box and scaled to a bounding sphere of radius 1."""
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    centred = vertices - (lo + hi) / 2.0
    radius = float(np.sqrt((centred**2).sum(axis=1).max()))
    if radius == 0.0:
        raise ValueError("a mesh with every vertex at one point has nothing to render")
    return np.asarray(centred / radius, dtype=np.float64)


def rasterize(tris: np.ndarray, shade: np.ndarray, side: int, background: float) -> np.ndarray:
    """Z-buffer ``tris`` (T×3×3: pixel x, pixel y, depth; larger depth nearer) → side×side floats.

    A pixel (i, j) is sampled at its centre (j + 0.5, i + 0.5); it takes the shade of the nearest
    triangle covering that point. Every triangle's candidate pixels (its bounding box) are
    expanded into one flat array, so the whole mesh is tested in a few vector operations.
    """
    image = np.full(side * side, background, dtype=np.float64)
    a, b, c = tris[:, 0], tris[:, 1], tris[:, 2]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    lo = np.ceil(tris[:, :, :2].min(axis=1) - 0.5).astype(np.int64).clip(0, side)
    hi = np.floor(tris[:, :, :2].max(axis=1) - 0.5).astype(np.int64).clip(-1, side - 1)
    wh = hi - lo + 1
    keep = (np.abs(area) > 1e-12) & (wh[:, 0] > 0) & (wh[:, 1] > 0)
    if not keep.any():
        return image.reshape(side, side)
    a, b, c, area, lo, wh, shade = a[keep], b[keep], c[keep], area[keep], lo[keep], wh[keep], shade[keep]
    # Barycentric weights and depth are affine in the sample point: l = kx·x + ky·y + k0.
    # Weight of b: edge (c, a); weight of c: edge (a, b); weight of a = 1 - the two.
    kbx, kby = (c[:, 1] - a[:, 1]) / area, (a[:, 0] - c[:, 0]) / area
    kb0 = -(kbx * a[:, 0] + kby * a[:, 1])
    kcx, kcy = (a[:, 1] - b[:, 1]) / area, (b[:, 0] - a[:, 0]) / area
    kc0 = -(kcx * a[:, 0] + kcy * a[:, 1])
    dz_b, dz_c = b[:, 2] - a[:, 2], c[:, 2] - a[:, 2]

    counts = wh[:, 0] * wh[:, 1]
    tri = np.repeat(np.arange(len(counts)), counts)
    offset = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    px = lo[tri, 0] + offset % wh[tri, 0]
    py = lo[tri, 1] + offset // wh[tri, 0]
    x, y = px + 0.5, py + 0.5
    wb = kbx[tri] * x + kby[tri] * y + kb0[tri]
    wc = kcx[tri] * x + kcy[tri] * y + kc0[tri]
    # A small tolerance closes the hairline cracks between triangles sharing an edge.
    eps = -1e-9
    inside = (wb >= eps) & (wc >= eps) & (wb + wc <= 1.0 - eps)
    tri, wb, wc = tri[inside], wb[inside], wc[inside]
    pix = py[inside] * side + px[inside]
    depth = a[tri, 2] + wb * dz_b[tri] + wc * dz_c[tri]
    zbuf = np.full(side * side, -np.inf)
    np.maximum.at(zbuf, pix, depth)
    front = depth >= zbuf[pix]
    image[pix[front]] = shade[tri[front]]
    return image.reshape(side, side)


def render(
    vertices: np.ndarray,
    faces: np.ndarray,
    rotation: np.ndarray,
    lighting: Lighting,
    settings: RenderSettings,
) -> np.ndarray:
    """One uint8 side×side gray render of a mesh (``vertices`` normalised by :func:`normalise`)."""
    side = settings.size * settings.supersample
    half = side / 2.0
    v = vertices @ rotation.T
    # Screen y grows downwards; depth is +z (towards the viewer).
    screen = np.stack(
        [half + v[:, 0] * half * settings.fill, half - v[:, 1] * half * settings.fill, v[:, 2]], 1
    )
    corners = v[faces]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    length = np.linalg.norm(normals, axis=1)
    lit = np.abs(normals @ lighting.direction) / np.where(length > 0, length, 1.0)
    shade = np.clip(lighting.ambient + lighting.diffuse * lit, 0.0, 1.0)
    fine = rasterize(screen[faces], shade, side, settings.background)
    s = settings.supersample
    coarse = fine.reshape(settings.size, s, settings.size, s).mean(axis=(1, 3))
    return np.asarray(np.rint(coarse * 255.0), dtype=np.uint8)
