"""The peers answer the same request format with a PNG of the same layout."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from bench.servers import ServerProcess, bentoml_spec, check_png
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
