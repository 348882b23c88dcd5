"""The generation fast path: it answers exactly as the FastAPI routes do, and skips them."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from unittest import mock

import fastapi.routing
import pytest

from service import fastpath
from tests.service.conftest import GRAY, RGB, UNCOND, make_settings, serve_app

JSON = {"content-type": "application/json"}
NPY = {"accept": "application/x-npy"}

# (path, raw body, headers): successes and every kind of client error the endpoints can give.
CASES: list[tuple[str, bytes, dict[str, str]]] = [
    ("/generate", b'{"model": "%s", "label": 3, "seed": 7}' % GRAY.encode(), JSON),
    ("/generate", b'{"model": "%s", "label": 1, "seed": 7, "n": 5}' % RGB.encode(), JSON),
    (
        "/generate",
        b'{"model": "%s", "seed": 9, "n": 3}' % UNCOND.encode(),
        {**JSON, "accept": "application/x-npy"},
    ),
    (
        "/generate",
        b'{"model": "%s", "label": 2, "seed": 1, "n": 2}' % GRAY.encode(),
        {**JSON, "accept": "application/json"},
    ),
    (
        "/generate",
        b'{"model": "%s", "label": 4, "z": [%s]}' % (GRAY.encode(), b", ".join([b"0.5"] * 16)),
        JSON,
    ),
    (
        "/generate",
        b'{"model": "%s", "label": 2, "seed": 1, "n": 2, "offset": 5}' % GRAY.encode(),
        {**JSON, "accept": "application/json"},
    ),
    ("/grid", b'{"model": "%s", "seed": 3, "columns": 2}' % GRAY.encode(), JSON),
    ("/interpolate", b'{"model": "%s", "label": 0, "seeds": [1, 2], "steps": 4}' % RGB.encode(), JSON),
    # Errors the fast path answers itself (they arise after validation):
    ("/generate", b'{"model": "no-such-model", "label": 3}', JSON),
    ("/generate", b'{"model": "%s", "label": 3}' % GRAY.encode(), {**JSON, "accept": "text/html"}),
    ("/generate", b'{"model": "%s", "label": 99}' % GRAY.encode(), JSON),  # checked against the card
    ("/generate", b'{"model": "%s", "label": 3, "n": 2, "offset": %d}' % (GRAY.encode(), 2**63 - 1), JSON),
    # Errors of a body that does not validate (the fast path words them as FastAPI would, without
    # parsing the body again), or that is not JSON (left to FastAPI):
    ("/generate", b'{"model": "%s", "label": 3, "n": 0}' % GRAY.encode(), JSON),
    ("/generate", b'{"model": "%s", "label": 3, "seed": "x"}' % GRAY.encode(), JSON),
    ("/generate", b'{"model": "%s", "label": 3, "z": [1, 2]}' % GRAY.encode(), JSON),
    ("/generate", b'{"model": "%s", "label": 3, "n": "4"}' % GRAY.encode(), JSON),
    ("/generate", b'{"model": "%s", "label": 3, "seed": true}' % GRAY.encode(), JSON),
    ("/generate", b'{"model": "%s", "label": 3, "offset": -1}' % GRAY.encode(), JSON),
    ("/generate", b'{"model": "%s", "label": 3, "n": 2.5}' % GRAY.encode(), JSON),
    (
        "/generate",
        b'{"model": "%s", "label": 3, "z": [%s]}' % (GRAY.encode(), b", ".join([b"NaN"] * 16)),
        JSON,
    ),
    ("/generate", b'{"model": "%s", "label": 3,', JSON),
    ("/generate", b"[1, 2, 3]", JSON),
    ("/generate", b"", JSON),
    ("/generate", b'{"model": "%s", "label": 3}' % GRAY.encode(), {"content-type": "text/plain"}),
    ("/generate", b'{"model": "%s", "label": 3}' % GRAY.encode(), {}),
    ("/generate", b'{"model": "%s", "label": 3, "extra": 1}' % GRAY.encode(), JSON),
    ("/grid", b'{"model": "%s", "columns": 0}' % GRAY.encode(), JSON),
    ("/interpolate", b'{"model": "%s", "label": 0, "seeds": [1]}' % RGB.encode(), JSON),
    ("/generate", b'{"model": "%s", "labels": [%s]}' % (GRAY.encode(), b", ".join([b"true"] * 300)), JSON),
    ("/generate", b'{"model": "%s", "z": [%s]}' % (GRAY.encode(), b", ".join([b'"a"'] * 300)), JSON),
    ("/grid", b'{"model": "%s", "z": [%s]}' % (GRAY.encode(), b", ".join([b"[]"] * 300)), JSON),
]

COMPARED_HEADERS = ("content-type", "x-condgen-seed", "x-condgen-model", "retry-after", "vary")


async def _answers(zoo: Path, fast_path: bool) -> list[tuple[int, dict[str, str], bytes]]:
    settings = make_settings(zoo, fast_path=fast_path)
    out = []
    async with serve_app(settings) as (_, client):
        for path, body, headers in CASES:
            response = await client.post(path, content=body, headers=headers)
            kept = {k: response.headers[k] for k in COMPARED_HEADERS if k in response.headers}
            out.append((response.status_code, kept, response.content))
    return out


async def test_fast_path_answers_byte_for_byte_as_the_fastapi_routes(zoo: Path) -> None:
    fast = await _answers(zoo, fast_path=True)
    routed = await _answers(zoo, fast_path=False)
    statuses = [status for status, _, _ in fast]
    assert statuses[:8] == [200] * 8
    assert statuses[8:11] == [404, 406, 422]
    assert all(status == 422 for status in statuses[10:])
    for case, a, b in zip(CASES, fast, routed, strict=True):
        assert a == b, f"{case[0]} {case[1]!r} {case[2]}"


@pytest.mark.parametrize(
    ("body", "headers", "reaches_fastapi"),
    [
        (b'{"model": "%s", "label": 3, "seed": 7}' % GRAY.encode(), JSON, False),
        (b'{"model": "no-such-model", "label": 3}', JSON, False),
        (b'{"model": "%s", "label": 99}' % GRAY.encode(), JSON, False),  # 422 from the card check
        (b'{"model": "%s", "label": 3, "n": 0}' % GRAY.encode(), JSON, False),  # validated once
        (b'{"model": "%s", "label": 3}' % GRAY.encode(), {"content-type": "text/plain"}, True),
    ],
)
async def test_valid_json_bodies_skip_fastapis_request_handling(
    zoo: Path, body: bytes, headers: dict[str, str], reaches_fastapi: bool
) -> None:
    solve = mock.Mock(wraps=fastapi.routing.solve_dependencies)
    with mock.patch.object(fastapi.routing, "solve_dependencies", solve):
        async with serve_app(make_settings(zoo)) as (_, client):
            response = await client.post("/generate", content=body, headers=headers)
    assert response.status_code in {200, 404, 422}
    assert solve.called is reaches_fastapi


async def test_fast_path_keeps_the_middleware_around_it(zoo: Path) -> None:
    """Request IDs, metrics and the API key apply to fast-path answers as to routed ones."""
    body: dict[str, Any] = {"model": GRAY, "label": 3, "seed": 7}
    async with serve_app(make_settings(zoo, api_key="k" * 32)) as (_, client):
        refused = await client.post("/generate", json=body)
        assert refused.status_code == 401
        ok = await client.post(
            "/generate", json=body, headers={"authorization": "Bearer " + "k" * 32, "x-request-id": "abc-1"}
        )
        assert ok.status_code == 200
        assert ok.headers["x-request-id"] == "abc-1"
        metrics = (await client.get("/metrics")).text
    assert f'condgen_requests_total{{model="{GRAY}",status="200"}} 1.0' in metrics
    assert 'condgen_requests_total{model="unknown",status="401"} 1.0' in metrics


async def test_a_body_of_more_arrays_than_any_request_needs_is_refused_unparsed(zoo: Path) -> None:
    # 30,000 empty lists (90 KB): parsing them would build a Python list each before any cap applies.
    body = b'{"model": "%s", "z": [%s]}' % (UNCOND.encode(), b",".join([b"[]"] * 30_000))
    async with serve_app(make_settings(zoo, max_body_bytes=1 << 20)) as (_, client):
        resp = await client.post("/generate", content=body, headers=JSON)
        assert resp.status_code == 422
        assert "more than 16392 JSON arrays" in resp.json()["error"]["message"]
        # Large bodies that do validate are served as any other, one validation at a time.
        padded = (json.dumps({"model": UNCOND, "z": [[0.25] * 12] * 64}) + " " * 70_000).encode()
        answers = await asyncio.gather(
            *(client.post("/generate", content=padded, headers={**JSON, **NPY}) for _ in range(4))
        )
        assert [a.status_code for a in answers] == [200] * 4
        assert len({a.content for a in answers}) == 1


async def test_the_heap_is_trimmed_once_after_a_burst_of_large_bodies(
    zoo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trims: list[float] = []
    monkeypatch.setattr(fastpath, "trim_heap", lambda: trims.append(time.monotonic()) or True)
    padded = (json.dumps({"model": UNCOND, "seed": 1}) + " " * 70_000).encode()
    small = json.dumps({"model": UNCOND, "seed": 1}).encode()
    async with serve_app(make_settings(zoo, max_body_bytes=1 << 20)) as (_, client):
        await client.post("/generate", content=small, headers=JSON)
        await asyncio.sleep(fastpath.TRIM_AFTER_S * 2)
        assert trims == []  # small bodies never trim
        last = 0.0
        for _ in range(3):
            assert (await client.post("/generate", content=padded, headers=JSON)).status_code == 200
            last = time.monotonic()
        await asyncio.sleep(fastpath.TRIM_AFTER_S * 3)
    assert len(trims) == 1  # one trim for the burst, once it was over
    assert trims[0] >= last + fastpath.TRIM_AFTER_S * 0.9


async def test_a_large_invalid_body_is_counted_for_the_model_it_names_first(zoo: Path) -> None:
    bad = b'{"model": "%s", "seed": "x"}' % UNCOND.encode() + b" " * 70_000
    async with serve_app(make_settings(zoo, max_body_bytes=1 << 20)) as (_, client):
        assert (await client.post("/generate", content=bad, headers=JSON)).status_code == 422
        metrics = (await client.get("/metrics")).text
    assert f'condgen_requests_total{{model="{UNCOND}",status="422"}} 1.0' in metrics
