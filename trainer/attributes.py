"""CelebA-style attribute tables → class ids and class names for conditional image-folder recipes.

Formats: ``list_attr_celeba.csv`` (a header ``image_id,5_o_Clock_Shadow,...`` and one row per
image with -1/1 or 0/1) and the original whitespace-separated ``list_attr_celeba.txt``, whose
first line is the row count and whose header names only the attributes. Rows are matched to image
files by relative path (``sub/000001.jpg``), else by file name.

Class scheme for attributes ``[a0, a1, ..., a(k-1)]`` (in the order given):

- class id = Σ 2^i over the attributes ``a_i`` the image has, so ``a0`` is the lowest bit;
- one attribute: 2 classes, ``["no a0", "a0"]``;
- k attributes: 2^k classes, each named by the attributes it has joined with ``+`` in the given
  order, and ``none`` for the class with none of them. For ``["Blond_Hair", "Male"]``:
  ``["none", "Blond_Hair", "Male", "Blond_Hair+Male"]``.

Every combination is a class even when no image has it, so a class id means the same thing for any
subset of the data. Attribute names match the table's columns case-insensitively; class names use
the table's spelling.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

# Looked for in the folder, then its parent (the Kaggle CelebA layout keeps the table one level
# above the images), when attributes are asked for without a table.
ATTRIBUTE_FILES = ("list_attr_celeba.csv", "list_attr_celeba.txt", "attributes.csv")
# 2^6 = 64 classes: past that, a label × z sample grid (8 images per class) and the one-hot label
# maps of the conditional critic grow out of proportion to what the attributes add.
MAX_ATTRIBUTES = 6


class AttributeTableError(ValueError):
    """The attribute table or the attributes asked of it are unusable (the message says why)."""


@dataclass(frozen=True)
class FileLabels:
    files: list[str]  # the files that have a row, in the given order
    ids: list[int]  # class id of each
    class_names: list[str]
    unlabelled: list[str]  # the files with no row


def class_names_for(attributes: list[str]) -> list[str]:
    """Class names for ``attributes`` under the scheme in the module docstring."""
    if len(attributes) == 1:
        return [f"no {attributes[0]}", attributes[0]]
    names = []
    for cid in range(2 ** len(attributes)):
        present = [a for i, a in enumerate(attributes) if cid >> i & 1]
        names.append("+".join(present) if present else "none")
    return names


def _read_table(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header (attribute names, id column excluded) and rows (id first) of a CSV or CelebA TXT."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        lines = [line for line in fh.read().splitlines() if line.strip()]
    if not lines:
        raise AttributeTableError(f"attribute table {path} is empty")
    if lines[0].strip().isdigit():  # list_attr_celeba.txt: row count, names, then rows
        lines = lines[1:]
    if not lines:
        raise AttributeTableError(f"attribute table {path} has no header")
    if "," in lines[0]:
        table = list(csv.reader(lines))
        header, rows = [h.strip() for h in table[0]], [[c.strip() for c in r] for r in table[1:]]
    else:
        header, rows = lines[0].split(), [line.split() for line in lines[1:]]
    # The TXT header names only the attributes; a CSV header names the id column too.
    if rows and len(rows[0]) == len(header) + 1:
        return header, rows
    return header[1:], rows


def _resolve_columns(header: list[str], attributes: list[str], path: Path) -> list[int]:
    """Column index (in a row, after the id) of each attribute; names match case-insensitively."""
    lowered = {h.lower(): i for i, h in enumerate(header)}
    columns = []
    for attr in attributes:
        if attr in header:
            columns.append(header.index(attr))
        elif attr.lower() in lowered:
            columns.append(lowered[attr.lower()])
        else:
            known = ", ".join(header[:12]) + (", ..." if len(header) > 12 else "")
            raise AttributeTableError(f"attribute {attr!r} is not a column of {path}; columns: {known}")
    return columns


def read_attributes(path: Path, attributes: list[str]) -> tuple[list[str], dict[str, int]]:
    """Canonical attribute names (as the table spells them) and image id → class id."""
    header, rows = _read_table(path)
    columns = _resolve_columns(header, attributes, path)
    canonical = [header[c] for c in columns]
    table: dict[str, int] = {}
    for lineno, row in enumerate(rows, start=2):
        if len(row) != len(header) + 1:
            raise AttributeTableError(
                f"{path}: row {lineno} has {len(row)} fields, expected {len(header) + 1}"
            )
        cid = 0
        for bit, col in enumerate(columns):
            value = row[col + 1]
            if value == "1":
                cid |= 1 << bit
            elif value not in ("-1", "0"):
                raise AttributeTableError(
                    f"{path}: row {lineno}, {header[col]} = {value!r}; expected -1/1 or 0/1"
                )
        table[row[0].replace("\\", "/")] = cid
    return canonical, table


def find_attribute_table(root: Path) -> Path:
    for folder in (root, root.parent):
        for name in ATTRIBUTE_FILES:
            if (folder / name).is_file():
                return folder / name
    raise AttributeTableError(
        f"no attribute table given and none of {', '.join(ATTRIBUTE_FILES)} found in {root} "
        "or its parent: pass attr_csv (--attr-csv)"
    )


def label_files(files: list[str], attributes: list[str], table_path: Path) -> FileLabels:
    """Class ids for ``files`` (relative POSIX paths) from the table's ``attributes`` columns."""
    if len({a.lower() for a in attributes}) != len(attributes):
        raise AttributeTableError(f"attributes repeat: {attributes}")
    if len(attributes) > MAX_ATTRIBUTES:
        raise AttributeTableError(
            f"{len(attributes)} attributes would make {2 ** len(attributes)} classes; "
            f"at most {MAX_ATTRIBUTES} are supported"
        )
    canonical, table = read_attributes(table_path, attributes)
    labelled: list[str] = []
    ids: list[int] = []
    unlabelled: list[str] = []
    for f in files:
        cid = table.get(f, table.get(f.rsplit("/", 1)[-1]))
        if cid is None:
            unlabelled.append(f)
        else:
            labelled.append(f)
            ids.append(cid)
    return FileLabels(labelled, ids, class_names_for(canonical), unlabelled)
