"""The Open Inference Protocol (KServe v2) under /v2: metadata, JSON and binary tensors, errors,
and the same pixels as /generate through the same batcher. The tritonclient tests use a real
third-party client against a real server."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import random
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from service.errors import InvalidRequest, ModelNotReady, QueueFull, ServiceError, error_response
from service.v2 import HEADER_LENGTH, response_coding
from tests.service.conftest import GRAY, RGB, UNCOND, Serve, eventually, make_settings
from tests.service.live import live_zoo
from tests.service.runners import GatedRunner, wrapping

TIMEOUT_S = 10.0
NPY = {"accept": "application/x-npy"}
DIMS = {GRAY: 16, RGB: 8, UNCOND: 12}


def npy(resp: httpx.Response) -> np.ndarray:
    assert resp.status_code == 200, resp.text
    return np.load(io.BytesIO(resp.content), allow_pickle=False)


def latents(model: str, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIMS[model])).astype(np.float32)


def json_request(z: np.ndarray, labels: np.ndarray | None, **extra: Any) -> dict[str, Any]:
    inputs: list[dict[str, Any]] = [
        {"name": "z", "datatype": "FP32", "shape": list(z.shape), "data": z.reshape(-1).tolist()}
    ]
    if labels is not None:
        inputs.append({"name": "label", "datatype": "INT64", "shape": [len(labels)], "data": labels.tolist()})
    return {"inputs": inputs, **extra}


def binary_request(
    z: np.ndarray, labels: np.ndarray | None, *, binary_output: bool = True
) -> tuple[bytes, dict[str, str]]:
    """A request in the binary tensor data extension, built by hand (not by a client library)."""
    raw = [z.astype("<f4").tobytes()]
    inputs: list[dict[str, Any]] = [
        {
            "name": "z",
            "datatype": "FP32",
            "shape": list(z.shape),
            "parameters": {"binary_data_size": len(raw[0])},
        }
    ]
    if labels is not None:
        raw.append(labels.astype("<i8").tobytes())
        inputs.append(
            {
                "name": "label",
                "datatype": "INT64",
                "shape": [len(labels)],
                "parameters": {"binary_data_size": len(raw[1])},
            }
        )
    header = orjson.dumps(
        {"inputs": inputs, "outputs": [{"name": "image", "parameters": {"binary_data": binary_output}}]}
    )
    return header + b"".join(raw), {
        HEADER_LENGTH: str(len(header)),
        "content-type": "application/octet-stream",
    }


def image_of(resp: httpx.Response) -> np.ndarray:
    """The ``image`` output of a v2 response, JSON or binary."""
    assert resp.status_code == 200, resp.text
    if HEADER_LENGTH.lower() in resp.headers:
        size = int(resp.headers[HEADER_LENGTH])
        doc = orjson.loads(resp.content[:size])
        (out,) = doc["outputs"]
        assert out["parameters"]["binary_data_size"] == len(resp.content) - size
        return np.frombuffer(resp.content[size:], dtype=np.uint8).reshape(out["shape"])
    doc = resp.json()
    (out,) = doc["outputs"]
    assert out["name"] == "image"
    assert out["datatype"] == "UINT8"
    return np.asarray(out["data"], dtype=np.uint8).reshape(out["shape"])


def generate_body(model: str, z: np.ndarray, labels: np.ndarray | None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "z": z.tolist()}
    if labels is not None:
        body["labels"] = labels.tolist()
    return body


async def generate_npy(
    client: httpx.AsyncClient, model: str, z: np.ndarray, labels: np.ndarray | None
) -> np.ndarray:
    return npy(await client.post("/generate", json=generate_body(model, z, labels), headers=NPY))


# --------------------------------------------------------------------------- metadata and health
async def test_server_and_model_metadata(client: httpx.AsyncClient) -> None:
    server = (await client.get("/v2")).json()
    assert server["name"] == "condgen"
    assert "binary_tensor_data" in server["extensions"]
    assert (await client.get("/v2/health/live")).json() == {"live": True}
    ready = await client.get("/v2/health/ready")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})

    gray = (await client.get(f"/v2/models/{GRAY}")).json()
    assert gray == {
        "name": GRAY,
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [
            {"name": "z", "datatype": "FP32", "shape": [-1, 16]},
            {"name": "label", "datatype": "INT64", "shape": [-1]},
        ],
        "outputs": [{"name": "image", "datatype": "UINT8", "shape": [-1, 1, 8, 8]}],
    }
    rgb = (await client.get(f"/v2/models/{RGB}/versions/1")).json()
    assert rgb["outputs"][0]["shape"] == [-1, 3, 6, 10]
    uncond = (await client.get(f"/v2/models/{UNCOND}")).json()
    assert [t["name"] for t in uncond["inputs"]] == ["z"]

    model_ready = await client.get(f"/v2/models/{GRAY}/ready")
    assert (model_ready.status_code, model_ready.json()) == (200, {"name": GRAY, "ready": True})
    assert (await client.get(f"/v2/models/{GRAY}/versions/1/ready")).status_code == 200


@pytest.mark.parametrize(
    "path",
    ["/v2/models/nope", "/v2/models/nope/ready", f"/v2/models/{GRAY}/versions/7", "/v2/nowhere"],
)
async def test_unknown_models_versions_and_routes_are_404_in_the_protocol_shape(
    client: httpx.AsyncClient, path: str
) -> None:
    resp = await client.get(path)
    assert resp.status_code == 404
    assert isinstance(resp.json()["error"], str)
    infer = await client.post(
        path.removesuffix("/ready") + "/infer", json=json_request(latents(GRAY, 1), None)
    )
    assert infer.status_code == 404
    assert isinstance(infer.json()["error"], str)


async def test_not_ready_server_and_model_answer_503(serve: Serve, zoo: Path) -> None:
    async with serve(make_settings(zoo)) as (app, client):
        app.state.resources.closing = True
        ready = await client.get("/v2/health/ready")
        assert (ready.status_code, ready.json()) == (503, {"ready": False})
        model = await client.get(f"/v2/models/{GRAY}/ready")
        assert (model.status_code, model.json()) == (503, {"name": GRAY, "ready": False})
        refused = await client.post(
            f"/v2/models/{GRAY}/infer", json=json_request(latents(GRAY, 1), np.array([1]))
        )
        assert refused.status_code == 503
        assert "shutting down" in refused.json()["error"]
        assert (await client.get("/v2/health/live")).status_code == 200


class ProtocolError:
    """What the one error exit answers for ``exc`` on an inference route: status, headers, response."""

    def __init__(self, exc: ServiceError) -> None:
        self._response = error_response(f"/v2/models/{GRAY}/infer", exc)
        self.status_code = self._response.status_code
        self.headers = {
            key.title(): value
            for key, value in self._response.headers.items()
            if key not in {"content-length", "content-type"}
        }

    def response(self) -> Any:
        return self._response


def from_service_error(exc: ServiceError) -> ProtocolError:
    return ProtocolError(exc)


def test_service_errors_map_to_protocol_errors() -> None:
    full = from_service_error(QueueFull("queue full", retry_after_s=2.5))
    assert (full.status_code, full.headers) == (429, {"Retry-After": "3"})
    assert from_service_error(InvalidRequest("bad")).status_code == 400
    not_ready = from_service_error(ModelNotReady("later"))
    assert not_ready.status_code == 503
    assert json.loads(not_ready.response().body) == {"error": "later"}


# --------------------------------------------------------------------------- inference
@pytest.mark.parametrize("model", [GRAY, RGB, UNCOND])
async def test_json_inference_equals_generate(client: httpx.AsyncClient, model: str) -> None:
    z = latents(model, 5, seed=1)
    labels = None if model == UNCOND else np.array([0, 2, 1, 2, 0])
    resp = await client.post(f"/v2/models/{model}/infer", json=json_request(z, labels, id="req-1"))
    assert resp.headers["content-type"] == "application/json"
    doc = resp.json()
    assert (doc["model_name"], doc["model_version"], doc["id"]) == (model, "1", "req-1")
    assert np.array_equal(image_of(resp), await generate_npy(client, model, z, labels))


async def test_binary_inference_equals_generate(client: httpx.AsyncClient) -> None:
    z = latents(GRAY, 7, seed=2)
    labels = np.arange(7) % 10
    body, headers = binary_request(z, labels)
    resp = await client.post(f"/v2/models/{GRAY}/versions/1/infer", content=body, headers=headers)
    assert resp.headers["content-type"] == "application/octet-stream"
    assert np.array_equal(image_of(resp), await generate_npy(client, GRAY, z, labels))
    # Binary inputs, JSON output.
    body, headers = binary_request(z, labels, binary_output=False)
    as_json = await client.post(f"/v2/models/{GRAY}/infer", content=body, headers=headers)
    assert HEADER_LENGTH.lower() not in as_json.headers
    assert np.array_equal(image_of(as_json), image_of(resp))


@pytest.mark.parametrize("model", [GRAY, RGB, UNCOND])
async def test_binary_output_bytes_are_the_npy_pixel_bytes_of_generate(
    client: httpx.AsyncClient, model: str
) -> None:
    """Byte for byte: v2's raw output tensor is the data of /generate's NPY for the same z and labels."""
    z = latents(model, 4, seed=8)
    labels = None if model == UNCOND else np.array([1, 0, 2, 1])
    body, headers = binary_request(z, labels)
    resp = await client.post(f"/v2/models/{model}/infer", content=body, headers=headers)
    assert resp.status_code == 200, resp.text
    tensor = resp.content[int(resp.headers[HEADER_LENGTH]) :]
    npy_payload = await client.post("/generate", json=generate_body(model, z, labels), headers=NPY)
    pixels = np.load(io.BytesIO(npy_payload.content))
    assert pixels.dtype == np.uint8
    assert pixels.flags.c_contiguous
    assert tensor == pixels.tobytes()
    assert npy_payload.content.endswith(tensor)  # the NPY file is its header, then these bytes


async def test_seeded_latents_give_the_seeded_images(client: httpx.AsyncClient) -> None:
    """The z that /generate draws for a seed, sent explicitly, gives /generate's seeded image."""
    from service.latents import latents_for

    z = latents_for(11, 3, DIMS[RGB])
    resp = await client.post(f"/v2/models/{RGB}/infer", json=json_request(z, np.array([2, 2, 2])))
    seeded = npy(
        await client.post("/generate", json={"model": RGB, "label": 2, "seed": 11, "n": 3}, headers=NPY)
    )
    assert np.array_equal(image_of(resp), seeded)


