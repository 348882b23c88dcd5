"""Fixtures: the service tests' tiny real ONNX models, and real servers over them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.service.onnx_fixtures import write_zoo
from tests.service.slow_model import write_slow_model


@pytest.fixture(autouse=True)
def _no_condgen_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CONDGEN_* variable in the shell (a URL, a key, a setting) must not leak into a test."""
    for key in list(os.environ):
        if key.startswith("CONDGEN_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="session")
def slow_zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The slow unconditional model alone (about 0.2 s a session run, whatever the batch)."""
    root = tmp_path_factory.mktemp("slow-zoo")
    write_slow_model(root, rounds=48)
    return root
