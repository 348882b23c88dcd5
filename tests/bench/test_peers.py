"""The peers answer the same request format with a PNG of the same layout."""

from __future__ import annotations

import io
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from bench.servers import ServerProcess, bentoml_spec, check_png, process_tree, ray_spec
from tests.bench.conftest import GRAY, UNCOND


async def test_torch_peer_answers_a_png_grid() -> None:
    torch = pytest.importorskip("torch")

    from bench.peers.torch_server import create_app

    class Tiny(torch.nn.Module):  # 1x8x8 images from a 5-D latent and a label
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(5, 64)
            self.embed = torch.nn.Embedding(10, 64)

        def forward(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
            return torch.tanh(self.fc(z) + self.embed(label)).view(-1, 1, 8, 8)

    app = create_app(Tiny().eval(), "tiny", z_dim=5, num_classes=10, value_range=(-1.0, 1.0))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://peer") as client:
        one = await client.post("/generate", json={"model": "tiny", "label": 3, "seed": 7, "n": 4})
        assert one.status_code == 200
        assert one.headers["content-type"] == "image/png"
        image = np.asarray(Image.open(io.BytesIO(one.content)))
        assert image.shape == (22, 22)  # 2x2 grid of 8x8 with 2 px padding, as condgen's
        again = await client.post("/generate", json={"model": "tiny", "label": 3, "seed": 7, "n": 4})
        assert again.content == one.content
        other = await client.post("/generate", json={"model": "other", "label": 3})
        assert other.status_code == 404
        too_many = await client.post("/generate", json={"model": "tiny", "label": 3, "n": 65})
        assert too_many.status_code == 422


async def test_torch_peer_serves_an_unconditional_model_without_a_label() -> None:
    torch = pytest.importorskip("torch")

    from bench.peers.torch_server import create_app

    generator = torch.nn.Sequential(torch.nn.Linear(5, 64), torch.nn.Tanh(), torch.nn.Unflatten(1, (1, 8, 8)))
    app = create_app(generator.eval(), "plain", z_dim=5, num_classes=0, value_range=(-1.0, 1.0))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://peer") as client:
        answer = await client.post("/generate", json={"model": "plain", "seed": 7, "n": 4})
        assert answer.status_code == 200
        assert np.asarray(Image.open(io.BytesIO(answer.content))).shape == (22, 22)


@pytest.mark.slow
def test_bentoml_peer_serves_an_unconditional_model_without_a_label(
    condgen: ServerProcess, tiny_zoo: Path, tmp_path: Path
) -> None:
    pytest.importorskip("bentoml")
    peer = ServerProcess(bentoml_spec(tiny_zoo / UNCOND, threads=1), cpus=None, log_dir=tmp_path)
    with peer:
        peer.wait_ready(timeout_s=120.0)
        assert check_png(peer.spec.base_url, UNCOND, None) == check_png(condgen.spec.base_url, UNCOND, None)


@pytest.mark.slow
def test_bentoml_peer_returns_condgen_bytes(condgen: ServerProcess, tiny_zoo: Path, tmp_path: Path) -> None:
    pytest.importorskip("bentoml")
    peer = ServerProcess(bentoml_spec(tiny_zoo / GRAY, threads=1), cpus=None, log_dir=tmp_path)
    with peer:
        peer.wait_ready(timeout_s=120.0)
        assert check_png(peer.spec.base_url, GRAY, 3, 7, 4) == check_png(condgen.spec.base_url, GRAY, 3, 7, 4)
        # Past BentoML's default of 100 calls per dependency session, with calls in flight when it
        # would be replaced: every one must succeed (bench/peers/bentoml_service.py, RUNNER_CONNECTION).
        body = {"model": GRAY, "label": 1, "seed": 0, "n": 1}
        with (
            httpx.Client(base_url=peer.spec.base_url, timeout=30.0) as client,
            ThreadPoolExecutor(16) as pool,
        ):
            statuses = list(pool.map(lambda _: client.post("/generate", json=body).status_code, range(400)))
        assert statuses.count(200) == len(statuses), sorted(set(statuses))


def _running(pid: int) -> bool:
    """Alive and not a zombie (an exited child that init has yet to reap)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _left_running(pids: list[int], within_s: float = 2.0) -> list[int]:
    """Those of ``pids`` still running ``within_s`` seconds from now (a SIGKILLed process takes a
    moment to finish exiting on a busy machine)."""
    deadline = time.monotonic() + within_s
    while (left := [pid for pid in pids if _running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _in_session(sid: int) -> list[int]:
    """Running processes of session ``sid``: a server started in its own session, and anything
    it started, wherever in the process tree it ended up."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid and _running(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.slow
def test_ray_serve_peer_returns_condgen_bytes_batches_and_leaves_nothing(
    condgen: ServerProcess, tiny_zoo: Path, tmp_path: Path
) -> None:
    pytest.importorskip("ray.serve")
    # A batch window: with none, requests for a model this small may each find the replica idle.
    spec = ray_spec(tiny_zoo / GRAY, threads=1, max_wait_ms=100.0)
    peer = ServerProcess(spec, cpus=None, log_dir=tmp_path)
    with peer:
        peer.wait_ready(timeout_s=120.0)
        ray_pids = process_tree(peer.pid)
        assert len(ray_pids) > 5, peer.log_tail()  # GCS, raylet, agents, controller, proxy, replica
        for n in (1, 4):
            expected = check_png(condgen.spec.base_url, GRAY, 3, 7, n)
            assert check_png(peer.spec.base_url, GRAY, 3, 7, n) == expected
        with (
            httpx.Client(base_url=peer.spec.base_url, timeout=30.0) as client,
            httpx.Client(base_url=condgen.spec.base_url, timeout=30.0) as reference,
            ThreadPoolExecutor(32) as pool,
        ):
            assert client.post("/generate", json={"model": "other"}).status_code == 404
            assert client.post("/generate", json={"model": GRAY, "n": 65}).status_code == 422
            before = client.get("/stats").json()
            counts = [1 + i % 2 for i in range(32)]
            bodies = [{"model": GRAY, "label": i % 10, "seed": i, "n": n} for i, n in enumerate(counts)]
            answers = list(pool.map(lambda body: client.post("/generate", json=body), bodies))
            after = client.get("/stats").json()
            # Each request's own rows come back out of the shared runs: condgen's bytes, one by one.
            expected_bodies = [reference.post("/generate", json=body).content for body in bodies]
            assert [answer.content for answer in answers] == expected_bodies
        assert after["rows"] - before["rows"] == sum(counts)
        assert after["runs"] - before["runs"] < len(bodies)  # concurrent requests share session runs
    assert not _left_running(ray_pids)
    assert not _in_session(peer.pid)
    assert not Path(spec.argv[-1]).exists()  # Ray's temp dir, removed by the driver
