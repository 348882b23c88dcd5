"""A real ``python -m service`` process: SIGTERM drains, SIGHUP reloads, logs are JSON lines.

The slow model (:mod:`tests.service.slow_model`, tens of milliseconds per run, batch size 1) keeps
requests in flight long enough to send signals while they are.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import UNCOND
from tests.service.process import ServiceProcess, run_service
from tests.service.slow_model import SLOW, write_slow_model

pytestmark = pytest.mark.slow

TIMEOUT_S = 30.0
SLOW_SETTINGS = {"max_batch_size": 1, "max_wait_ms": 0, "warmup": "true", "log_level": "info"}


@pytest.fixture(scope="module")
def slow_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("slow")
    write_slow_model(root)
    return root


async def _queue_depth(client: httpx.AsyncClient) -> int:
    detail = (await client.get("/readyz")).json()["models"][SLOW]
    return int(detail.get("queued_requests", 0))


def _exited_by_signal_or_cleanly(code: int) -> bool:
    # uvicorn re-raises the signal it handled once shutdown is complete: -SIGTERM is a clean exit.
    return code in (0, -signal.SIGTERM)


async def test_sigterm_drains_in_flight_work_refuses_new_and_exits_in_time(slow_repo: Path) -> None:
    grace_s = 8.0
    with run_service(slow_repo, drain_timeout_s=grace_s, **SLOW_SETTINGS) as service:
        async with httpx.AsyncClient(base_url=service.url, timeout=TIMEOUT_S) as client:
            inflight = [
                asyncio.create_task(client.post("/generate", json={"model": SLOW, "seed": i}))
                for i in range(8)
            ]
            async with asyncio.timeout(TIMEOUT_S):
                while await _queue_depth(client) < 3:  # noqa: ASYNC110 - polling another process
                    await asyncio.sleep(0.01)
            signalled = time.monotonic()
            service.signal(signal.SIGTERM)
            # Readiness fails at once, on a new connection: the listener is still open.
            async with httpx.AsyncClient(base_url=service.url, timeout=5.0) as fresh:
                async with asyncio.timeout(2.0):
                    while (ready := await fresh.get("/readyz")).status_code != 503:  # noqa: ASYNC110
                        await asyncio.sleep(0.01)
                assert time.monotonic() - signalled < 2.0  # the flag flips in the handler itself
                assert ready.json()["message"] == "shutting down"
                assert ready.headers["retry-after"]
                refused = await fresh.post("/generate", json={"model": SLOW, "seed": 99})
                assert refused.status_code == 503
                assert refused.json()["error"]["type"] == "shutting_down"
                assert int(refused.headers["retry-after"]) >= 1
            # Every request that was in flight completes normally.
            results = await asyncio.gather(*inflight)
            assert [r.status_code for r in results] == [200] * 8
            assert all(r.content.startswith(b"\x89PNG") for r in results)
        code = await asyncio.to_thread(service.wait, grace_s + 5)
        took = time.monotonic() - signalled
    assert _exited_by_signal_or_cleanly(code), service.log()
    assert took < grace_s, f"exit took {took:.1f} s"
    assert "Application shutdown complete" in service.log()


async def test_work_still_queued_when_the_grace_period_ends_gets_503(slow_repo: Path) -> None:
    grace_s = 2.0
    with run_service(slow_repo, drain_timeout_s=grace_s, **SLOW_SETTINGS) as service:
        async with httpx.AsyncClient(
            base_url=service.url, timeout=TIMEOUT_S, limits=httpx.Limits(max_connections=200)
        ) as client:
            # Far more work than the grace period can hold (each run takes tens of milliseconds).
            inflight = [
                asyncio.create_task(client.post("/generate", json={"model": SLOW, "seed": i}))
                for i in range(150)
            ]
            async with asyncio.timeout(TIMEOUT_S):
                while await _queue_depth(client) < 100:  # noqa: ASYNC110 - polling another process
                    await asyncio.sleep(0.01)
            signalled = time.monotonic()
            service.signal(signal.SIGTERM)
            results = await asyncio.gather(*inflight, return_exceptions=True)
        code = await asyncio.to_thread(service.wait, grace_s + 5)
        took = time.monotonic() - signalled
    assert _exited_by_signal_or_cleanly(code), service.log()
    assert took < grace_s + 1.5, f"exit took {took:.1f} s"
    statuses = [r.status_code for r in results if isinstance(r, httpx.Response)]
    assert len(statuses) == len(results), [r for r in results if not isinstance(r, httpx.Response)][:3]
    unexpected = [(r.status_code, r.text) for r in results if r.status_code not in (200, 503)]
    assert not unexpected, (unexpected[:3], service.log()[-4000:])
    assert statuses.count(200) >= 1  # the drain served what it could in time
    assert statuses.count(503) >= 1
    for r in results:
        assert isinstance(r, httpx.Response)
        if r.status_code == 503:
            assert r.json()["error"]["type"] == "shutting_down"
            assert "retry-after" in r.headers


def _json_lines(service: ServiceProcess) -> list[dict[str, object]]:
    records = []
    for line in service.lines:
        if not line.strip():
            continue
        record = json.loads(line)  # every line is one JSON object
        assert isinstance(record, dict), line
        assert {"ts", "level", "logger", "msg"} <= set(record), line
        records.append(record)
    return records


async def test_sighup_reloads_the_repository_and_logs_are_json_lines(tmp_path: Path, zoo: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(zoo / UNCOND, repo / UNCOND)
    with run_service(repo, log_level="info") as service:
        async with httpx.AsyncClient(base_url=service.url, timeout=TIMEOUT_S) as client:
            served = await client.post(
                "/generate", json={"model": UNCOND, "seed": 1}, headers={"X-Request-ID": "req-0001"}
            )
            assert served.status_code == 200
            assert served.headers["x-request-id"] == "req-0001"
            missing = await client.post("/generate", json={"model": "extra", "seed": 1})
            assert missing.status_code == 404
            generated_id = missing.headers["x-request-id"]
            assert len(generated_id) == 32

            shutil.copytree(zoo / UNCOND, repo / "extra")
            (repo / "extra" / "model.json").write_text(
                (repo / "extra" / "model.json").read_text().replace(f'"{UNCOND}"', '"extra"')
            )
            service.signal(signal.SIGHUP)
            async with asyncio.timeout(TIMEOUT_S):
                while "extra" not in [m["name"] for m in (await client.get("/models")).json()["models"]]:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            assert (await client.post("/generate", json={"model": "extra", "seed": 1})).status_code == 200
            assert service.proc.poll() is None  # SIGHUP did not end the process
    records = _json_lines(service)
    access = [r for r in records if r["logger"] == "service.access"]
    first = next(r for r in access if r.get("request_id") == "req-0001")
    assert first["model"] == UNCOND
    assert first["status"] == 200
    assert isinstance(first["duration_ms"], float)
    unknown = next(r for r in access if r.get("request_id") == generated_id)
    assert unknown["status"] == 404
    assert any(r["logger"] == "service.supervisor" and "reload (SIGHUP)" in str(r["msg"]) for r in records)
    assert any(str(r["msg"]).startswith("Uvicorn running on") for r in records)  # uvicorn's too


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


async def test_the_process_writes_nothing_to_its_directory_or_models(tmp_path: Path, zoo: Path) -> None:
    """What a read-only root filesystem needs from the service itself (the image runs it so):
    serving, reloading and draining write no file to the working directory or the models."""
    repo, cwd = tmp_path / "repo", tmp_path / "cwd"
    shutil.copytree(zoo, repo)
    cwd.mkdir()
    before = _snapshot(repo)
    with run_service(repo, cwd=cwd, log_level="info") as service:
        async with httpx.AsyncClient(base_url=service.url, timeout=TIMEOUT_S) as client:
            for accept in ("image/png", "application/json", "application/x-npy"):
                resp = await client.post(
                    "/grid", json={"model": "cond-gray", "seed": 1}, headers={"accept": accept}
                )
                assert resp.status_code == 200
            assert (await client.get("/models/cond-gray/samples.png")).status_code == 200
            assert (await client.post("/admin/reload")).status_code == 200
            service.signal(signal.SIGHUP)
            assert (await client.get("/metrics")).status_code == 200
        service.signal(signal.SIGTERM)
        assert _exited_by_signal_or_cleanly(await asyncio.to_thread(service.wait, TIMEOUT_S))
    assert list(cwd.iterdir()) == []
    assert _snapshot(repo) == before


async def test_ctrl_c_drains_too_and_exits_cleanly(zoo: Path) -> None:
    with run_service(zoo, log_level="info") as service:
        async with httpx.AsyncClient(base_url=service.url, timeout=TIMEOUT_S) as client:
            assert (await client.post("/generate", json={"model": UNCOND, "seed": 1})).status_code == 200
        service.signal(signal.SIGINT)
        code = await asyncio.to_thread(service.wait, TIMEOUT_S)
    assert code == 0, service.log()
    _json_lines(service)  # no traceback: every line is still a JSON object
    assert "Application shutdown complete" in service.log()
