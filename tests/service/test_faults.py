"""Faults heal without a restart, and the model repository reloads without failing requests.

In-process (ASGI) with the fixture zoo: runtimes that throw or hang (injected through the
``runner_factory`` seam), corrupt and mismatched model files, and ``POST /admin/reload``.
"""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import shutil
import threading
import weakref
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from service.card import ModelCard, sha256_file
from service.config import Settings
from service.runtime import Runner
from tests.service.conftest import GRAY, RGB, UNCOND, Serve, eventually, make_settings
from tests.service.onnx_fixtures import edit_card, write_model
from tests.service.runners import FailingRunner, GatedRunner, Sequenced

TIMEOUT_S = 10.0
NPY = {"accept": "application/x-npy"}


def npy(resp: httpx.Response) -> np.ndarray:
    assert resp.status_code == 200, resp.text
    return np.load(io.BytesIO(resp.content), allow_pickle=False)


def ready_gauge(metrics_text: str, model: str) -> float:
    prefix = f'condgen_model_ready{{model="{model}"}} '
    line = next(line for line in metrics_text.splitlines() if line.startswith(prefix))
    return float(line.removeprefix(prefix))


async def model_detail(client: httpx.AsyncClient, model: str) -> dict[str, Any]:
    detail: dict[str, Any] = (await client.get("/readyz")).json()["models"][model]
    return detail


# --------------------------------------------------------------------------- runtime faults
async def test_throwing_runtime_turns_unhealthy_then_recovers_with_a_new_session(
    serve: Serve, zoo: Path
) -> None:
    release = threading.Event()
    factory = Sequenced(GRAY, [lambda _real: FailingRunner()], release)
    settings = make_settings(zoo, failure_threshold=2, warmup=False)
    try:
        async with serve(settings, runner_factory=factory) as (_, client):
            async with asyncio.timeout(TIMEOUT_S):
                for i in range(2):
                    failed = await client.post("/generate", json={"model": GRAY, "label": 1, "seed": i})
                    assert failed.status_code == 500
                    assert failed.json()["error"]["type"] == "inference_failed"
                # Two failures in a row: out of service while the session is re-created.
                await eventually(lambda: factory.loads == 2)
                detail = await model_detail(client, GRAY)
                assert detail["status"] == "not_ready"
                assert "session runs in a row failed" in detail["reason"]
                assert ready_gauge((await client.get("/metrics")).text, GRAY) == 0.0
                refused = await client.post("/generate", json={"model": GRAY, "label": 1, "seed": 9})
                assert refused.status_code == 503
                assert refused.json()["error"]["type"] == "model_not_ready"
                assert "retry-after" in refused.headers
                # The other models never noticed.
                assert (await client.post("/generate", json={"model": UNCOND, "seed": 1})).status_code == 200
                assert (await client.get("/readyz")).status_code == 200
                release.set()
                while (await model_detail(client, GRAY))["status"] != "ready":  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                ok = await client.post("/generate", json={"model": GRAY, "label": 1, "seed": 9})
                assert ok.status_code == 200
            metrics = (await client.get("/metrics")).text
            assert ready_gauge(metrics, GRAY) == 1.0
            assert f'condgen_model_recoveries_total{{model="{GRAY}"}} 1.0' in metrics
    finally:
        release.set()
    assert factory.loads == 2  # one start-up load, one re-creation: no process restart