async def test_accepted_variants(client: httpx.AsyncClient) -> None:
    z = latents(GRAY, 2, seed=3)
    labels = np.array([4, 9])
    expected = await generate_npy(client, GRAY, z, labels)
    variants = [
        # nested data, FP64 latents, INT32 labels of shape [n, 1]
        {
            "inputs": [
                {"name": "label", "datatype": "INT32", "shape": [2, 1], "data": [[4], [9]]},
                {"name": "z", "datatype": "FP64", "shape": [2, 16], "data": z.astype(np.float64).tolist()},
            ]
        },
        # request-level binary output with a requested output that does not override it
        {
            **json_request(z, labels),
            "parameters": {"binary_data_output": True},
            "outputs": [{"name": "image"}],
        },
        # a client timeout (microseconds), as tritonclient sends it
        {**json_request(z, labels), "parameters": {"timeout": 5_000_000}},
    ]
    for body in variants:
        resp = await client.post(f"/v2/models/{GRAY}/infer", json=body)
        assert np.array_equal(image_of(resp), expected), body
    # A large body (here padded with JSON whitespace) is parsed off the event loop: same answer.
    padded = orjson.dumps(json_request(z, labels)) + b" " * (100 * 1024)
    resp = await client.post(f"/v2/models/{GRAY}/infer", content=padded)
    assert np.array_equal(image_of(resp), expected)


