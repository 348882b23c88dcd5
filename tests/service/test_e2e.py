"""Over real sockets: uvicorn in-process, and ``python -m service`` as a subprocess."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI

from service.app import create_app
from tests.service.conftest import GRAY, UNCOND, eventually, make_settings
from tests.service.runners import GatedRunner, wrapping

REPO_ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 15.0


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@asynccontextmanager
async def uvicorn_server(app: FastAPI) -> AsyncIterator[str]:
    sock = free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(TIMEOUT_S):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(TIMEOUT_S):
            await task
        sock.close()


async def test_generate_over_http(zoo: Path) -> None:
    app = create_app(make_settings(zoo))
    async with uvicorn_server(app) as url, httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S) as client:
        png = await client.post("/generate", json={"model": GRAY, "label": "seven", "seed": 3, "n": 4})
        assert png.status_code == 200
        assert png.headers["content-type"] == "image/png"
        assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
        assert png.headers["x-condgen-seed"] == "3"
        assert png.headers["x-condgen-model"] == GRAY
        arr = np.load(
            io.BytesIO(
                (
                    await client.post(
                        "/generate",
                        json={"model": GRAY, "label": 7, "seed": 3, "n": 4},
                        headers={"accept": "application/x-npy"},
                    )
                ).content
            )
        )
        assert arr.shape == (4, 1, 8, 8)
        assert (await client.get("/readyz")).status_code == 200
        assert "condgen_session_runs_total" in (await client.get("/metrics")).text
        bad = await client.post("/generate", json={"model": GRAY, "label": 99})
        assert bad.status_code == 422
        assert bad.json()["error"]["type"] == "invalid_request"


async def test_client_disconnect_drops_the_queued_request(zoo: Path) -> None:
    gate = threading.Event()
    runners: list[GatedRunner] = []

    def wrap(inner: Any) -> GatedRunner:
        runners.append(GatedRunner(inner, gate))
        return runners[-1]

    app = create_app(make_settings(zoo, warmup=False), runner_factory=wrapping({UNCOND: wrap}))
    try:
        async with uvicorn_server(app) as url, httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S) as client:
            batcher = app.state.resources.batchers[UNCOND]
            first = asyncio.create_task(client.post("/generate", json={"model": UNCOND, "seed": 1}))
            assert await asyncio.to_thread(runners[0].started.wait, TIMEOUT_S)
            # This client gives up while its request is queued behind the blocked run.
            async with httpx.AsyncClient(base_url=url, timeout=0.3) as impatient:
                with pytest.raises(httpx.ReadTimeout):
                    await impatient.post("/generate", json={"model": UNCOND, "seed": 2})
            async with asyncio.timeout(TIMEOUT_S):
                # The server notices the disconnect and withdraws the queued request.
                await eventually(lambda: batcher.queued_requests == 0)
                gate.set()
                assert (await first).status_code == 200
            assert runners[0].batches == [1]  # seed 2 never reached the model
            assert batcher.dropped_requests == 1
            metrics = (await client.get("/metrics")).text
            assert f'condgen_requests_total{{model="{UNCOND}",status="499"}} 1.0' in metrics
    finally:
        gate.set()


def _wait_http(url: str, proc: subprocess.Popen[bytes]) -> httpx.Response:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early with {proc.returncode}")
        try:
            return httpx.get(url, timeout=1.0)
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("server did not come up")


@pytest.mark.slow
def test_python_m_service_with_an_empty_repository(tmp_path: Path) -> None:
    port = free_socket().getsockname()[1]  # closed at once; a collision here is vanishingly rare
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDGEN_")}
    env["CONDGEN_LOG_LEVEL"] = "info"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "service",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--models",
            str(tmp_path),
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        ready = _wait_http(f"http://127.0.0.1:{port}/readyz", proc)
        assert ready.status_code == 503
        assert "no models were found in" in ready.json()["message"]
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            output = proc.communicate(timeout=TIMEOUT_S)[0].decode()
        except subprocess.TimeoutExpired:
            proc.kill()
            output = proc.communicate()[0].decode()
    # uvicorn re-raises the signal it handled once shutdown is complete: -SIGTERM is a clean exit.
    assert proc.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert "no models were found in" in output