class HangingRunner:
    """Blocks until released, as a wedged device would; no abort()."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()

    def run(self, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        self.started.set()
        self.release.wait(TIMEOUT_S)
        raise RuntimeError("released")


async def test_hanging_runtime_fails_every_waiter_within_the_run_timeout_and_recovers(
    serve: Serve, zoo: Path
) -> None:
    hung = HangingRunner()
    release = threading.Event()
    factory = Sequenced(UNCOND, [lambda _real: hung], release)
    settings = make_settings(zoo, run_timeout_s=0.3, request_timeout_s=8.0, max_batch_size=2, warmup=False)
    try:
        async with serve(settings, runner_factory=factory) as (_, client):
            async with asyncio.timeout(TIMEOUT_S):
                loop = asyncio.get_running_loop()
                started = loop.time()
                waiting = [
                    asyncio.create_task(client.post("/generate", json={"model": UNCOND, "seed": i}))
                    for i in range(6)
                ]
                results = await asyncio.gather(*waiting)
                elapsed = loop.time() - started
                # All answered by the run timeout (0.3 s), far inside their own 8 s deadline.
                assert elapsed < 3.0
                for resp in results:
                    assert resp.status_code == 503, resp.text
                    assert resp.json()["error"]["type"] == "model_not_ready"
                    assert "retry-after" in resp.headers
                await eventually(lambda: factory.loads == 2)
                detail = await model_detail(client, UNCOND)
                assert detail["status"] == "not_ready"
                assert "run_timeout_s" in detail["reason"]
                assert ready_gauge((await client.get("/metrics")).text, UNCOND) == 0.0
                release.set()
                while (await model_detail(client, UNCOND))["status"] != "ready":  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                assert (await client.post("/generate", json={"model": UNCOND, "seed": 1})).status_code == 200
            assert ready_gauge((await client.get("/metrics")).text, UNCOND) == 1.0
    finally:
        release.set()
        hung.release.set()


async def test_model_whose_files_break_while_serving_stays_out_until_they_are_fixed(
    serve: Serve, zoo: Path, tmp_path: Path
) -> None:
    """Recovery re-validates the files: a corrupted model.onnx is reported, never served."""
    repo = tmp_path / "repo"
    shutil.copytree(zoo, repo)
    factory = Sequenced(GRAY, [lambda _real: FailingRunner()])
    settings = make_settings(repo, failure_threshold=1, recovery_backoff_s=0.05, warmup=False)
    onnx_path = repo / GRAY / "model.onnx"
    good = onnx_path.read_bytes()
    async with serve(settings, runner_factory=factory) as (_, client):
        onnx_path.write_bytes(good[:-10] + b"corrupted!")
        async with asyncio.timeout(TIMEOUT_S):
            assert (await client.post("/generate", json={"model": GRAY, "label": 1})).status_code == 500
            while "sha256 mismatch" not in str((await model_detail(client, GRAY))["reason"]):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            onnx_path.write_bytes(good)
            while (await model_detail(client, GRAY))["status"] != "ready":  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            assert (await client.post("/generate", json={"model": GRAY, "label": 1})).status_code == 200


async def test_corrupt_and_mismatched_models_are_skipped_logged_reported_and_others_serve(
    serve: Serve, zoo: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(zoo / UNCOND, repo / UNCOND)
    shutil.copytree(zoo / UNCOND, repo / "garbage")
    (repo / "garbage" / "model.json").write_text(
        (repo / "garbage" / "model.json").read_text().replace(f'"{UNCOND}"', '"garbage"')
    )
    (repo / "garbage" / "model.onnx").write_bytes(b"not an onnx file")
    write_model(repo, "mismatch", dim=12)
    # A different graph under a card whose digest matches it: caught by the session's I/O check.
    shutil.copyfile(zoo / GRAY / "model.onnx", repo / "mismatch" / "model.onnx")
    edit_card(repo / "mismatch", onnx__sha256=sha256_file(repo / "mismatch" / "model.onnx"))
    caplog.set_level(logging.ERROR, logger="service.registry")
    async with serve(make_settings(repo)) as (_, client):
        models = {m["name"]: m for m in (await client.get("/models")).json()["models"]}
        assert models[UNCOND]["status"] == "ready"
        assert models["garbage"]["status"] == "failed"
        assert models["mismatch"]["status"] == "failed"
        assert "sha256 mismatch" in models["garbage"]["reason"]
        assert "do not match the card" in models["mismatch"]["reason"]
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["models"]["garbage"]["status"] == "failed"
        metrics = (await client.get("/metrics")).text
        assert ready_gauge(metrics, "garbage") == 0.0
        assert ready_gauge(metrics, UNCOND) == 1.0
        assert (await client.post("/generate", json={"model": UNCOND, "seed": 1})).status_code == 200
        refused = await client.post("/generate", json={"model": "garbage", "seed": 1})
        assert refused.status_code == 503
        assert refused.json()["error"]["type"] == "model_not_ready"
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "model garbage skipped" in logged
    assert "model mismatch skipped" in logged


# --------------------------------------------------------------------------- reload
def _rename(model_dir: Path, name: str) -> None:
    card = model_dir / "model.json"
    card.write_text(card.read_text().replace(f'"{model_dir.name}"', f'"{name}"'))
    model_dir.rename(model_dir.parent / name)


async def test_reload_adds_changes_and_removes_models(serve: Serve, zoo: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(zoo, repo)
    async with serve(make_settings(repo)) as (app, client):
        old_uncond = app.state.resources.batchers[UNCOND]
        before = npy(await client.post("/generate", json={"model": GRAY, "label": 2, "seed": 4}, headers=NPY))
        # New weights for GRAY, a new model, and RGB gone.
        write_model(repo, GRAY, dim=16, labels=[str(i) for i in range(10)], seed=42)
        shutil.copytree(zoo / UNCOND, repo / "fresh-copy")
        (repo / "fresh-copy" / "model.json").write_text(
            (repo / "fresh-copy" / "model.json").read_text().replace(f'"{UNCOND}"', '"fresh-copy"')
        )
        shutil.rmtree(repo / RGB)
        resp = await client.post("/admin/reload")
        assert resp.status_code == 200, resp.text
        report = resp.json()
        assert report == {
            "status": "ok",
            "loaded": sorted([GRAY, "fresh-copy"]),
            "unchanged": [UNCOND],
            "removed": [RGB],
            "failed": {},
            "kept_previous": {},
        }
        assert app.state.resources.batchers[UNCOND] is old_uncond  # untouched, queue and all
        after = npy(await client.post("/generate", json={"model": GRAY, "label": 2, "seed": 4}, headers=NPY))
        assert not np.array_equal(before, after)  # the new weights serve
        assert (await client.post("/generate", json={"model": "fresh-copy", "seed": 1})).status_code == 200
        gone = await client.post("/generate", json={"model": RGB, "label": 0})
        assert gone.status_code == 404
        names = [m["name"] for m in (await client.get("/models")).json()["models"]]
        assert names == sorted([GRAY, UNCOND, "fresh-copy"])
        await eventually(lambda: not app.state.resources.retiring)
        metrics = (await client.get("/metrics")).text
        assert 'condgen_reloads_total{outcome="ok"} 1.0' in metrics
        assert f'condgen_model_ready{{model="{RGB}"}}' not in metrics  # its series are gone
        assert ready_gauge(metrics, GRAY) == 1.0


async def test_reload_swaps_a_model_without_failing_its_in_flight_requests(
    serve: Serve, zoo: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(zoo, repo)
    gate = threading.Event()
    gated: list[GatedRunner] = []

    def first_gated(real: Runner) -> Runner:
        gated.append(GatedRunner(real, gate))
        return gated[-1]

    factory = Sequenced(UNCOND, [first_gated])
    settings = make_settings(repo, warmup=False, max_batch_size=1)
    try:
        async with serve(settings, runner_factory=factory) as (app, client):
            async with asyncio.timeout(TIMEOUT_S):
                old = app.state.resources.batchers[UNCOND]
                running = asyncio.create_task(
                    client.post("/generate", json={"model": UNCOND, "seed": 1}, headers=NPY)
                )
                assert await asyncio.to_thread(gated[0].started.wait, TIMEOUT_S)
                queued = asyncio.create_task(
                    client.post("/generate", json={"model": UNCOND, "seed": 2}, headers=NPY)
                )
                await eventually(lambda: old.queued_requests == 1)
                write_model(repo, UNCOND, dim=12, value_range=(0.0, 1.0), seed=77)  # new weights
                report = (await client.post("/admin/reload")).json()
                assert report["loaded"] == [UNCOND]
                new = app.state.resources.batchers[UNCOND]
                assert new is not old
                # New requests go to the new batcher at once, while the old one still holds work.
                fresh = npy(await client.post("/generate", json={"model": UNCOND, "seed": 1}, headers=NPY))
                assert new.session_runs == 1
                assert old.state == "stopping"
                gate.set()
                first, second = await asyncio.gather(running, queued)
                assert not np.array_equal(npy(first), fresh)  # the old weights finished the old work
                assert npy(second).shape == (1, 1, 8, 8)
                await eventually(lambda: old.state == "stopped")
            assert old.session_runs == 2  # both old requests ran on the old session
            metrics = (await client.get("/metrics")).text
            assert ready_gauge(metrics, UNCOND) == 1.0  # the retired batcher did not clear it
    finally:
        gate.set()


async def test_reload_keeps_the_previous_version_when_the_new_files_are_broken(
    serve: Serve, zoo: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(zoo, repo)
    async with serve(make_settings(repo)) as (app, client):
        before = app.state.resources.batchers[GRAY]
        (repo / GRAY / "model.onnx").write_bytes(b"truncated")
        write_model(repo, "broken-new", dim=12)
        (repo / "broken-new" / "model.json").write_text("{not json")
        resp = await client.post("/admin/reload")
        assert resp.status_code == 200
        report = resp.json()
        assert report["status"] == "partial"
        assert "sha256 mismatch" in report["kept_previous"][GRAY]
        assert "invalid JSON" in report["failed"]["broken-new"]
        assert app.state.resources.batchers[GRAY] is before
        assert (await client.post("/generate", json={"model": GRAY, "label": 1})).status_code == 200
        detail = await model_detail(client, "broken-new")
        assert detail["status"] == "failed"
        for leak in ("Traceback", str(tmp_path), ".py"):
            assert leak not in resp.text
        assert 'condgen_reloads_total{outcome="partial"} 1.0' in (await client.get("/metrics")).text


async def test_concurrent_reloads_are_serialized(serve: Serve, zoo: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(zoo, repo)
    async with serve(make_settings(repo)) as (_, client):
        write_model(repo, "another", dim=12)
        a, b = await asyncio.gather(client.post("/admin/reload"), client.post("/admin/reload"))
        reports = sorted([a.json(), b.json()], key=lambda r: len(r["loaded"]))
        assert reports[0]["loaded"] == []  # the second saw the first one's result
        assert reports[1]["loaded"] == ["another"]
        assert (await client.post("/generate", json={"model": "another", "seed": 3})).status_code == 200


async def test_reload_while_shutting_down_is_refused(serve: Serve, zoo: Path) -> None:
    async with serve(make_settings(zoo)) as (app, client):
        app.state.resources.begin_drain()
        resp = await client.post("/admin/reload")
        assert resp.status_code == 503
        assert resp.json()["error"]["type"] == "shutting_down"


async def test_a_reload_frees_the_sessions_it_replaced(serve: Serve, zoo: Path, tmp_path: Path) -> None:
    """Start-up freezes the heap out of the collector's reach (service.serving.settle_heap); the
    sessions a reload retires must still be freed, not kept forever with the frozen rest."""
    repo = tmp_path / "repo"
    shutil.copytree(zoo, repo)
    async with serve(make_settings(repo, warmup=False)) as (app, client):
        assert gc.get_freeze_count() > 0
        old_runner = weakref.ref(app.state.resources.batchers[UNCOND].runner)
        write_model(repo, UNCOND, dim=12, value_range=(0.0, 1.0), seed=78)  # new weights
        assert (await client.post("/admin/reload")).json()["loaded"] == [UNCOND]
        await eventually(lambda: not app.state.resources.retiring)
        await eventually(lambda: old_runner() is None)
        assert (await client.post("/generate", json={"model": UNCOND, "seed": 1})).status_code == 200
    assert gc.get_freeze_count() == 0  # a closed app leaves nothing frozen behind


async def test_a_drain_keeps_its_bound_while_a_reload_is_still_loading(
    serve: Serve, zoo: Path, tmp_path: Path
) -> None:
    """SIGTERM during a slow reload (a large model being hashed and loaded) exits within the grace
    period: the reload is left behind and swaps nothing in."""
    repo = tmp_path / "repo"
    shutil.copytree(zoo, repo)
    release = threading.Event()
    loading = threading.Event()
    factory = Sequenced(UNCOND, [], release=release)  # the reload's load waits for `release`

    def slow(model_dir: Path, card: ModelCard, settings: Settings) -> Runner:
        if card.name == UNCOND and factory.loads >= 1:
            loading.set()
        return factory(model_dir, card, settings)

    grace_s = 1.0
    settings = make_settings(repo, warmup=False, drain_timeout_s=grace_s)
    reload: asyncio.Task[httpx.Response] | None = None
    try:
        async with serve(settings, runner_factory=slow) as (app, client):
            write_model(repo, UNCOND, dim=12, value_range=(0.0, 1.0), seed=79)  # new weights
            reload = asyncio.create_task(client.post("/admin/reload"))
            assert await asyncio.to_thread(loading.wait, TIMEOUT_S)
            app.state.resources.begin_drain()
            started = asyncio.get_running_loop().time()
        # Leaving the lifespan is the shutdown: bounded by the grace, not by the reload.
        assert asyncio.get_running_loop().time() - started < grace_s + 1.0
        release.set()
        assert (await reload).status_code == 503
    finally:
        release.set()


async def test_a_reload_storm_flipping_the_latent_size_kills_no_worker(
    serve: Serve, zoo: Path, tmp_path: Path
) -> None:
    """Requests planned against a card a reload replaced never reach the new model's runs."""
    repo = tmp_path / "repo"
    shutil.copytree(zoo, repo)
    dims = (12, 20)
    statuses: list[int] = []
    unanswerable: list[str] = []
    done = asyncio.Event()

    def record(resp: httpx.Response) -> None:
        statuses.append(resp.status_code)
        if resp.status_code >= 500 and not (resp.status_code == 503 and "retry-after" in resp.headers):
            unanswerable.append(f"{resp.status_code} {resp.text}")

    async def client_loop(client: httpx.AsyncClient, k: int) -> None:
        i = 0
        while not done.is_set():
            i += 1
            if k % 2:
                resp = await client.post("/generate", json={"model": UNCOND, "seed": i, "n": 2})
            else:
                z = np.zeros((2, dims[i % 2]), dtype=np.float32)
                body = {
                    "inputs": [
                        {"name": "z", "shape": list(z.shape), "datatype": "FP32", "data": z.ravel().tolist()}
                    ]
                }
                # Padded past the inline limit: parsed on a thread, a window for a reload to land.
                padded = json.dumps(body) + " " * 70_000
                resp = await client.post(
                    f"/v2/models/{UNCOND}/infer", content=padded, headers={"content-type": "application/json"}
                )
            record(resp)

    settings = make_settings(repo, warmup=False, max_wait_ms=5.0)
    async with serve(settings) as (app, client):
        async with asyncio.timeout(30.0):
            clients = [asyncio.create_task(client_loop(client, k)) for k in range(8)]
            for flip in range(12):
                write_model(repo, UNCOND, dim=dims[(flip + 1) % 2], value_range=(0.0, 1.0), seed=3)
                assert (await client.post("/admin/reload")).json()["loaded"] == [UNCOND]
                await asyncio.sleep(0.02)
            done.set()
            await asyncio.gather(*clients)
            batcher = app.state.resources.batchers[UNCOND]
            assert batcher.ready, batcher.dead_reason
            assert (await client.post("/generate", json={"model": UNCOND, "seed": 1})).status_code == 200
    assert not unanswerable, unanswerable[:3]
    assert 200 in statuses