async def test_fp16_binary_latents(client: httpx.AsyncClient) -> None:
    z = latents(UNCOND, 3, seed=4).astype(np.float16)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "z",
                    "datatype": "FP16",
                    "shape": [3, 12],
                    "parameters": {"binary_data_size": z.nbytes},
                }
            ]
        }
    )
    resp = await client.post(
        f"/v2/models/{UNCOND}/infer", content=header + z.tobytes(), headers={HEADER_LENGTH: str(len(header))}
    )
    assert np.array_equal(image_of(resp), await generate_npy(client, UNCOND, z.astype(np.float32), None))


async def test_compressed_request_and_response(client: httpx.AsyncClient) -> None:
    z = latents(RGB, 40, seed=5)
    labels = np.arange(40) % 3
    plain = orjson.dumps(json_request(z, labels))
    expected = await generate_npy(client, RGB, z, labels)
    for coding, packed in (("gzip", gzip.compress(plain)), ("deflate", zlib.compress(plain))):
        resp = await client.post(
            f"/v2/models/{RGB}/infer",
            content=packed,
            headers={"content-encoding": coding, "accept-encoding": coding},
        )
        assert resp.headers["content-encoding"] == coding  # httpx inflated the body for us
        assert np.array_equal(image_of(resp), expected)
    bomb = gzip.compress(b" " * (3 * 1024 * 1024))  # inflates past max_body_bytes (2 MiB)
    resp = await client.post(f"/v2/models/{RGB}/infer", content=bomb, headers={"content-encoding": "gzip"})
    assert resp.status_code == 413
    assert isinstance(resp.json()["error"], str)
    # Over the limit before inflating: refused by the body limit, in the protocol's shape too.
    resp = await client.post(f"/v2/models/{RGB}/infer", content=b" " * (3 * 1024 * 1024))
    assert resp.status_code == 413
    assert "exceeds the limit" in resp.json()["error"]
    resp = await client.post(f"/v2/models/{RGB}/infer", content=plain, headers={"content-encoding": "br"})
    assert resp.status_code == 415


