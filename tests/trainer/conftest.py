"""Trainer test fixtures: real MNIST from ``data/mnist`` (``make data`` fetches it offline)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Tests share a 2-core machine with other suites: one intra-op thread keeps timings steady.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def in_repo(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from the repository root, where ``data/`` lives."""
    monkeypatch.chdir(REPO)
    return REPO


@pytest.fixture
def mnist_dir() -> Path:
    path = REPO / "data" / "mnist"
    if not (path / "train-images-idx3-ubyte").exists() and not os.environ.get("CONDGEN_DATA_DIR"):
        pytest.fail("MNIST is missing: run `make data` (the test suite's real-data fixture)")
    return path