async def test_a_card_listing_labels_its_graph_lacks_is_refused_and_one_bad_request_fails_alone(
    serve: Serve, zoo: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(zoo, repo)
    edit_card(repo / GRAY, labels=[*(str(i) for i in range(10)), "ten", "eleven"])
    async with serve(make_settings(repo)) as (_, client):
        models = {m["name"]: m for m in (await client.get("/models")).json()["models"]}
        assert "label 10 ('ten')" in models[GRAY]["reason"]
    # Without the probe, a shared run holding label 10 fails: only its request may fail.
    settings = make_settings(repo, probe_labels=False, max_wait_ms=50.0, failure_threshold=1)
    async with serve(settings) as (app, client):
        async with asyncio.timeout(TIMEOUT_S):
            bodies = [{"model": GRAY, "label": i % 10, "seed": i} for i in range(12)]
            bodies.insert(5, {"model": GRAY, "label": 10, "seed": 99})
            answers = await asyncio.gather(*(client.post("/generate", json=b) for b in bodies))
        bad = answers.pop(5)
        assert [a.status_code for a in answers] == [200] * 12
        assert bad.status_code == 422, bad.text
        assert "labels [10]" in bad.json()["error"]["message"]
        # Alone in its run, too: a control run of label 0 shows the session works, so it is the
        # request's input (422), not a session failure (500) that would count toward re-creation.
        for _ in range(3):
            alone = await client.post("/generate", json={"model": GRAY, "label": 11, "seed": 1})
            assert alone.status_code == 422, alone.text
            assert "labels [11]" in alone.json()["error"]["message"]
        batcher = app.state.resources.batchers[GRAY]
        assert batcher.ready
        assert batcher.recoveries == 0


async def test_a_reload_hashes_only_files_that_changed(
    serve: Serve, zoo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service import supervisor

    repo = tmp_path / "repo"
    shutil.copytree(zoo, repo)
    hashed: list[str] = []
    real = supervisor.sha256_file
    monkeypatch.setattr(supervisor, "sha256_file", lambda path: hashed.append(path.parent.name) or real(path))
    async with serve(make_settings(repo, warmup=False)) as (_, client):
        assert (await client.post("/admin/reload")).json()["unchanged"] == sorted([GRAY, RGB, UNCOND])
        assert hashed == []  # the files hashed at load are still those files: a stat each
        onnx = repo / UNCOND / "model.onnx"
        onnx.write_bytes(onnx.read_bytes())  # the same bytes, written again
        report = (await client.post("/admin/reload")).json()
        assert hashed == [UNCOND]
        assert UNCOND in report["unchanged"]  # hashed, and still what the card says