async def test_v2_and_generate_share_one_batcher(serve: Serve, zoo: Path) -> None:
    """Rows from both APIs coalesce into one session run, and each gets its own rows back."""
    gate = threading.Event()
    gated: list[GatedRunner] = []

    def wrap(inner: Any) -> GatedRunner:
        gated.append(GatedRunner(inner, gate))
        return gated[-1]

    z = latents(GRAY, 3, seed=6)
    labels = np.array([1, 2, 3])
    async with serve(
        make_settings(zoo, warmup=False, max_wait_ms=50.0), runner_factory=wrapping({GRAY: wrap})
    ) as (
        app,
        client,
    ):
        batcher = app.state.resources.batchers[GRAY]
        try:
            async with asyncio.timeout(TIMEOUT_S):
                blocker = asyncio.create_task(
                    client.post("/generate", json={"model": GRAY, "label": 0, "seed": 1})
                )
                assert await asyncio.to_thread(gated[0].started.wait, TIMEOUT_S)
                v2 = asyncio.create_task(
                    client.post(f"/v2/models/{GRAY}/infer", json=json_request(z, labels))
                )
                rest = asyncio.create_task(
                    client.post("/generate", json={"model": GRAY, "labels": [5, 6], "seed": 9}, headers=NPY)
                )
                await eventually(lambda: batcher.queued_images == 5)
                gate.set()
                first, v2_resp, rest_resp = await asyncio.gather(blocker, v2, rest)
        finally:
            gate.set()
        assert first.status_code == 200
        assert gated[0].batches == [1, 5]  # the v2 rows and the /generate rows in one run
        assert np.array_equal(image_of(v2_resp), await generate_npy(client, GRAY, z, labels))
        solo = npy(
            await client.post("/generate", json={"model": GRAY, "labels": [5, 6], "seed": 9}, headers=NPY)
        )
        assert np.array_equal(npy(rest_resp), solo)
        metrics = (await client.get("/metrics")).text
        assert f'condgen_requests_total{{model="{GRAY}",status="200"}}' in metrics


