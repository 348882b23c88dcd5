"""API key, model names that never become paths, nothing internal in any response, request IDs."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from service.config import Settings
from service.logs import JsonFormatter, request_id_var
from service.middleware import is_protected
from service.registry import ModelRegistry
from tests.service.conftest import GRAY, UNCOND, Serve, make_settings
from tests.service.runners import FailingRunner, GatedRunner, wrapping

KEY = "s3cret-key-for-tests-0123456789"
AUTH = {"authorization": f"Bearer {KEY}"}
INVALID_TOKEN = 'Bearer realm="condgen", error="invalid_token"'
JSON_TYPE = {"content-type": "application/json"}
TIMEOUT_S = 10.0


# --------------------------------------------------------------------------- API key
@pytest.fixture
async def keyed(serve: Serve, zoo: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(make_settings(zoo, api_key=KEY)) as (_, client):
        yield client


PROTECTED = [
    ("/generate", {"model": UNCOND, "seed": 1}),
    ("/grid", {"model": GRAY, "seed": 1, "columns": 2}),
    ("/interpolate", {"model": UNCOND, "seeds": [1, 2], "steps": 2}),
    ("/admin/reload", None),
    (
        f"/v2/models/{UNCOND}/infer",
        {"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 12], "data": [0.0] * 12}]},
    ),
]


@pytest.mark.parametrize(("path", "body"), PROTECTED, ids=[p for p, _ in PROTECTED])
async def test_protected_endpoints_need_the_bearer_key(
    keyed: httpx.AsyncClient, path: str, body: dict[str, Any] | None
) -> None:
    for headers, challenge in [
        ({}, 'Bearer realm="condgen"'),
        (
            {"authorization": "Bearer wrong-key-wrong-key-wrong"},
            'Bearer realm="condgen", error="invalid_token"',
        ),
        ({"authorization": f"Basic {KEY}"}, INVALID_TOKEN),
        ({"authorization": f"Bearer {KEY}x"}, INVALID_TOKEN),
        ({"authorization": f"Bearer {KEY[:-1]}"}, INVALID_TOKEN),
    ]:
        resp = await keyed.post(path, json=body, headers=headers)
        assert resp.status_code == 401, (headers, resp.text)
        assert resp.headers["www-authenticate"] == challenge
        if path.startswith("/v2/"):  # the Open Inference Protocol's error shape
            assert "API key" in resp.json()["error"]
        else:
            assert resp.json()["error"]["type"] == "unauthorized"
        assert KEY not in resp.text
    ok = await keyed.post(path, json=body, headers=AUTH)
    assert ok.status_code == 200, ok.text
    lower = await keyed.post(path, json=body, headers={"authorization": f"bearer {KEY}"})
    assert lower.status_code == 200  # the scheme is case-insensitive


async def test_key_is_checked_before_the_body_is_read(keyed: httpx.AsyncClient) -> None:
    huge = b"[" * (4 * 1024 * 1024)  # over the body limit, and malformed
    resp = await keyed.post("/generate", content=huge, headers={"content-type": "application/json"})
    assert resp.status_code == 401


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/models", f"/models/{GRAY}", "/docs"])
async def test_health_readiness_metrics_and_cards_stay_open(keyed: httpx.AsyncClient, path: str) -> None:
    assert (await keyed.get(path)).status_code == 200


async def test_openapi_documents_the_key_on_protected_operations(keyed: httpx.AsyncClient) -> None:
    doc = (await keyed.get("/openapi.json")).json()
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "CONDGEN_API_KEY",
    }
    for path, operations in doc["paths"].items():
        for operation in operations.values():
            if is_protected(path.replace("{", "").replace("}", "")):
                assert operation["security"] == [{"bearer": []}], path
                assert "401" in operation["responses"], path
            else:
                assert "security" not in operation, path


async def test_without_a_key_nothing_asks_for_one(client: httpx.AsyncClient) -> None:
    assert (await client.post("/generate", json={"model": UNCOND})).status_code == 200
    assert "securitySchemes" not in (await client.get("/openapi.json")).json().get("components", {})


def test_key_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="at least 16"):
        Settings(api_key="short")
    monkeypatch.setenv("CONDGEN_API_KEY", "")
    assert Settings().api_key is None  # set but empty: no key
    monkeypatch.setenv("CONDGEN_API_KEY", KEY)
    settings = Settings()
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == KEY
    assert KEY not in repr(settings)  # never printed by accident


# --------------------------------------------------------------------------- names are not paths
BAD_NAMES = ["../uncond", "..", "a/../../etc/passwd", "UNCOND", "x" * 65, "uncond\x00", ".hidden", "%2e%2e"]


async def test_model_names_are_validated_before_any_lookup(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked_up: list[str] = []
    original = ModelRegistry.get

    def spy(self: ModelRegistry, name: str) -> Any:
        looked_up.append(name)
        return original(self, name)

    monkeypatch.setattr(ModelRegistry, "get", spy)
    for name in BAD_NAMES:
        resp = await client.post("/generate", json={"model": name, "seed": 1})
        assert resp.status_code == 404, (name, resp.text)
        assert resp.json()["error"]["type"] == "unknown_model"
    for path in [
        "/models/..%2F..%2Fetc%2Fpasswd",
        "/models/%2E%2E",
        "/models/..%2Fcond-gray/samples.png",
        "/models/UNCOND",
        "/models/%00",
    ]:
        resp = await client.get(path)
        assert resp.status_code == 404, (path, resp.text)
        assert resp.headers["content-type"] == "application/json"
    assert looked_up == []  # no invalid name ever reached the registry
    assert (await client.get(f"/models/{GRAY}/samples.png")).status_code == 200
    assert looked_up == [GRAY]


# --------------------------------------------------------------------------- nothing internal leaks
LEAKS = ("Traceback", 'File "', "/work", ".py", "site-packages", "/tmp", "/secret")


def assert_no_leak(resp: httpx.Response, *extra: str) -> None:
    for needle in (*LEAKS, *extra):
        assert needle not in resp.text, (needle, resp.status_code, resp.text)


async def test_provoked_errors_leak_no_traces_or_paths(serve: Serve, zoo: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(zoo, repo)
    (repo / "broken").mkdir()
    (repo / "broken" / "model.json").write_text('{"name": "broken"}')
    (repo / "broken" / "model.onnx").write_bytes(b"junk")
    gate = threading.Event()
    gated: list[GatedRunner] = []

    def gate_it(inner: Any) -> GatedRunner:
        gated.append(GatedRunner(inner, gate))
        return gated[-1]

    settings = make_settings(
        repo,
        max_body_bytes=2048,
        request_timeout_s=0.3,
        failure_threshold=1,
        recovery_backoff_s=0.05,
        warmup=False,
    )
    factory = wrapping({GRAY: lambda _inner: FailingRunner(), UNCOND: gate_it})
    responses: list[httpx.Response] = []
    try:
        async with serve(settings, runner_factory=factory) as (_, client):
            async with asyncio.timeout(TIMEOUT_S):
                post = client.post
                responses += [
                    await post("/generate", json={"model": GRAY, "label": 1}),  # runtime raises
                    await post("/generate", json={"model": GRAY, "label": 1}),  # recovering
                    await post("/generate", json={"model": "broken"}),  # failed to load
                    await post("/generate", json={"model": "nope"}),
                    await post(
                        "/generate", content=b'{"model": ', headers={"content-type": "application/json"}
                    ),
                    await post(
                        "/generate", content=b"\xff\xfe", headers={"content-type": "application/json"}
                    ),
                    await post(
                        "/generate", content=b"[" * 1500, headers={"content-type": "application/json"}
                    ),
                    await post(
                        "/generate", content=b"x" * 5000, headers={"content-type": "application/json"}
                    ),
                    await post("/generate", content=b"model=x", headers={"content-type": "text/plain"}),
                    await post("/generate", json={"model": UNCOND}, headers={"accept": "text/html"}),
                    await post("/generate", json={"model": UNCOND, "z": [float("1e39")] * 12}),
                    await client.get("/nope/../../etc/passwd"),
                    await client.delete("/generate"),
                    await client.get("/models/broken"),
                    await client.get("/models/broken/samples.png"),
                    await client.get("/readyz"),
                    await client.get("/models"),
                    await post("/admin/reload"),
                ]
                responses.append(await post("/generate", json={"model": UNCOND, "seed": 1}))  # stuck: 503
                assert responses[-1].status_code == 503
                gate.set()
    finally:
        gate.set()
    statuses = [r.status_code for r in responses]
    assert {500, 503, 422, 413, 406, 405, 404} <= set(statuses)
    for resp in responses:
        assert_no_leak(resp, str(repo), str(tmp_path))


async def test_missing_repository_does_not_name_its_path(serve: Serve, tmp_path: Path) -> None:
    async with serve(make_settings(tmp_path / "secret-place" / "models")) as (_, client):
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert "does not exist" in ready.json()["message"]
        assert_no_leak(ready, "secret-place")


# --------------------------------------------------------------------------- request IDs
async def test_request_ids_are_echoed_or_generated(client: httpx.AsyncClient) -> None:
    given = await client.post("/generate", json={"model": UNCOND}, headers={"X-Request-ID": "abc-123.x:y_z"})
    assert given.headers["x-request-id"] == "abc-123.x:y_z"
    generated = await client.post("/generate", json={"model": UNCOND})
    assert len(generated.headers["x-request-id"]) == 32
    # Generated IDs: a per-process random prefix and a counter, distinct request to request.
    again = [(await client.get("/healthz")).headers["x-request-id"] for _ in range(3)]
    assert len({generated.headers["x-request-id"], *again}) == 4
    assert all(re.fullmatch(r"[0-9a-f]{32}", rid) for rid in again)
    assert len({rid[:20] for rid in again}) == 1
    for bad in ["has space", "x" * 129, "new\\nline", "{json}"]:
        resp = await client.get("/healthz", headers={"X-Request-ID": bad})
        assert resp.headers["x-request-id"] != bad
        assert len(resp.headers["x-request-id"]) == 32
    # Errors, including those answered before the app (body limit), carry it too.
    too_big = await client.post(
        "/generate", content=b"x" * (3 * 1024 * 1024), headers={"X-Request-ID": "big-one"}
    )
    assert too_big.status_code == 413
    assert too_big.headers["x-request-id"] == "big-one"
    assert (await client.get("/nope", headers={"X-Request-ID": "r404"})).headers["x-request-id"] == "r404"


async def test_access_log_lines_carry_request_id_model_status_and_duration(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="service.access")
    await client.post("/generate", json={"model": GRAY, "label": 99}, headers={"X-Request-ID": "bad-label"})
    await client.post("/generate", json={"model": GRAY, "label": 1}, headers={"X-Request-ID": "good"})
    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(r)) for r in caplog.records if r.name == "service.access"]
    by_id = {line["request_id"]: line for line in lines}
    assert by_id["good"]["status"] == 200
    assert by_id["good"]["model"] == GRAY
    assert by_id["good"]["msg"] == "POST /generate 200"
    assert by_id["good"]["duration_ms"] > 0
    assert by_id["bad-label"]["status"] == 422
    assert by_id["bad-label"]["model"] == GRAY
    for line in lines:
        assert {"ts", "level", "logger", "msg", "request_id", "model", "status", "duration_ms"} <= set(line)


async def test_no_access_line_when_its_level_is_off(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="service.access")
    resp = await client.post("/generate", json={"model": GRAY, "label": 1}, headers={"X-Request-ID": "quiet"})
    assert resp.status_code == 200
    assert not [r for r in caplog.records if r.name == "service.access"]


def test_json_formatter_one_object_per_line_with_exception_and_context() -> None:
    formatter = JsonFormatter()
    logger = logging.getLogger("service.test")
    token = request_id_var.set("ctx-id")
    try:
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            record = logger.makeRecord("service.test", logging.ERROR, __file__, 1, "failed: %s", ("x",), None)
            import sys

            record.exc_info = sys.exc_info()
        text = formatter.format(record)
    finally:
        request_id_var.reset(token)
    assert "\n" not in text
    doc = json.loads(text)
    assert doc["msg"] == "failed: x"
    assert doc["level"] == "error"
    assert doc["logger"] == "service.test"
    assert doc["request_id"] == "ctx-id"
    assert "ValueError: boom" in doc["exc"]
    assert doc["ts"].endswith("+00:00")
