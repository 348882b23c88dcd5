"""The HTTP API end to end (in-process ASGI): determinism, batching, failures, readiness, metrics."""

from __future__ import annotations

import asyncio
import base64
import io
import shutil
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from service.batcher import DynamicBatcher
from service.latents import latents_for
from service.routes import generate as generate_routes
from service.routes.generate import SEED_HEADER
from tests.service.conftest import GRAY, RGB, UNCOND, Serve, eventually, make_settings
from tests.service.onnx_fixtures import reference_images
from tests.service.runners import FailingRunner, GatedRunner, Sequenced, wrapping

TIMEOUT_S = 10.0
NPY = {"accept": "application/x-npy"}
JSON = {"accept": "application/json"}


def npy(resp: httpx.Response) -> np.ndarray:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/x-npy"
    return np.load(io.BytesIO(resp.content), allow_pickle=False)


def png_pixels(data: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    arr = np.asarray(img)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def batchers(app: Any) -> dict[str, DynamicBatcher]:
    batchers_: dict[str, DynamicBatcher] = app.state.resources.batchers
    return batchers_


# --------------------------------------------------------------------------- determinism
async def test_same_request_twice_gives_identical_bytes(client: httpx.AsyncClient) -> None:
    body = {"model": GRAY, "label": 3, "seed": 7, "n": 4}
    for headers in ({}, NPY, JSON):
        first = await client.post("/generate", json=body, headers=headers)
        second = await client.post("/generate", json=body, headers=headers)
        assert first.status_code == second.status_code == 200
        assert first.content == second.content
        assert first.headers[SEED_HEADER] == "7"


async def test_image_zero_of_a_seeded_batch_equals_the_single_image(client: httpx.AsyncClient) -> None:
    four = await client.post("/generate", json={"model": GRAY, "label": 3, "seed": 7, "n": 4}, headers=JSON)
    one = await client.post("/generate", json={"model": GRAY, "label": 3, "seed": 7})
    assert one.headers["content-type"] == "image/png"
    first = base64.b64decode(four.json()["images"][0]["png_base64"])
    assert np.array_equal(png_pixels(first), png_pixels(one.content))
    # The same through NPY, byte for byte.
    four_npy = npy(
        await client.post("/generate", json={"model": GRAY, "label": 3, "seed": 7, "n": 4}, headers=NPY)
    )
    one_npy = await client.post("/generate", json={"model": GRAY, "label": 3, "seed": 7}, headers=NPY)
    buf = io.BytesIO()
    np.save(buf, four_npy[:1])
    assert buf.getvalue() == one_npy.content
    # And images differ across the batch: each index has its own latent.
    assert not np.array_equal(four_npy[0], four_npy[1])


async def test_output_matches_an_independent_computation(client: httpx.AsyncClient, zoo: Path) -> None:
    got = npy(
        await client.post("/generate", json={"model": RGB, "labels": [0, 2, 1], "seed": 11}, headers=NPY)
    )
    z = latents_for(11, 3, 8)
    want = reference_images(zoo / RGB, z, np.array([0, 2, 1]))
    assert got.shape == (3, 3, 6, 10)
    assert got.dtype == np.uint8
    assert int(np.abs(got.astype(int) - want.astype(int)).max()) <= 1  # float rounding at .5 only


async def test_truncated_latents_are_drawn_off_the_event_loop(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The redraw loop's cost grows as the bound tightens: it must not hold up other clients.
    planned_on: list[threading.Thread] = []
    real = generate_routes.plan_generate

    def recording(*args: Any) -> Any:
        planned_on.append(threading.current_thread())
        return real(*args)

    monkeypatch.setattr(generate_routes, "plan_generate", recording)
    for body in ({"model": UNCOND, "seed": 1, "n": 4, "truncation": 0.1}, {"model": UNCOND, "seed": 1}):
        assert (await client.post("/generate", json=body)).status_code == 200
    loop_thread = threading.current_thread()
    assert planned_on[0] is not loop_thread
    assert planned_on[1] is loop_thread


async def test_explicit_z_and_truncation(client: httpx.AsyncClient, zoo: Path) -> None:
    z = latents_for(5, 2, 12, truncation=0.5)
    one = npy(await client.post("/generate", json={"model": UNCOND, "z": z[0].tolist()}, headers=NPY))
    seeded = npy(
        await client.post(
            "/generate", json={"model": UNCOND, "seed": 5, "n": 2, "truncation": 0.5}, headers=NPY
        )
    )
    two = npy(await client.post("/generate", json={"model": UNCOND, "z": z.tolist()}, headers=NPY))
    assert np.array_equal(one[0], seeded[0])
    assert np.array_equal(two, seeded)
    resp = await client.post("/generate", json={"model": UNCOND, "z": z[0].tolist()}, headers=JSON)
    assert SEED_HEADER not in resp.headers
    assert resp.json()["seed"] is None
    assert resp.json()["images"][0]["seed"] is None


async def test_random_seed_is_returned_and_reproduces(client: httpx.AsyncClient) -> None:
    a = await client.post("/generate", json={"model": UNCOND, "n": 2}, headers=JSON)
    b = await client.post("/generate", json={"model": UNCOND, "n": 2}, headers=JSON)
    seed = int(a.headers[SEED_HEADER])
    assert a.json()["seed"] == seed
    assert a.json()["images"][1]["seed"] == seed
    assert a.headers[SEED_HEADER] != b.headers[SEED_HEADER]
    again = await client.post("/generate", json={"model": UNCOND, "n": 2, "seed": seed}, headers=JSON)
    assert again.json()["images"] == a.json()["images"]


async def test_label_by_name_and_per_image_labels(client: httpx.AsyncClient) -> None:
    by_id = await client.post("/generate", json={"model": GRAY, "label": 3, "seed": 1, "n": 2}, headers=NPY)
    by_name = await client.post(
        "/generate", json={"model": GRAY, "label": "Three", "seed": 1, "n": 2}, headers=NPY
    )
    per_image = await client.post(
        "/generate", json={"model": GRAY, "labels": [3, "three"], "seed": 1}, headers=NPY
    )
    assert by_id.content == by_name.content == per_image.content
    mixed = await client.post(
        "/generate", json={"model": GRAY, "labels": [0, 1, 2, 3], "seed": 1}, headers=JSON
    )
    meta = mixed.json()
    assert meta["shape"] == [4, 1, 8, 8]
    assert [im["label"] for im in meta["images"]] == [0, 1, 2, 3]
    assert [im["label_name"] for im in meta["images"]] == ["zero", "one", "two", "three"]
    assert [im["index"] for im in meta["images"]] == [0, 1, 2, 3]


async def test_png_grid_is_near_square_with_padding(client: httpx.AsyncClient) -> None:
    single = await client.post("/generate", json={"model": RGB, "label": 0, "seed": 2})
    assert Image.open(io.BytesIO(single.content)).size == (10, 6)
    assert Image.open(io.BytesIO(single.content)).mode == "RGB"
    grid = await client.post("/generate", json={"model": GRAY, "label": 1, "seed": 2, "n": 5})
    img = Image.open(io.BytesIO(grid.content))
    # 5 images -> 2 rows x 3 columns of 8x8 with 2 px padding around and between.
    assert img.size == (3 * 10 + 2, 2 * 10 + 2)
    pixels = png_pixels(grid.content)
    cells = npy(
        await client.post("/generate", json={"model": GRAY, "label": 1, "seed": 2, "n": 5}, headers=NPY)
    )
    assert np.array_equal(pixels[:, 2:10, 2:10], cells[0])
    assert np.array_equal(pixels[:, 2:10, 22:30], cells[2])  # row 0, column 2
    assert np.array_equal(pixels[:, 12:20, 2:10], cells[3])  # row 1, column 0
    assert np.array_equal(pixels[:, 12:20, 12:20], cells[4])  # row 1, column 1
    assert (pixels[:, 12:20, 22:30] == 0).all()  # the sixth cell is empty padding
    assert (pixels[:, :2, :] == 0).all()
    assert (pixels[:, :, 10:12] == 0).all()


async def test_an_unconditional_grid_is_generate_laid_out_in_rows(client: httpx.AsyncClient) -> None:
    body = {"model": UNCOND, "seed": 3}
    grid = await client.post("/grid", json={**body, "rows": 2, "columns": 3})
    assert grid.status_code == 200
    assert grid.headers["content-type"] == "image/png"
    same = await client.post("/generate", json={**body, "n": 6})  # near-square: also 2 × 3
    assert grid.content == same.content
    meta = (await client.post("/grid", json=body, headers=JSON)).json()
    assert meta["layout"] == [4, 8]
    assert [im["latent_index"] for im in meta["images"]] == list(range(32))


async def test_grid_rows_are_labels_and_columns_share_a_latent(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/grid", json={"model": GRAY, "labels": [2, "five"], "seed": 4, "columns": 3}, headers=NPY
    )
    grid = npy(resp)
    assert grid.shape == (6, 1, 8, 8)
    for row, label in enumerate([2, 5]):
        same_label = npy(
            await client.post(
                "/generate", json={"model": GRAY, "label": label, "seed": 4, "n": 3}, headers=NPY
            )
        )
        assert np.array_equal(grid[row * 3 : row * 3 + 3], same_label)
    default = await client.post("/grid", json={"model": GRAY, "seed": 4}, headers=JSON)
    meta = default.json()
    assert meta["shape"] == [80, 1, 8, 8]
    assert meta["layout"] == [10, 8]
    assert meta["images"][9] | {"png_base64": ""} == {
        "index": 9,
        "label": 1,
        "label_name": "one",
        "seed": 4,
        "latent_index": 1,
        "row": 1,
        "column": 1,
        "png_base64": "",
    }
    png = await client.post("/grid", json={"model": GRAY, "seed": 4})
    assert Image.open(io.BytesIO(png.content)).size == (8 * 10 + 2, 10 * 10 + 2)


async def test_interpolation_ends_are_the_seeds_images(client: httpx.AsyncClient) -> None:
    path = npy(
        await client.post(
            "/interpolate", json={"model": GRAY, "label": 6, "seeds": [10, 20], "steps": 5}, headers=NPY
        )
    )
    start = npy(await client.post("/generate", json={"model": GRAY, "label": 6, "seed": 10}, headers=NPY))
    end = npy(await client.post("/generate", json={"model": GRAY, "label": 6, "seed": 20}, headers=NPY))
    assert path.shape == (5, 1, 8, 8)
    assert np.array_equal(path[0], start[0])
    assert np.array_equal(path[-1], end[0])
    assert not np.array_equal(path[2], path[0])
    resp = await client.post(
        "/interpolate", json={"model": UNCOND, "seeds": [1, 2], "steps": 3}, headers=JSON
    )
    assert resp.headers[SEED_HEADER] == "1,2"
    assert resp.json()["seeds"] == [1, 2]
    assert [im["t"] for im in resp.json()["images"]] == [0.0, 0.5, 1.0]
    strip = await client.post("/interpolate", json={"model": UNCOND, "seeds": [1, 2], "steps": 4})
    assert Image.open(io.BytesIO(strip.content)).size == (4 * 10 + 2, 12)


# --------------------------------------------------------------------------- batching
async def test_concurrent_requests_share_session_runs_and_match_solo_answers(serve: Serve, zoo: Path) -> None:
    gate = threading.Event()
    gated: dict[str, GatedRunner] = {}

    def wrap(inner: Any) -> GatedRunner:
        gated[GRAY] = GatedRunner(inner, gate)
        return gated[GRAY]

    settings = make_settings(zoo, max_batch_size=64, max_wait_ms=5.0, warmup=False)
    bodies = [{"model": GRAY, "label": i % 10, "seed": 1000 + i} for i in range(64)]
    async with serve(settings, runner_factory=wrapping({GRAY: wrap})) as (app, client):
        batcher = batchers(app)[GRAY]
        try:
            async with asyncio.timeout(TIMEOUT_S):
                tasks = [asyncio.create_task(client.post("/generate", json=b, headers=NPY)) for b in bodies]
                # Hold the first run until every other request is queued: the queue then holds 63
                # requests, which must go out together.
                await eventually(lambda: batcher.queued_requests + sum(gated[GRAY].batches) >= 64)
                gate.set()
                together = await asyncio.gather(*tasks)
        finally:
            gate.set()
        runs_together = batcher.session_runs
        assert runs_together <= 3, gated[GRAY].batches
        assert sum(gated[GRAY].batches) == 64
        metrics_text = (await client.get("/metrics")).text
        assert f'condgen_session_runs_total{{model="{GRAY}"}} {float(runs_together)}' in metrics_text
        # Each answer is byte-identical to the same request sent alone.
        for body, resp in zip(bodies, together, strict=True):
            alone = await client.post("/generate", json=body, headers=NPY)
            assert resp.content == alone.content
        assert batcher.session_runs == runs_together + 64


async def test_request_larger_than_max_batch_size(serve: Serve, zoo: Path) -> None:
    settings = make_settings(zoo, max_batch_size=4)
    async with serve(settings) as (app, client):
        big = npy(
            await client.post("/generate", json={"model": GRAY, "label": 2, "seed": 3, "n": 10}, headers=NPY)
        )
        assert big.shape == (10, 1, 8, 8)
        assert batchers(app)[GRAY].session_runs == 3
    async with serve(make_settings(zoo)) as (_, client):
        whole = npy(
            await client.post("/generate", json={"model": GRAY, "label": 2, "seed": 3, "n": 10}, headers=NPY)
        )
    assert np.array_equal(big, whole)


async def test_failing_runtime_fails_every_waiter_promptly_and_others_keep_serving(
    serve: Serve, zoo: Path
) -> None:
    failing = FailingRunner()
    async with serve(make_settings(zoo), runner_factory=wrapping({GRAY: lambda _inner: failing})) as (
        _,
        client,
    ):
        async with asyncio.timeout(TIMEOUT_S):
            bad = [client.post("/generate", json={"model": GRAY, "label": i, "seed": i}) for i in range(8)]
            good = [client.post("/generate", json={"model": UNCOND, "seed": i}) for i in range(4)]
            results = await asyncio.gather(*bad, *good)
        for resp in results[:8]:
            assert resp.status_code == 500
            assert resp.headers["content-type"] == "application/json"
            assert resp.json()["error"]["type"] == "inference_failed"
            assert "secret" not in resp.text
            assert "Traceback" not in resp.text
        for resp in results[8:]:
            assert resp.status_code == 200
            assert resp.headers["content-type"] == "image/png"
        assert 1 <= failing.calls <= 8
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        metrics = (await client.get("/metrics")).text
        assert f'condgen_requests_total{{model="{GRAY}",status="500"}} 8.0' in metrics


async def test_full_queue_answers_429_with_retry_after(serve: Serve, zoo: Path) -> None:
    gate = threading.Event()
    runners: list[GatedRunner] = []

    def wrap(inner: Any) -> GatedRunner:
        runners.append(GatedRunner(inner, gate))
        return runners[-1]

    settings = make_settings(
        zoo, max_n=2, max_grid_images=2, max_queue_images=2, max_batch_size=1, warmup=False
    )
    async with serve(settings, runner_factory=wrapping({UNCOND: wrap})) as (app, client):
        try:
            async with asyncio.timeout(TIMEOUT_S):
                first = asyncio.create_task(client.post("/generate", json={"model": UNCOND, "seed": 1}))
                assert await asyncio.to_thread(runners[0].started.wait, TIMEOUT_S)
                second = asyncio.create_task(
                    client.post("/generate", json={"model": UNCOND, "seed": 2, "n": 2})
                )
                await eventually(lambda: batchers(app)[UNCOND].queued_images >= 2)
                refused = await client.post("/generate", json={"model": UNCOND, "seed": 3})
                assert refused.status_code == 429
                assert int(refused.headers["retry-after"]) >= 1
                assert refused.json()["error"]["type"] == "queue_full"
                gate.set()
                assert (await first).status_code == 200
                assert (await second).status_code == 200
        finally:
            gate.set()


async def test_request_timeout_answers_503_and_drops_the_work(serve: Serve, zoo: Path) -> None:
    gate = threading.Event()
    runners: list[GatedRunner] = []

    def wrap(inner: Any) -> GatedRunner:
        runners.append(GatedRunner(inner, gate))
        return runners[-1]

    settings = make_settings(zoo, request_timeout_s=0.2, warmup=False)
    async with serve(settings, runner_factory=wrapping({UNCOND: wrap})) as (app, client):
        try:
            async with asyncio.timeout(TIMEOUT_S):
                slow = asyncio.create_task(client.post("/generate", json={"model": UNCOND, "seed": 1}))
                assert await asyncio.to_thread(runners[0].started.wait, TIMEOUT_S)
                late = await client.post("/generate", json={"model": UNCOND, "seed": 2})
                assert late.status_code == 503
                # Its queue deadline (the request timeout, here) passed before any run took it.
                assert late.json()["error"]["type"] == "queue_timeout"
                assert "retry-after" in late.headers
                slow_resp = await slow
                assert slow_resp.status_code == 503  # its run started: the request timeout ends it
                assert slow_resp.json()["error"]["type"] == "timeout"
                gate.set()
                await asyncio.sleep(0.05)
        finally:
            gate.set()
        assert runners[0].batches == [1]  # the timed-out queued request never ran
        assert batchers(app)[UNCOND].expired_requests == 1


async def test_stuck_session_makes_model_not_ready(serve: Serve, zoo: Path) -> None:
    gate = threading.Event()
    runners: list[GatedRunner] = []

    def wrap(inner: Any) -> GatedRunner:
        runners.append(GatedRunner(inner, gate))
        return runners[-1]

    settings = make_settings(zoo, request_timeout_s=0.2, warmup=False)
    async with serve(settings, runner_factory=wrapping({UNCOND: wrap})) as (app, client):
        try:
            async with asyncio.timeout(TIMEOUT_S):
                stuck = asyncio.create_task(client.post("/generate", json={"model": UNCOND, "seed": 1}))
                assert await asyncio.to_thread(runners[0].started.wait, TIMEOUT_S)
                await asyncio.sleep(0.3)  # longer than request_timeout_s
                detail = (await client.get("/readyz")).json()["models"][UNCOND]
                assert detail["status"] == "not_ready"
                assert "in flight" in detail["reason"]
                refused = await client.post("/generate", json={"model": UNCOND, "seed": 2})
                assert refused.status_code == 503
                assert refused.json()["error"]["type"] == "model_not_ready"
                gate.set()
                assert (await stuck).status_code == 503  # timed out while stuck
                await eventually(lambda: batchers(app)[UNCOND].run_in_flight_s == 0)
        finally:
            gate.set()
        ready = await client.get("/readyz")
        assert ready.json()["models"][UNCOND]["status"] == "ready"  # recovers once the run returns


async def test_dead_worker_makes_model_not_ready_but_others_serve(serve: Serve, zoo: Path) -> None:
    """Until the supervisor has re-created its session and restarted it, as it would a hung one."""
    release = threading.Event()
    factory = Sequenced(GRAY, [], release=release)  # the re-creation waits for `release`
    try:
        async with serve(make_settings(zoo), runner_factory=factory) as (app, client):
            task = batchers(app)[GRAY]._task
            assert task is not None
            task.cancel()
            await eventually(lambda: factory.loads == 2)  # restarting: its new session is loading
            resp = await client.post("/generate", json={"model": GRAY, "label": 1})
            assert resp.status_code == 503
            assert resp.json()["error"]["type"] == "model_not_ready"
            assert "retry-after" in resp.headers
            ready = await client.get("/readyz")
            assert ready.status_code == 200  # two models still serve
            detail = ready.json()["models"][GRAY]
            assert detail["status"] == "not_ready"
            assert "worker" in detail["reason"]
            assert (await client.post("/generate", json={"model": UNCOND})).status_code == 200
            metrics = (await client.get("/metrics")).text
            assert f'condgen_model_ready{{model="{GRAY}"}} 0.0' in metrics
            assert f'condgen_model_ready{{model="{UNCOND}"}} 1.0' in metrics
            release.set()
            await eventually(lambda: batchers(app)[GRAY].ready)
            assert (await client.post("/generate", json={"model": GRAY, "label": 1})).status_code == 200
    finally:
        release.set()


# --------------------------------------------------------------------------- repository states
async def test_broken_models_are_skipped_and_reported(serve: Serve, zoo: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(zoo / UNCOND, repo / UNCOND)
    shutil.copytree(zoo / GRAY, repo / "tampered")
    (repo / "tampered" / "model.json").write_text(
        (repo / "tampered" / "model.json").read_text().replace(GRAY, "tampered")
    )
    with (repo / "tampered" / "model.onnx").open("ab") as fh:
        fh.write(b"\0")
    (repo / "garbled").mkdir()
    (repo / "garbled" / "model.json").write_text("{not json")
    async with serve(make_settings(repo)) as (_, client):
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        models = ready.json()["models"]
        assert models[UNCOND]["status"] == "ready"
        assert models["tampered"]["status"] == "failed"
        assert "sha256" in models["tampered"]["reason"]
        assert models["garbled"]["status"] == "failed"
        assert "model.json" in models["garbled"]["reason"]
        # Reasons name files inside the model directory, never where the repository lives.
        assert all(str(tmp_path) not in str(m["reason"]) for m in models.values())
        listing = (await client.get("/models")).json()["models"]
        assert str(tmp_path) not in str(listing)
        assert {m["name"]: m["status"] for m in listing} == {
            "garbled": "failed",
            "tampered": "failed",
            UNCOND: "ready",
        }
        refused = await client.post("/generate", json={"model": "tampered", "label": 1})
        assert refused.status_code == 503
        assert "sha256" in refused.json()["error"]["message"]
        assert (await client.post("/generate", json={"model": UNCOND})).status_code == 200


async def test_empty_repository_is_clearly_not_ready(serve: Serve, tmp_path: Path) -> None:
    async with serve(make_settings(tmp_path)) as (_, client):
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "not_ready"
        assert "no models were found in" in body["message"]
        assert body["error"]["type"] == "not_ready"
        assert (await client.get("/healthz")).status_code == 200
        resp = await client.post("/generate", json={"model": "cdcgan-mnist", "label": 1})
        assert resp.status_code == 404
        assert resp.json()["error"]["type"] == "unknown_model"


async def test_missing_repository_is_not_ready(serve: Serve, tmp_path: Path) -> None:
    async with serve(make_settings(tmp_path / "nowhere")) as (_, client):
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert "does not exist" in ready.json()["message"]


async def test_shutdown_reports_not_ready_and_refuses_work(serve: Serve, zoo: Path) -> None:
    async with serve(make_settings(zoo)) as (app, client):
        app.state.resources.closing = True
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["message"] == "shutting down"
        resp = await client.post("/generate", json={"model": UNCOND})
        assert resp.status_code == 503
        assert resp.json()["error"]["type"] == "shutting_down"


# --------------------------------------------------------------------------- models and ops
async def test_model_endpoints(client: httpx.AsyncClient) -> None:
    answer = (await client.get("/models")).json()
    listing = answer["models"]
    assert [m["name"] for m in listing] == [GRAY, RGB, UNCOND]
    assert all(m["status"] == "ready" for m in listing)
    assert all(m["providers"] == ["CPUExecutionProvider"] for m in listing)  # what the session runs on
    assert answer["limits"] == {"max_n": 64, "max_grid_images": 256}
    assert listing[0]["samples_url"] == f"/models/{GRAY}/samples.png"
    assert listing[1]["samples_url"] is None
    card = await client.get(f"/models/{GRAY}")
    assert card.status_code == 200
    assert card.json()["labels"][3] == "three"
    assert card.headers["x-condgen-model-status"] == "ready"
    missing = await client.get("/models/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "unknown_model"
    samples = await client.get(f"/models/{GRAY}/samples.png")
    assert samples.status_code == 200
    assert samples.headers["content-type"] == "image/png"
    assert (await client.get(f"/models/{RGB}/samples.png")).json()["error"]["type"] == "not_found"


async def test_health_docs_and_openapi_examples(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/docs")).status_code == 200
    spec = (await client.get("/openapi.json")).json()
    examples = spec["paths"]["/generate"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert examples["seeded"]["value"] == {"model": "cdcgan-mnist", "label": 3, "seed": 7, "n": 4}
    assert {"/grid", "/interpolate", "/models", "/readyz", "/metrics"} <= set(spec["paths"])


async def test_metrics_are_exposed_with_their_names(client: httpx.AsyncClient) -> None:
    await client.post("/generate", json={"model": GRAY, "label": 1, "seed": 1, "n": 3})
    await client.post("/generate", json={"model": "no-such-model"})
    await client.post("/generate", json={"model": UNCOND, "labels": [1]})
    resp = await client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    for name in [
        "condgen_requests_total",
        "condgen_request_duration_seconds_bucket",
        "condgen_queue_wait_seconds_bucket",
        "condgen_inference_duration_seconds_bucket",
        "condgen_batch_size_bucket",
        "condgen_queue_depth",
        "condgen_model_ready",
        "condgen_images_generated_total",
        "condgen_session_runs_total",
    ]:
        assert f"\n{name}{{" in text, name
    assert f'condgen_requests_total{{model="{GRAY}",status="200"}} 1.0' in text
    assert 'condgen_requests_total{model="unknown",status="404"} 1.0' in text
    assert f'condgen_requests_total{{model="{UNCOND}",status="422"}} 1.0' in text
    assert f'condgen_images_generated_total{{model="{GRAY}"}} 3.0' in text
    assert "no-such-model" not in text  # client-chosen names never become label values


_SPANS: Any = None


def _recorded_spans() -> Any:
    """An in-memory span exporter behind the process's global tracer provider (set once)."""
    global _SPANS
    if _SPANS is None:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        _SPANS = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_SPANS))
        trace.set_tracer_provider(provider)
    return _SPANS


async def test_fastapi_opentelemetry_records_requests_only_when_enabled(serve: Serve, zoo: Path) -> None:
    spans = _recorded_spans()
    spans.clear()
    body = {"model": GRAY, "label": 3, "seed": 7}
    async with serve(make_settings(zoo)) as (_, client):
        assert (await client.post("/generate", json=body)).status_code == 200
    assert spans.get_finished_spans() == ()  # a provider is configured, but telemetry is off

    async with serve(make_settings(zoo, otel_telemetry=True)) as (_, client):
        assert (await client.post("/generate", json=body)).status_code == 200
        assert (await client.get("/models")).status_code == 200
    methods = [span.attributes.get("http.request.method") for span in spans.get_finished_spans()]
    assert sorted(m for m in methods if m is not None) == ["GET", "POST"], methods