async def test_full_queue_is_429_with_retry_after(serve: Serve, zoo: Path) -> None:
    gate = threading.Event()
    gated: list[GatedRunner] = []

    def wrap(inner: Any) -> GatedRunner:
        gated.append(GatedRunner(inner, gate))
        return gated[-1]

    settings = make_settings(
        zoo, max_n=2, max_grid_images=2, max_queue_images=2, max_batch_size=1, warmup=False
    )
    async with serve(settings, runner_factory=wrapping({UNCOND: wrap})) as (app, client):
        try:
            async with asyncio.timeout(TIMEOUT_S):
                first = asyncio.create_task(client.post("/generate", json={"model": UNCOND, "seed": 1}))
                assert await asyncio.to_thread(gated[0].started.wait, TIMEOUT_S)
                queued = asyncio.create_task(
                    client.post("/generate", json={"model": UNCOND, "seed": 2, "n": 2})
                )
                await eventually(lambda: app.state.resources.batchers[UNCOND].queued_images >= 2)
                refused = await client.post(
                    f"/v2/models/{UNCOND}/infer", json=json_request(latents(UNCOND, 1), None)
                )
                assert refused.status_code == 429
                assert int(refused.headers["retry-after"]) >= 1
                assert isinstance(refused.json()["error"], str)
                too_many = await client.post(
                    f"/v2/models/{UNCOND}/infer", json=json_request(latents(UNCOND, 3), None)
                )
                assert too_many.status_code == 400
                assert "at most 2 rows" in too_many.json()["error"]
                gate.set()
                assert (await first).status_code == 200
                assert (await queued).status_code == 200
        finally:
            gate.set()


# --------------------------------------------------------------------------- bad input: always a 400
Z1 = [0.0] * 16


def _z(data: Any = None, **fields: Any) -> dict[str, Any]:
    return {"name": "z", "datatype": "FP32", "shape": [1, 16], "data": Z1 if data is None else data, **fields}


LABEL = {"name": "label", "datatype": "INT64", "shape": [1], "data": [3]}

