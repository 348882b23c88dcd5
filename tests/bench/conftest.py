"""Fixtures for the benchmark harness: a tiny model repository and a real service subprocess."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.servers import ServerProcess, condgen_spec
from tests.service.onnx_fixtures import GRAY, RGB, UNCOND, write_zoo

__all__ = ["GRAY", "RGB", "UNCOND"]


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The service tests' three tiny ONNX generators (cond-gray, cond-rgb, uncond)."""
    return write_zoo(tmp_path_factory.mktemp("bench-zoo"))


@pytest.fixture(scope="module")
def condgen(tiny_zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``python -m service`` on the tiny zoo, on a free loopback port, not pinned."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("CONDGEN_")}
    for key in saved:  # the shell's CONDGEN_* must not change what the test serves
        del os.environ[key]
    try:
        server = ServerProcess(
            condgen_spec(tiny_zoo, threads=1), cpus=None, log_dir=tmp_path_factory.mktemp("logs")
        )
        with server:
            server.wait_ready(timeout_s=60.0)
            yield server
    finally:
        os.environ.update(saved)
