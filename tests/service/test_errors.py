"""Every error leaves as {"error": {"type", "message"}} with the right status, and leaks nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from service.errors import (
    InvalidRequest,
    QueueFull,
    ServiceError,
    error_payload,
    validation_message,
)
from tests.service.conftest import GRAY, RGB, UNCOND, Serve, make_settings

GRAY_DIM, UNCOND_DIM = 16, 12


def assert_error(resp: httpx.Response, status: int, error_type: str, *needles: str) -> str:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == error_type
    message: str = body["error"]["message"]
    assert message
    for needle in needles:
        assert needle in message, message
    for leak in ("Traceback", 'File "', "/tmp", "site-packages", "service/"):
        assert leak not in resp.text
    return message


# (case id, body, expected field or text in the message)
INVALID_BODIES = [
    ("label_out_of_range", {"model": GRAY, "label": 10}, "out of range"),
    ("label_negative", {"model": GRAY, "label": -1}, "out of range"),
    ("label_unknown_name", {"model": GRAY, "label": "eleven"}, "unknown label"),
    ("label_on_unconditional", {"model": UNCOND, "label": 1}, "unconditional"),
    ("labels_on_unconditional", {"model": UNCOND, "labels": [1]}, "unconditional"),
    ("label_missing_on_conditional", {"model": GRAY, "seed": 1}, "conditional"),
    ("labels_item_out_of_range", {"model": RGB, "labels": [0, 3]}, "labels[1]"),
    ("label_bool", {"model": GRAY, "label": True}, "label"),
    ("label_and_labels", {"model": GRAY, "label": 1, "labels": [1]}, "not both"),
    ("z_wrong_length", {"model": UNCOND, "z": [0.1] * 5}, "z[0]"),
    ("z_second_wrong_length", {"model": UNCOND, "z": [[0.1] * UNCOND_DIM, [0.1] * 3]}, "z[1]"),
    ("z_not_numbers", {"model": UNCOND, "z": ["a"] * UNCOND_DIM}, "z"),
    ("z_overflows_float32", {"model": UNCOND, "z": [1e39] * UNCOND_DIM}, "float32"),
    ("z_and_seed", {"model": UNCOND, "z": [0.0] * UNCOND_DIM, "seed": 1}, "either z or seed"),
    ("z_and_truncation", {"model": UNCOND, "z": [0.0] * UNCOND_DIM, "truncation": 1.0}, "truncation"),
    ("n_too_large", {"model": UNCOND, "n": 65}, "n: at most 64"),
    ("n_zero", {"model": UNCOND, "n": 0}, "n"),
    ("n_disagrees_with_labels", {"model": GRAY, "labels": [1, 2], "n": 3}, "n=3"),
    ("too_many_labels", {"model": GRAY, "labels": [1] * 65}, "labels: at most 64"),
    ("seed_negative", {"model": UNCOND, "seed": -1}, "seed"),
    ("seed_too_big", {"model": UNCOND, "seed": 2**63}, "seed"),
    ("truncation_zero", {"model": UNCOND, "truncation": 0}, "truncation"),
    ("unknown_field", {"model": UNCOND, "seeds": 3}, "seeds"),
    ("model_missing", {"seed": 1}, "model"),
    ("body_not_object", [1, 2], "body"),
]


@pytest.fixture
async def client(serve: Serve, zoo: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(make_settings(zoo, max_body_bytes=4096)) as (_, c):
        yield c


@pytest.mark.parametrize(
    ("body", "needle"), [c[1:] for c in INVALID_BODIES], ids=[c[0] for c in INVALID_BODIES]
)
async def test_invalid_generate_bodies_are_422(client: httpx.AsyncClient, body: object, needle: str) -> None:
    assert_error(await client.post("/generate", json=body), 422, "invalid_request", needle)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
async def test_non_finite_latents_are_422(client: httpx.AsyncClient, literal: str) -> None:
    values = ", ".join(["0.5"] * (UNCOND_DIM - 1) + [literal])
    raw = f'{{"model": "{UNCOND}", "z": [{values}]}}'
    resp = await client.post("/generate", content=raw, headers={"content-type": "application/json"})
    assert_error(resp, 422, "invalid_request", f"z[0][{UNCOND_DIM - 1}]", "finite")


async def test_nan_truncation_is_422(client: httpx.AsyncClient) -> None:
    raw = f'{{"model": "{UNCOND}", "truncation": NaN}}'
    resp = await client.post("/generate", content=raw, headers={"content-type": "application/json"})
    assert_error(resp, 422, "invalid_request", "truncation")


async def test_malformed_json_is_422(client: httpx.AsyncClient) -> None:
    resp = await client.post("/generate", content=b'{"model": ', headers={"content-type": "application/json"})
    assert_error(resp, 422, "invalid_request")


async def test_unknown_model_is_404(client: httpx.AsyncClient) -> None:
    resp = await client.post("/generate", json={"model": "cdcgan-mnist", "label": 1})
    assert_error(resp, 404, "unknown_model", "cdcgan-mnist", GRAY)
    assert_error(await client.post("/grid", json={"model": "x"}), 404, "unknown_model")
    assert_error(await client.post("/interpolate", json={"model": "x"}), 404, "unknown_model")


async def test_body_too_large_by_content_length_is_413(client: httpx.AsyncClient) -> None:
    body = json.dumps({"model": UNCOND, "z": [0.123456789] * 1000}).encode()
    assert len(body) > 4096
    resp = await client.post("/generate", content=body, headers={"content-type": "application/json"})
    assert_error(resp, 413, "body_too_large", "4096")


async def test_body_too_large_when_streamed_without_length_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"model": "uncond", "z": ['
        for _ in range(200):
            yield b"0.1234567890123, " * 10
        yield b"0]}"

    resp = await client.post("/generate", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in resp.request.headers  # really streamed (chunked)
    assert_error(resp, 413, "body_too_large")


@pytest.mark.parametrize("accept", ["text/html", "image/jpeg", "application/xml", "image/png;q=0"])
async def test_unsupported_accept_is_406(client: httpx.AsyncClient, accept: str) -> None:
    resp = await client.post("/generate", json={"model": UNCOND}, headers={"accept": accept})
    assert_error(resp, 406, "not_acceptable", "image/png", "application/json", "application/x-npy")


async def test_unknown_route_and_method_are_json(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/nope"), 404, "not_found", "/nope")
    assert_error(await client.get("/generate"), 405, "method_not_allowed")
    assert_error(await client.delete("/models"), 405, "method_not_allowed")


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/grid", {"model": UNCOND}, "unconditional"),
        ("/grid", {"model": GRAY, "columns": 30}, "256"),
        ("/grid", {"model": GRAY, "labels": ["zero", "ten"]}, "labels[1]"),
        ("/grid", {"model": GRAY, "z": [[0.0] * 3]}, "z[0]"),
        ("/interpolate", {"model": GRAY, "seeds": [1, 2]}, "conditional"),
        ("/interpolate", {"model": UNCOND, "seeds": [1]}, "seeds"),
        ("/interpolate", {"model": UNCOND, "steps": 1}, "steps"),
        ("/interpolate", {"model": UNCOND, "steps": 1000}, "steps: at most 256"),
        ("/interpolate", {"model": UNCOND, "z": [[0.0] * UNCOND_DIM, [0.0] * 2]}, "z[1]"),
    ],
)
async def test_grid_and_interpolate_validation(
    client: httpx.AsyncClient, path: str, body: dict[str, object], needle: str
) -> None:
    assert_error(await client.post(path, json=body), 422, "invalid_request", needle)


def test_error_shapes_and_retry_after() -> None:
    assert error_payload("x", "y") == {"error": {"type": "x", "message": "y"}}
    assert QueueFull("full", retry_after_s=0.2).headers() == {"Retry-After": "1"}
    assert QueueFull("full", retry_after_s=2.1).headers() == {"Retry-After": "3"}
    assert InvalidRequest("bad").headers() == {}
    assert ServiceError("x").status_code == 500


def test_validation_message_names_fields() -> None:
    errors = [
        {"loc": ("body", "z", 0, 3), "msg": "Input should be a finite number"},
        {"loc": ("body",), "msg": "Value error, give either z or seed"},
    ]
    assert (
        validation_message(errors) == "z[0][3]: Input should be a finite number; body: give either z or seed"
    )
    assert validation_message([{"loc": (), "msg": "Invalid JSON"}], root="card") == "card: Invalid JSON"