BAD_BODIES: list[tuple[str, Any, str]] = [
    ("not json", b"{inputs:", "not valid JSON"),
    ("empty", b"", "empty"),
    ("array", [1, 2], "JSON object"),
    ("no inputs", {}, "'inputs'"),
    ("inputs not a list", {"inputs": {"z": 1}}, "'inputs'"),
    ("input not an object", {"inputs": [3]}, "inputs[0]"),
    ("nameless input", {"inputs": [{"datatype": "FP32", "shape": [1], "data": [1]}]}, "name"),
    ("unknown input", {"inputs": [_z(), LABEL, {**LABEL, "name": "style"}]}, "unexpected input"),
    ("duplicate input", {"inputs": [_z(), _z(), LABEL]}, "twice"),
    ("missing label", {"inputs": [_z()]}, "missing input"),
    ("missing z", {"inputs": [LABEL]}, "missing input"),
    ("wrong dim", {"inputs": [_z(Z1[:8], shape=[1, 8]), LABEL]}, "shape must be [n, 16]"),
    ("1-D z", {"inputs": [_z(shape=[16]), LABEL]}, "shape must be [n, 16]"),
    ("count mismatch", {"inputs": [_z(Z1[:15]), LABEL]}, "needs 16 values"),
    ("ragged nested", {"inputs": [_z([[0.0] * 10, [0.0] * 5]), LABEL]}, "needs 16 values"),
    ("string in z", {"inputs": [_z(["a"] * 16), LABEL]}, "must be numbers"),
    ("bool in z", {"inputs": [_z([True] * 16), LABEL]}, "must be numbers"),
    ("null data", {"inputs": [_z(), {**LABEL, "data": None}]}, "must be numbers"),
    ("overflow fp32", {"inputs": [_z([1e39] * 16), LABEL]}, "finite"),
    ("int z dtype", {"inputs": [_z(datatype="INT64", data=[0] * 16), LABEL]}, "datatype must be FP32"),
    ("unknown dtype", {"inputs": [_z(datatype="FLOAT"), LABEL]}, "datatype must be one of"),
    ("bytes dtype", {"inputs": [_z(datatype="BYTES"), LABEL]}, "not supported"),
    ("negative dim", {"inputs": [_z(shape=[-1, 16]), LABEL]}, "non-negative"),
    ("shape not list", {"inputs": [_z(shape="1x16"), LABEL]}, "shape must be a list"),
    ("huge shape", {"inputs": [_z(shape=[10**12, 16]), LABEL]}, "needs 16000000000000 values"),
    ("empty batch", {"inputs": [_z([], shape=[0, 16]), {**LABEL, "shape": [0], "data": []}]}, "empty"),
    ("label out of range", {"inputs": [_z(), {**LABEL, "data": [10]}]}, "out of range"),
    ("negative label", {"inputs": [_z(), {**LABEL, "data": [-1]}]}, "out of range"),
    ("label too big for json", {"inputs": [_z(), {**LABEL, "data": [2**64 + 1]}]}, "must be integers"),
    ("label too big for int64", {"inputs": [_z(), {**LABEL, "data": [2**63]}]}, "out of range for INT64"),
    ("float label", {"inputs": [_z(), {**LABEL, "data": [1.5]}]}, "must be integers"),
    ("fp label dtype", {"inputs": [_z(), {**LABEL, "datatype": "FP32", "data": [1.0]}]}, "must be INT64"),
    ("label rows", {"inputs": [_z(), {**LABEL, "shape": [2], "data": [1, 2]}]}, "shape must be [1]"),
    ("uint8 overflow", {"inputs": [_z(), {**LABEL, "datatype": "UINT8", "data": [300]}]}, "out of range"),
    ("unknown output", {"inputs": [_z(), LABEL], "outputs": [{"name": "logits"}]}, "unknown output"),
    ("output twice", {"inputs": [_z(), LABEL], "outputs": [{"name": "image"}] * 2}, "twice"),
    (
        "classification",
        {"inputs": [_z(), LABEL], "outputs": [{"name": "image", "parameters": {"classification": 3}}]},
        "classification",
    ),
    (
        "shared memory",
        {"inputs": [_z(parameters={"shared_memory_region": "r", "shared_memory_byte_size": 64}), LABEL]},
        "shared memory",
    ),
    (
        "binary flag type",
        {"inputs": [_z(), LABEL], "parameters": {"binary_data_output": "yes"}},
        "true or false",
    ),
    ("bad timeout", {"inputs": [_z(), LABEL], "parameters": {"timeout": -5}}, "timeout"),
    ("parameters not object", {"inputs": [_z(), LABEL], "parameters": [1]}, "parameters must be an object"),
    ("data and binary", {"inputs": [_z(parameters={"binary_data_size": 64}), LABEL]}, "not both"),
    (
        "binary size wrong",
        {
            "inputs": [
                _z(),
                {"name": "label", "datatype": "INT64", "shape": [1], "parameters": {"binary_data_size": 4}},
            ]
        },
        "takes 8",
    ),
    (
        "binary size type",
        {
            "inputs": [
                _z(),
                {"name": "label", "datatype": "INT64", "shape": [1], "parameters": {"binary_data_size": "8"}},
            ]
        },
        "non-negative integer",
    ),
    ("no data", {"inputs": [_z(), {"name": "label", "datatype": "INT64", "shape": [1]}]}, "data is missing"),
]


async def test_bad_input_is_400_in_the_protocol_shape(client: httpx.AsyncClient) -> None:
    # One app for the whole table: a fresh one per case would cost more than the cases.
    for case, body, needle in BAD_BODIES:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        resp = await client.post(f"/v2/models/{GRAY}/infer", content=content)
        assert resp.status_code == 400, (case, resp.text)
        assert resp.headers["content-type"] == "application/json", case
        error = resp.json()["error"]
        assert isinstance(error, str), case
        assert needle in error, (case, error)


