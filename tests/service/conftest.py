"""Shared fixtures: a model repository of tiny real ONNX generators, settings, and a live app."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from service.app import create_app
from service.config import Settings
from service.registry import RunnerFactory
from tests.service.onnx_fixtures import GRAY, RGB, UNCOND, write_zoo

__all__ = ["GRAY", "RGB", "UNCOND", "Serve", "eventually", "make_settings", "serve_app"]


@pytest.fixture(autouse=True)
def _no_condgen_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests configure Settings explicitly; a CONDGEN_* variable in the shell must not leak in."""
    for key in list(os.environ):
        if key.startswith("CONDGEN_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only repository with the three healthy models (built once per test session)."""
    return write_zoo(tmp_path_factory.mktemp("zoo"))


def make_settings(models_dir: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "models_dir": models_dir,
        "intra_op_threads": 1,
        "max_wait_ms": 2.0,
        "request_timeout_s": 10.0,
        "drain_timeout_s": 1.0,
    }
    base.update(overrides)
    return Settings(**base)


@pytest.fixture
def settings(zoo: Path) -> Settings:
    return make_settings(zoo)


async def eventually(predicate: Callable[[], bool], timeout_s: float = 10.0, poll_s: float = 0.005) -> None:
    """Wait until ``predicate()`` holds, polling; fails the test after ``timeout_s``.

    For state owned by another component (a batcher's queue, a server's view of a socket) that
    exposes no event to wait on.
    """
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polling foreign state on purpose
            await asyncio.sleep(poll_s)


Serve = Callable[..., AbstractAsyncContextManager[tuple[FastAPI, httpx.AsyncClient]]]


@asynccontextmanager
async def serve_app(
    settings: Settings, runner_factory: RunnerFactory | None = None
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """Run the app's lifespan and talk to it in-process."""
    app = create_app(settings, runner_factory=runner_factory)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://condgen.test") as client:
            yield app, client


@pytest.fixture
def serve() -> Serve:
    return serve_app


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve_app(settings) as (_, c):
        yield c
