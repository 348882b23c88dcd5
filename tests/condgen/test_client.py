"""The Python client against real servers: splitting, offsets, typed errors, retries, async twin."""

from __future__ import annotations

import io
import logging
import re
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from condgen import (
    AsyncClient,
    BadRequest,
    Client,
    Images,
    Overloaded,
    RetryPolicy,
    Unauthorized,
    UnknownModel,
)
from service.latents import MAX_LATENT_INDEX
from tests.service.live import live_zoo
from tests.service.onnx_fixtures import GRAY, RGB, UNCOND
from tests.service.slow_model import SLOW

API_KEY = "k" * 24


def _served(url: str, model: str, status: int) -> float:
    """condgen_requests_total for the model and status, from the server's /metrics."""
    text = httpx.get(f"{url}/metrics").text
    pattern = rf'^condgen_requests_total\{{[^}}]*model="{model}"[^}}]*status="{status}"[^}}]*\}} (\S+)$'
    return sum(float(m.group(1)) for m in re.finditer(pattern, text, re.MULTILINE))


@pytest.fixture(scope="module")
def url(zoo: Path) -> str:
    with live_zoo(zoo, max_n=8) as base:
        yield base


def test_a_large_n_is_split_into_requests_the_server_accepts(url: str) -> None:
    before = _served(url, GRAY, 200)
    with Client(url) as client:
        batch = client.generate(GRAY, label="three", n=20, seed=5)
        assert client.max_n() == 8  # read from GET /models
    assert _served(url, GRAY, 200) - before == 3  # 8 + 8 + 4
    assert batch.images.shape == (20, 1, 8, 8)
    assert batch.images.dtype == np.uint8
    assert batch.labels is not None
    assert batch.labels.tolist() == [3] * 20
    assert batch.seeds is not None
    assert batch.seeds.tolist() == [5] * 20
    assert batch.indices is not None
    assert batch.indices.tolist() == list(range(20))
    # Each request's rows are what the server gives for that slice of the seed's stream.
    for start in (0, 8, 16):
        count = min(8, 20 - start)
        body = {"model": GRAY, "label": 3, "seed": 5, "n": count, "offset": start}
        answer = httpx.post(f"{url}/generate", json=body, headers={"accept": "application/json"}).json()
        assert [img["latent_index"] for img in answer["images"]] == list(range(start, start + count))
        npy = Client(url).generate(GRAY, label=3, n=count, seed=5, offset=start).images
        assert np.array_equal(batch.images[start : start + count], npy)


def test_offset_slices_equal_the_rows_of_one_big_request(url: str) -> None:
    with Client(url) as big_client, Client(url, max_n=2) as client:  # 1 request; 2 requests
        whole = big_client.generate(GRAY, labels=[1, 2, 3, 4, 5, 6, 7], seed=9)
        part = client.generate(GRAY, labels=[3, 4, 5], seed=9, offset=2)
    assert np.array_equal(part.images, whole.images[2:5])
    assert part.indices is not None
    assert part.indices.tolist() == [2, 3, 4]
    assert part.labels is not None
    assert part.labels.tolist() == [3, 4, 5]


def test_the_last_latent_index_is_reachable_and_past_it_is_a_typed_error(url: str) -> None:
    with Client(url) as client:
        last = client.generate(UNCOND, n=1, seed=2, offset=MAX_LATENT_INDEX)
        assert last.indices is not None
        assert last.indices.tolist() == [MAX_LATENT_INDEX]
        assert last.labels is None
        with pytest.raises(BadRequest) as refused:
            client.generate(UNCOND, n=2, seed=2, offset=MAX_LATENT_INDEX)
    assert refused.value.status == 422
    assert refused.value.error_type == "invalid_request"
    assert refused.value.message.startswith("offset: offset + n - 1 must be at most")


