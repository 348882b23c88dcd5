"""Every error leaves as {"error": {"type", "message"}} with the right status, and leaks nothing."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

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
from tests.service.process import run_service

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
    for leak in ("Traceback", 'File "', "/tmp", "/work", ".py", "site-packages", "service/"):
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
    ("body_empty_object", {}, "model"),
    ("body_null", None, "body"),
    ("body_string", "model", "body"),
    # wrong types
    ("model_not_string", {"model": 7}, "model"),
    ("model_null", {"model": None}, "model"),
    ("n_string", {"model": UNCOND, "n": "4"}, "n"),
    ("n_float", {"model": UNCOND, "n": 2.5}, "n"),
    ("seed_float", {"model": UNCOND, "seed": 1.5}, "seed"),
    ("seed_bool", {"model": UNCOND, "seed": True}, "seed"),
    ("z_object", {"model": UNCOND, "z": {"a": 1}}, "z"),
    ("z_string", {"model": UNCOND, "z": "0.1,0.2"}, "z"),
    ("labels_string", {"model": GRAY, "labels": "123"}, "labels"),
    ("labels_empty", {"model": GRAY, "labels": []}, "labels"),
    ("label_list", {"model": GRAY, "label": [1]}, "label"),
    ("label_float", {"model": GRAY, "label": 1.0}, "label"),
    ("label_empty_name", {"model": GRAY, "label": ""}, "label"),
    ("truncation_string", {"model": UNCOND, "truncation": "1"}, "truncation"),
    # huge and negative numbers
    ("n_huge", {"model": UNCOND, "n": 10**30}, "n"),
    ("n_negative", {"model": UNCOND, "n": -5}, "n"),
    ("seed_huge", {"model": UNCOND, "seed": 10**400}, "seed"),
    ("label_huge", {"model": GRAY, "label": 10**30}, "label"),
    ("label_very_negative", {"model": GRAY, "label": -(10**30)}, "label"),
    ("truncation_negative", {"model": UNCOND, "truncation": -1.0}, "truncation"),
    ("truncation_huge", {"model": UNCOND, "truncation": 1e300}, "truncation"),
    ("z_max_float64", {"model": UNCOND, "z": [1.7976931348623157e308] * UNCOND_DIM}, "float32"),
    # ragged and empty latents
    ("z_ragged_mixed", {"model": UNCOND, "z": [[0.1] * UNCOND_DIM, 0.3]}, "z"),
    ("z_nested_too_deep", {"model": UNCOND, "z": [[[0.1] * UNCOND_DIM]]}, "z"),
    ("z_empty", {"model": UNCOND, "z": []}, "z"),
    ("z_empty_vector", {"model": UNCOND, "z": [[]]}, "z"),
    ("z_null_item", {"model": UNCOND, "z": [None] * UNCOND_DIM}, "z"),
    # labels and models
    ("labels_on_unconditional_by_name", {"model": UNCOND, "labels": ["zero"]}, "unconditional"),
    ("labels_length_vs_z", {"model": GRAY, "labels": [1, 2], "z": [[0.0] * GRAY_DIM]}, "labels"),
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


async def test_truncation_below_the_floor_is_422_at_once(zoo: Path) -> None:
    """In a real process, which the test kills if it hangs: a tiny truncation once looped forever
    on the event loop, deaf to /healthz, timeouts and SIGTERM."""
    with run_service(zoo) as service:
        async with httpx.AsyncClient(base_url=service.url, timeout=5.0) as client:
            for path in ("/generate", "/grid", "/interpolate"):
                resp = await client.post(path, json={"model": UNCOND, "truncation": 1e-5})
                assert_error(resp, 422, "invalid_request", "truncation", "0.1")
            assert (await client.get("/healthz")).status_code == 200
        service.signal(signal.SIGTERM)
        service.wait(timeout_s=11.0)  # drain_timeout_s + 1, or TimeoutExpired fails the test


async def test_an_oversized_accept_header_is_406_without_parsing(client: httpx.AsyncClient) -> None:
    accept = "application/x-a;q=0.1, " * 20_000 + "image/png"
    resp = await client.post("/generate", json={"model": UNCOND}, headers={"accept": accept}, timeout=5.0)
    assert_error(resp, 406, "not_acceptable", "at most 4096")
    ok = await client.post("/generate", json={"model": UNCOND}, headers={"accept": "image/png"})
    assert ok.status_code == 200


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
        ("/grid", {"model": UNCOND, "labels": [1]}, "takes no labels"),
        ("/grid", {"model": GRAY, "rows": 2}, "row per label"),
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


# --------------------------------------------------------------------------- raw bodies
def _raw(client: httpx.AsyncClient, body: bytes, content_type: str = "application/json") -> Any:
    return client.post("/generate", content=body, headers={"content-type": content_type})


RAW_BODIES = [
    ("not_utf8", b'{"model": "\xff\xfe"}', "not UTF-8"),
    ("latin1_bytes", '{"model": "ünc"}'.encode("latin-1"), "not UTF-8"),
    ("truncated", b'{"model": "uncond", "z": [0.1, ', "invalid JSON"),
    ("trailing_garbage", b'{"model": "uncond"} x', "invalid JSON"),
    ("single_quotes", b"{'model': 'uncond'}", "invalid JSON"),
    ("float_overflows_to_inf", b'{"model": "uncond", "truncation": 1e400}', "truncation"),
    ("nan_literal_seed", b'{"model": "uncond", "seed": NaN}', "seed"),
    ("duplicate_keys", b'{"model": "uncond", "model": 5}', "model"),
    ("bare_number", b"42", "body"),
]


@pytest.mark.parametrize(("raw", "needle"), [c[1:] for c in RAW_BODIES], ids=[c[0] for c in RAW_BODIES])
async def test_malformed_bodies_are_422(client: httpx.AsyncClient, raw: bytes, needle: str) -> None:
    assert_error(await _raw(client, raw), 422, "invalid_request", needle)


@pytest.mark.parametrize("depth", [100_000, 1_000_000])
async def test_pathological_nesting_is_bounded(serve: Serve, zoo: Path, depth: int) -> None:
    """Deep nesting is refused before parsing when it is arrays (more of them than any request
    holds), by the parser's recursion guard when it is objects (the body limit comes first when
    the body is larger); no crash, a prompt 422, and the server keeps serving."""
    async with serve(make_settings(zoo, max_body_bytes=4 * 1024 * 1024)) as (_, client):
        loop = asyncio.get_running_loop()
        started = loop.time()
        nested = b'{"model": "uncond", "z": ' + b"[" * depth + b"]" * depth + b"}"
        assert_error(await _raw(client, nested), 422, "invalid_request", "JSON arrays")
        objects = b'{"a": ' * (depth // 10) + b"1" + b"}" * (depth // 10)
        assert_error(await _raw(client, objects), 422, "invalid_request", "nested too deeply")
        digits = b'{"model": "uncond", "seed": ' + b"9" * 5000 + b"}"  # past int()'s 4300-digit guard
        assert_error(await _raw(client, digits), 422, "invalid_request", "invalid JSON")
        assert loop.time() - started < 5.0
        assert (await client.post("/generate", json={"model": UNCOND, "seed": 1})).status_code == 200


async def test_nesting_over_the_body_limit_is_413_before_parsing(client: httpx.AsyncClient) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000  # 200 kB, over this fixture's 4 kB limit
    assert_error(await _raw(client, deep), 413, "body_too_large", "4096")


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "",
    ],
)
async def test_wrong_content_type_is_422(client: httpx.AsyncClient, content_type: str) -> None:
    body = b'{"model": "uncond", "seed": 1}'
    headers = {"content-type": content_type} if content_type else {}
    resp = await client.post("/generate", content=body, headers=headers)
    assert_error(resp, 422, "invalid_request", "Content-Type: application/json")


async def test_no_body_is_422(client: httpx.AsyncClient) -> None:
    assert_error(await client.post("/generate"), 422, "invalid_request")
    assert_error(await client.post("/grid", content=b""), 422, "invalid_request")


@pytest.mark.parametrize("name", ["../uncond", "UNCOND", "a" * 129, "uncond/../uncond", "", " uncond"])
async def test_invalid_model_names_are_404_or_422(client: httpx.AsyncClient, name: str) -> None:
    resp = await client.post("/generate", json={"model": name})
    if not name or len(name) > 128:
        assert_error(resp, 422, "invalid_request", "model")
    else:
        assert_error(resp, 404, "unknown_model")


async def test_body_limit_is_configurable(serve: Serve, zoo: Path) -> None:
    body = json.dumps({"model": UNCOND, "z": [0.5] * UNCOND_DIM}).encode()
    async with serve(make_settings(zoo, max_body_bytes=1024)) as (_, small):
        assert len(body) < 1024
        assert (await _raw(small, body)).status_code == 200
        padded = body[:-1] + b" " * 1100 + b"}"
        assert_error(await _raw(small, padded), 413, "body_too_large", "1024")


@pytest.mark.parametrize(
    ("field", "items"),
    [("labels", "true"), ("labels", "[]"), ("z", '"a"'), ("z", '["a", "b"]')],
)
async def test_a_body_of_invalid_items_is_one_error(
    client: httpx.AsyncClient, field: str, items: str
) -> None:
    # As many bad items as the body limit allows: the answer names the first and stops there.
    count = 3_900 // (len(items) + 2)
    raw = f'{{"model": "{UNCOND}", "{field}": [{", ".join([items] * count)}]}}'
    resp = await client.post("/generate", content=raw, headers={"content-type": "application/json"})
    assert_error(resp, 422, "invalid_request", f"{field}[0]")
    message = resp.json()["error"]["message"]
    assert f"{field}[1]" not in message
    assert len(message) < 1000