async def test_unconditional_model_refuses_a_label(client: httpx.AsyncClient) -> None:
    body = {"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 12], "data": [0.0] * 12}, LABEL]}
    resp = await client.post(f"/v2/models/{UNCOND}/infer", json=body)
    assert resp.status_code == 400
    assert "unconditional" in resp.json()["error"]


@pytest.mark.parametrize(
    ("header", "tail", "needle"),
    [
        ("abc", b"", "must be an integer"),
        ("99999", b"", "request body has"),
        (None, b"\0" * 8, "not valid JSON"),  # binary bytes but no header length
        ("same", b"\0" * 8, "binary_data_size add up to 0"),  # JSON data plus stray bytes
    ],
)
async def test_binary_framing_errors(
    client: httpx.AsyncClient, header: str | None, tail: bytes, needle: str
) -> None:
    doc = orjson.dumps({"inputs": [_z(), LABEL]})
    headers = {} if header is None else {HEADER_LENGTH: str(len(doc)) if header == "same" else header}
    resp = await client.post(f"/v2/models/{GRAY}/infer", content=doc + tail, headers=headers)
    assert resp.status_code == 400
    assert needle in resp.json()["error"]


async def test_truncated_binary_data(client: httpx.AsyncClient) -> None:
    body, headers = binary_request(latents(GRAY, 2), np.array([1, 2]))
    resp = await client.post(f"/v2/models/{GRAY}/infer", content=body[:-3], headers=headers)
    assert resp.status_code == 400
    assert "runs past the end" in resp.json()["error"]


def _mutations(rng: random.Random) -> Iterator[tuple[bytes, dict[str, str]]]:
    """Deterministic random damage to valid requests: values, types, shapes, framing, bytes."""
    junk: list[Any] = [None, -1, 0, 2**63, 1.5, 1e308, "", "x", [], [[]], {}, True, [1, [2]], {"a": 1}]
    z = np.zeros((2, 16), dtype=np.float32)
    labels = np.array([1, 2])
    for _ in range(300):
        kind = rng.randrange(4)
        if kind == 0:  # a valid JSON body with one field replaced by junk
            doc = json_request(z, labels)
            target = rng.choice([doc, *doc["inputs"]])
            key = rng.choice(["inputs", "outputs", "parameters", "name", "datatype", "shape", "data", "id"])
            target[key] = rng.choice(junk)
            yield orjson.dumps(doc), {}
        elif kind == 1:  # a valid binary body with a wrong header length or cut short
            body, headers = binary_request(z, labels)
            if rng.random() < 0.5:
                headers[HEADER_LENGTH] = str(rng.randrange(-5, len(body) + 5))
            else:
                body = body[: rng.randrange(len(body))]
            yield body, headers
        elif kind == 2:  # random bytes flipped in a JSON body
            raw = bytearray(orjson.dumps(json_request(z, labels)))
            for _ in range(rng.randrange(1, 4)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            yield bytes(raw), {}
        else:  # shapes that disagree with the data
            doc = json_request(z, labels)
            doc["inputs"][rng.randrange(2)]["shape"] = [
                rng.randrange(0, 40) for _ in range(rng.randrange(0, 4))
            ]
            yield orjson.dumps(doc), {}


async def test_fuzzed_requests_never_cause_a_server_error(client: httpx.AsyncClient) -> None:
    statuses: dict[int, int] = {}
    for body, headers in _mutations(random.Random(8)):
        resp = await client.post(f"/v2/models/{GRAY}/infer", content=body, headers=headers)
        statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
        assert resp.status_code in {200, 400}, (resp.status_code, resp.text, body[:200])
        if resp.status_code == 400:
            assert isinstance(resp.json()["error"], str)
    assert statuses[400] > 150  # most mutations are refused, a few are harmless


# --------------------------------------------------------------------------- a real client: tritonclient
@pytest.fixture(scope="module")
def server_url(zoo: Path) -> Iterator[str]:
    with live_zoo(zoo) as url:
        yield url


def _generate_npy_sync(url: str, model: str, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    body: dict[str, Any] = {"model": model, "z": z.tolist()}
    if labels is not None:
        body["labels"] = labels.tolist()
    resp = httpx.post(f"{url}/generate", json=body, headers=NPY, timeout=TIMEOUT_S)
    return npy(resp)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_inference_matches_generate(server_url: str, binary: bool) -> None:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(
        url=server_url.removeprefix("http://"), network_timeout=TIMEOUT_S
    )
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready(GRAY)
        assert client.get_server_metadata()["name"] == "condgen"
        meta = client.get_model_metadata(GRAY, model_version="1")
        assert [(t["name"], t["datatype"]) for t in meta["inputs"]] == [("z", "FP32"), ("label", "INT64")]

        z = latents(GRAY, 6, seed=7)
        labels = np.array([0, 1, 2, 7, 8, 9], dtype=np.int64)
        inputs = [
            httpclient.InferInput("z", list(z.shape), "FP32"),
            httpclient.InferInput("label", [6], "INT64"),
        ]
        inputs[0].set_data_from_numpy(z, binary_data=binary)
        inputs[1].set_data_from_numpy(labels, binary_data=binary)
        outputs = [httpclient.InferRequestedOutput("image", binary_data=binary)]
        result = client.infer(GRAY, inputs, outputs=outputs, request_id="t-1")
        image = result.as_numpy("image")
        assert image.dtype == np.uint8
        assert image.shape == (6, 1, 8, 8)
        assert np.array_equal(image, _generate_npy_sync(server_url, GRAY, z, labels))
        assert result.get_response()["id"] == "t-1"

        # Compressed both ways, versioned path, outputs left to the server's default (binary).
        compressed = client.infer(
            GRAY,
            inputs,
            model_version="1",
            request_compression_algorithm="gzip",
            response_compression_algorithm="deflate",
        )
        assert np.array_equal(compressed.as_numpy("image"), image)

        labels[2] = 10  # out of range for ten classes
        inputs[1].set_data_from_numpy(labels, binary_data=binary)
        with pytest.raises(InferenceServerException) as refused:
            client.infer(GRAY, inputs)
        assert refused.value.status() == "400"
        assert "out of range" in refused.value.message()
    finally:
        client.close()


def test_tritonclient_unconditional_and_rgb(server_url: str) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(
        url=server_url.removeprefix("http://"), network_timeout=TIMEOUT_S
    )
    try:
        z = latents(UNCOND, 3, seed=8)
        zin = httpclient.InferInput("z", [3, 12], "FP32")
        zin.set_data_from_numpy(z)
        got = client.infer(UNCOND, [zin]).as_numpy("image")
        assert np.array_equal(got, _generate_npy_sync(server_url, UNCOND, z, None))

        z = latents(RGB, 2, seed=9)
        zin = httpclient.InferInput("z", [2, 8], "FP32")
        zin.set_data_from_numpy(z)
        lin = httpclient.InferInput("label", [2], "INT64")
        lin.set_data_from_numpy(np.array([2, 0], dtype=np.int64))
        got = client.infer(RGB, [zin, lin]).as_numpy("image")
        assert got.shape == (2, 3, 6, 10)
        assert np.array_equal(got, _generate_npy_sync(server_url, RGB, z, np.array([2, 0])))
    finally:
        client.close()


@pytest.mark.parametrize(
    ("header", "coding"),
    [
        (None, None),
        ("identity", None),
        ("gzip", "gzip"),
        ("deflate, gzip;q=0", "deflate"),
        ("gzip;q=0.5, deflate", "gzip"),  # both acceptable: ours first
        ("*", "gzip"),
        ("*;q=0, deflate", "deflate"),
        ("br", None),
        ("gzip;q=bogus", None),
    ],
)
def test_response_coding_follows_accept_encoding(header: str | None, coding: str | None) -> None:
    assert response_coding(header) == coding