def test_errors_carry_the_servers_type_and_message(url: str, zoo: Path) -> None:
    with Client(url) as client:
        with pytest.raises(UnknownModel) as unknown:
            client.generate("no-such-model", n=1)
        assert unknown.value.status == 404
        assert unknown.value.error_type == "unknown_model"
        assert "no-such-model" in unknown.value.message
        with pytest.raises(BadRequest, match="unknown label 'eleven'"):
            client.generate(GRAY, label="eleven")
    with live_zoo(zoo, api_key=API_KEY) as guarded:
        with Client(guarded) as anonymous, pytest.raises(Unauthorized) as refused:
            anonymous.generate(UNCOND, n=1, seed=1)
        assert refused.value.status == 401
        assert refused.value.error_type == "unauthorized"
        with Client(guarded, api_key=API_KEY) as keyed:
            assert len(keyed.generate(UNCOND, n=2, seed=1)) == 2


def test_models_cards_grid_interpolate_and_pil(url: str) -> None:
    with Client(url) as client:
        models = {m.name: m for m in client.models()}
        assert set(models) == {GRAY, RGB, UNCOND}
        assert models[GRAY].status == "ready"
        assert models[GRAY].providers == ["CPUExecutionProvider"]
        assert client.card(RGB)["labels"] == ["red", "green", "blue"]
        grid = client.grid(GRAY, labels=["one", 2], columns=3, seed=4)
        row = client.generate(GRAY, label=2, n=3, seed=4)
        path = client.interpolate(RGB, label="green", seeds=(11, 12), steps=5)
        ends = [client.generate(RGB, label=1, n=1, seed=s).images[0] for s in (11, 12)]
        colour = client.generate(RGB, label="blue", n=2, seed=3)
    assert grid.layout == (2, 3)
    assert grid.labels is not None
    assert grid.labels.tolist() == [1, 1, 1, 2, 2, 2]
    assert grid.indices is not None
    assert grid.indices.tolist() == [0, 1, 2, 0, 1, 2]
    assert np.array_equal(grid.images[3:], row.images)  # a grid row is /generate of its label
    assert path.images.shape == (5, 3, 6, 10)
    assert path.ends == (11, 12)
    assert path.labels is not None
    assert path.labels.tolist() == [1] * 5
    assert np.array_equal(path.images[0], ends[0])
    assert np.array_equal(path.images[-1], ends[1])
    gray = row.pil()
    assert [img.mode for img in gray] == ["L"] * 3
    assert np.array_equal(np.asarray(gray[1]), row.images[1, 0])
    rgb = colour.pil()[0]
    assert rgb.mode == "RGB"
    assert rgb.size == (10, 6)
    assert np.array_equal(np.asarray(rgb), colour.images[0].transpose(1, 2, 0))


async def test_the_async_client_gives_what_the_blocking_one_gives(url: str) -> None:
    with Client(url) as client:
        want = client.generate(GRAY, labels=[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0], seed=77, offset=5)
        want_grid = client.grid(RGB, seed=1, columns=2)
    async with AsyncClient(url, concurrency=2) as aclient:
        got = await aclient.generate(GRAY, labels=[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0], seed=77, offset=5)
        got_grid = await aclient.grid(RGB, seed=1, columns=2)
        models = await aclient.models()
        with pytest.raises(UnknownModel):
            await aclient.card("nope")
    assert isinstance(got, Images)
    assert np.array_equal(got.images, want.images)
    assert got.labels is not None
    assert want.labels is not None
    assert np.array_equal(got.labels, want.labels)
    assert np.array_equal(got_grid.images, want_grid.images)
    assert len(models) == 3


def test_without_a_seed_one_is_drawn_for_the_whole_call(url: str) -> None:
    with Client(url) as client:
        batch = client.generate(UNCOND, n=9)
        assert batch.seed is not None
        again = client.generate(UNCOND, n=9, seed=batch.seed)
    assert batch.seeds is not None
    assert set(batch.seeds.tolist()) == {batch.seed}
    assert np.array_equal(batch.images, again.images)


