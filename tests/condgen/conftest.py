"""Fixtures: the service tests' tiny real ONNX models, and real servers over them."""

from __future__ import annotations

from pathlib import Path

import pytest

# The service tests' own: the CONDGEN_* scrub (a URL or key in the shell must not leak in) and the zoo.
from tests.service.conftest import _no_condgen_env, zoo  # noqa: F401
from tests.service.slow_model import write_slow_model


@pytest.fixture(scope="session")
def slow_zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The slow unconditional model alone (about 0.2 s a session run, whatever the batch)."""
    root = tmp_path_factory.mktemp("slow-zoo")
    write_slow_model(root, rounds=48)
    return root