async def test_429_is_retried_after_retry_after(slow_zoo: Path, caplog: pytest.LogCaptureFixture) -> None:
    # One image a request, one request running and one waiting: the rest of six get 429.
    settings = {"max_n": 1, "max_grid_images": 1, "max_batch_size": 1, "max_wait_ms": 0}
    with live_zoo(slow_zoo, max_queue_requests=1, max_queue_images=1, **settings) as base:
        policy = RetryPolicy(retries=20, jitter=0.1)
        started = time.monotonic()
        with caplog.at_level(logging.INFO, logger="condgen.retry"):
            async with AsyncClient(base, concurrency=6, retry=policy) as aclient:
                batch = await aclient.generate(SLOW, n=6, seed=8)
        elapsed = time.monotonic() - started
        refused = _served(base, SLOW, 429)
        with Client(base, concurrency=1) as one_by_one:
            want = one_by_one.generate(SLOW, n=6, seed=8)
        # Without retries, a 429 surfaces as Overloaded with the server's Retry-After.
        async with AsyncClient(base, concurrency=6, retry=RetryPolicy(retries=0)) as impatient:
            with pytest.raises(Overloaded) as overloaded:
                await impatient.generate(SLOW, n=6, seed=8)
    assert overloaded.value.status == 429
    assert overloaded.value.error_type == "queue_full"
    assert overloaded.value.retry_after_s is not None
    assert overloaded.value.retry_after_s >= 1
    assert refused >= 1
    assert np.array_equal(batch.images, want.images)
    waits = [
        (float(m.group(1)), float(m.group(2)))
        for m in re.finditer(r"retrying in ([\d.]+) s \(Retry-After: ([\d.]+) s", caplog.text)
    ]
    assert len(waits) >= refused  # every 429 was retried
    assert all(wait >= retry_after for wait, retry_after in waits)  # never sooner than asked
    assert all(wait <= retry_after * 1.1 + 0.03 for wait, retry_after in waits)  # jitter bounded
    assert elapsed >= min(retry_after for _, retry_after in waits)


def test_explicit_latents_are_sent_as_given_and_split_like_n(url: str) -> None:
    z = np.random.default_rng(0).standard_normal((11, 16)).astype(np.float32)
    with Client(url) as client:
        batch = client.generate(GRAY, label=4, z=z)  # 8 + 3 rows
        one = client.generate(GRAY, label=4, z=z[5])  # one vector
        with pytest.raises(BadRequest, match="z is explicit latents"):
            client.generate(GRAY, label=4, z=z, seed=1)
    answer = httpx.post(
        f"{url}/generate",
        json={"model": GRAY, "label": 4, "z": z[:8].tolist()},
        headers={"accept": "application/x-npy"},
    )
    assert batch.images.shape == (11, 1, 8, 8)
    assert batch.seeds is None
    assert batch.indices is None
    assert np.array_equal(batch.images[:8], np.load(io.BytesIO(answer.content)))
    assert np.array_equal(one.images[0], batch.images[5])


def test_after_a_failed_chunk_the_rest_are_not_sent(url: str) -> None:
    """Every chunk of this call is refused (truncation under the server's floor): one at a time,
    the first refusal ends the call; the other chunks never reach the server."""
    before = _served(url, GRAY, 422)
    with Client(url, concurrency=1) as client, pytest.raises(BadRequest, match="truncation"):
        client.generate(GRAY, label=3, n=80, seed=1, truncation=0.01)  # ten chunks of max_n 8
    assert _served(url, GRAY, 422) - before == 1


async def test_the_async_client_cancels_the_rest_after_a_failed_chunk(url: str) -> None:
    before = _served(url, GRAY, 422)
    async with AsyncClient(url, concurrency=1) as client:
        with pytest.raises(BadRequest, match="truncation"):
            await client.generate(GRAY, label=3, n=80, seed=1, truncation=0.01)
    assert _served(url, GRAY, 422) - before == 1
