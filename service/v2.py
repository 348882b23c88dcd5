"""The Open Inference Protocol (KServe v2, HTTP/REST) for the same models, through the same batchers.

Existing clients (``tritonclient.http``, KServe's ``InferenceRESTClient``, plain ``curl``) can talk
to every model of the repository::

    GET  /v2                                   server metadata
    GET  /v2/health/live | /v2/health/ready    liveness, readiness
    GET  /v2/models/{m}[/versions/{v}]         model metadata (tensors, datatypes, shapes)
    GET  /v2/models/{m}[/versions/{v}]/ready   model readiness
    POST /v2/models/{m}[/versions/{v}]/infer   inference

Every model has the same tensor contract, independent of its ONNX graph's internal names:

* input ``z``: FP32 ``[-1, latent.dim]`` (FP16 and FP64 are accepted and cast to FP32);
* input ``label``: INT64 ``[-1]`` class ids, conditional models only (any integer datatype is
  accepted; ``[-1, 1]`` too);
* output ``image``: UINT8 ``[-1, C, H, W]``, exactly the pixels ``POST /generate`` returns for the
  same z and label, because the rows go through the same batcher.

Tensor data may be JSON (flat or nested, row-major) or binary (the ``binary_tensor_data``
extension: ``Inference-Header-Content-Length`` splits the JSON header from the raw little-endian
bytes; inputs carry ``parameters.binary_data_size``; outputs ask with ``parameters.binary_data``
or the request-level ``parameters.binary_data_output``). Request bodies may be gzip or deflate
compressed; responses are compressed when the client's Accept-Encoding asks for it.

Errors use the protocol's shape, ``{"error": "<message>"}``: bad input is a 400 (never a 5xx),
unknown models and versions 404, a full queue 429, a model not ready 503 (both with Retry-After).
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import math
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from service.card import ModelCard
from service.errors import ServiceError
from service.metrics import UNKNOWN_MODEL
from service.registry import ModelEntry
from service.serving import Resources, infer, lookup, resources_of, resources_or_none

logger = logging.getLogger(__name__)

Z_INPUT = "z"
LABEL_INPUT = "label"
IMAGE_OUTPUT = "image"
HEADER_LENGTH = "Inference-Header-Content-Length"
PLATFORM = "onnxruntime_onnx"
EXTENSIONS = ["binary_tensor_data"]
SERVER_NAME = "condgen"

# KServe datatypes -> numpy (binary tensor data is little-endian, row-major).
DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
KNOWN_DATATYPES = (*DATATYPES, "BF16", "BYTES")
FLOAT_TYPES = ("FP32", "FP16", "FP64")
INT_TYPES = ("INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32", "UINT16", "UINT8")

# Responses above this many bytes are serialised on a worker thread (see app.INLINE_ENCODE_MAX_BYTES).
INLINE_ENCODE_MAX_BYTES = 32 * 1024
# Request bodies above this many bytes (or compressed ones) are parsed on a worker thread.
INLINE_PARSE_MAX_BYTES = 64 * 1024
# Responses smaller than this are not worth compressing.
MIN_COMPRESS_BYTES = 1024


class V2Error(Exception):
    """An error in the protocol's own shape: ``{"error": message}`` with an HTTP status."""

    def __init__(self, status_code: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.headers = headers or {}

    def response(self) -> Response:
        return Response(
            content=orjson.dumps({"error": self.message}),
            status_code=self.status_code,
            media_type="application/json",
            headers=self.headers,
        )


def bad_request(message: str) -> V2Error:
    return V2Error(400, message)


def from_service_error(exc: ServiceError) -> V2Error:
    # The service says 422 for a request it understood but cannot serve; the protocol says 400.
    status = 400 if exc.status_code == 422 else exc.status_code
    return V2Error(status, exc.message, exc.headers())


def _json(content: Any, status_code: int = 200) -> Response:
    return Response(content=orjson.dumps(content), status_code=status_code, media_type="application/json")


# ---------------------------------------------------------------------------------- metadata
def model_metadata(card: ModelCard) -> dict[str, Any]:
    inputs: list[dict[str, Any]] = [{"name": Z_INPUT, "datatype": "FP32", "shape": [-1, card.latent.dim]}]
    if card.conditional:
        inputs.append({"name": LABEL_INPUT, "datatype": "INT64", "shape": [-1]})
    image = card.image
    return {
        "name": card.name,
        "versions": [card.version],
        "platform": PLATFORM,
        "inputs": inputs,
        "outputs": [
            {
                "name": IMAGE_OUTPUT,
                "datatype": "UINT8",
                "shape": [-1, image.channels, image.height, image.width],
            }
        ],
    }


# ---------------------------------------------------------------------------------- request body
def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo a gzip/deflate Content-Encoding, refusing anything that inflates beyond ``limit`` bytes."""
    coding = (encoding or "identity").strip().lower()
    if coding in {"", "identity"}:
        return body
    if coding in {"gzip", "x-gzip"}:
        wbits = 16 + zlib.MAX_WBITS
    elif coding == "deflate":
        wbits = 32 + zlib.MAX_WBITS  # zlib stream as RFC 9110 says; auto-detects a gzip header too
    else:
        raise V2Error(415, f"unsupported Content-Encoding {encoding!r}; use gzip, deflate or identity")
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise bad_request(f"the request body is not valid {coding} data") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise V2Error(413, f"the decompressed request body exceeds the limit of {limit} bytes")
    if not inflater.eof:
        raise bad_request(f"the request body is truncated {coding} data")
    return out


def split_body(body: bytes, header_length: str | None) -> tuple[Any, bytes]:
    """The inference request's JSON object and the binary tensor data that follows it."""
    if header_length is None:
        json_part, binary = body, b""
    else:
        try:
            size = int(header_length)
        except ValueError:
            raise bad_request(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
        if not 0 <= size <= len(body):
            raise bad_request(f"{HEADER_LENGTH} is {size} but the request body has {len(body)} bytes")
        json_part, binary = body[:size], body[size:]
    if not json_part.strip():
        raise bad_request("the request body is empty; send a JSON inference request")
    try:
        document = orjson.loads(json_part)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"the inference request is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise bad_request("the inference request must be a JSON object with an 'inputs' list")
    return document, binary


def _parameters(obj: dict[str, Any], where: str) -> dict[str, Any]:
    params = obj.get("parameters", {})
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise bad_request(f"{where}.parameters must be an object")
    return params


def _flatten(data: Any, where: str) -> list[Any]:
    """Row-major elements of flat or nested JSON tensor data."""
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    stack: list[Any] = [iter(data)]
    while stack:
        try:
            item = next(stack[-1])
        except StopIteration:
            stack.pop()
            continue
        if isinstance(item, list):
            if len(stack) > 32:
                raise bad_request(f"{where}.data is nested too deeply")
            stack.append(iter(item))
        else:
            out.append(item)
    return out


def _from_json(values: list[Any], datatype: str, where: str) -> np.ndarray:
    dtype = DATATYPES[datatype]
    if datatype == "BOOL":
        if not all(isinstance(v, bool) for v in values):
            raise bad_request(f"{where}.data: BOOL values must be true or false")
        return np.asarray(values, dtype=dtype)
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
        raise bad_request(f"{where}.data: {datatype} values must be numbers")
    if dtype.kind in "iu":
        if not all(isinstance(v, int) for v in values):
            raise bad_request(f"{where}.data: {datatype} values must be integers")
        info = np.iinfo(dtype)
        if values and (min(values) < info.min or max(values) > info.max):
            raise bad_request(f"{where}.data: values out of range for {datatype} ({info.min}..{info.max})")
        return np.asarray(values, dtype=dtype)
    with np.errstate(over="ignore"):
        # Too large for the datatype becomes inf here and is refused by the finiteness check.
        return np.asarray(values, dtype=np.float64).astype(dtype)


@dataclass(frozen=True)
class InputTensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    array: np.ndarray  # already reshaped to ``shape``


def parse_inputs(document: dict[str, Any], binary: bytes) -> dict[str, InputTensor]:
    """Decode every input tensor (JSON or binary), checking shapes, datatypes and byte counts."""
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise bad_request("'inputs' must be a non-empty list of tensors")
    tensors: dict[str, InputTensor] = {}
    offset = 0
    for i, tensor in enumerate(inputs):
        where = f"inputs[{i}]"
        if not isinstance(tensor, dict):
            raise bad_request(f"{where} must be an object with name, shape, datatype and data")
        name = tensor.get("name")
        if not isinstance(name, str) or not name:
            raise bad_request(f"{where}.name must be a non-empty string")
        where = f"input {name!r}"
        if name in tensors:
            raise bad_request(f"{where} is given twice")
        datatype = tensor.get("datatype")
        if datatype not in KNOWN_DATATYPES:
            raise bad_request(
                f"{where}: datatype must be one of {', '.join(KNOWN_DATATYPES)}, got {datatype!r}"
            )
        if datatype not in DATATYPES:
            raise bad_request(f"{where}: datatype {datatype} is not supported by this server")
        shape = tensor.get("shape")
        if (
            not isinstance(shape, list)
            or len(shape) > 8
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        ):
            raise bad_request(f"{where}: shape must be a list of non-negative integers, got {shape!r}")
        # No cap needed here: data must match the shape, and the body limit bounds the data.
        count = math.prod(shape)
        params = _parameters(tensor, where)
        if any(key.startswith("shared_memory") for key in params):
            raise bad_request(f"{where}: shared memory is not supported by this server")
        dtype = DATATYPES[datatype]
        size = params.get("binary_data_size")
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise bad_request(f"{where}: parameters.binary_data_size must be a non-negative integer")
            if "data" in tensor:
                raise bad_request(f"{where}: give either data or parameters.binary_data_size, not both")
            if size != count * dtype.itemsize:
                raise bad_request(
                    f"{where}: binary_data_size is {size} bytes but shape {shape} of {datatype} "
                    f"takes {count * dtype.itemsize}"
                )
            if offset + size > len(binary):
                raise bad_request(
                    f"{where}: binary_data_size {size} runs past the end of the binary data "
                    f"({len(binary) - offset} bytes left)"
                )
            array = np.frombuffer(binary, dtype=dtype, count=count, offset=offset).reshape(shape)
            offset += size
        else:
            if "data" not in tensor:
                raise bad_request(f"{where}: data is missing (or send it binary with binary_data_size)")
            values = _flatten(tensor["data"], where)
            if len(values) != count:
                raise bad_request(f"{where}: shape {shape} needs {count} values, data has {len(values)}")
            array = _from_json(values, datatype, where).reshape(shape)
        tensors[name] = InputTensor(name=name, datatype=datatype, shape=tuple(shape), array=array)
    if offset != len(binary):
        raise bad_request(
            f"the request carries {len(binary)} bytes of binary tensor data but its inputs' "
            f"binary_data_size add up to {offset}"
        )
    return tensors


@dataclass(frozen=True)
class Rows:
    """What the batcher runs: float32 ``(n, dim)`` latents and int64 ``(n,)`` labels (or None)."""

    z: np.ndarray
    labels: np.ndarray | None


def model_rows(card: ModelCard, tensors: dict[str, InputTensor], max_n: int) -> Rows:
    """Check the inputs against the model's contract and turn them into batcher rows."""
    expected = {Z_INPUT, LABEL_INPUT} if card.conditional else {Z_INPUT}
    unknown = sorted(set(tensors) - expected)
    if unknown:
        hint = " (the model is unconditional)" if LABEL_INPUT in unknown else ""
        raise bad_request(
            f"unexpected input(s) {', '.join(map(repr, unknown))}{hint}; "
            f"model {card.name!r} takes {', '.join(sorted(expected))}"
        )
    missing = sorted(expected - set(tensors))
    if missing:
        raise bad_request(f"missing input(s) {', '.join(map(repr, missing))} for model {card.name!r}")

    z_in = tensors[Z_INPUT]
    dim = card.latent.dim
    if z_in.datatype not in FLOAT_TYPES:
        raise bad_request(
            f"input 'z': datatype must be FP32 (FP16 and FP64 are accepted), got {z_in.datatype}"
        )
    if len(z_in.shape) != 2 or z_in.shape[1] != dim:
        raise bad_request(
            f"input 'z': shape must be [n, {dim}] for model {card.name!r}, got {list(z_in.shape)}"
        )
    n = z_in.shape[0]
    if n < 1:
        raise bad_request("input 'z': the batch is empty; send at least one row")
    if n > max_n:
        raise bad_request(f"input 'z': at most {max_n} rows per request, got {n}")
    with np.errstate(over="ignore"):
        z = np.ascontiguousarray(z_in.array, dtype=np.float32)
    if not np.isfinite(z).all():
        raise bad_request("input 'z': values must be finite and fit FP32 (|v| < 3.4e38)")

    labels: np.ndarray | None = None
    if card.conditional:
        label_in = tensors[LABEL_INPUT]
        if label_in.datatype not in INT_TYPES:
            raise bad_request(
                "input 'label': datatype must be INT64 (any integer type is accepted), "
                f"got {label_in.datatype}"
            )
        if label_in.shape not in {(n,), (n, 1)}:
            raise bad_request(
                f"input 'label': shape must be [{n}] (one class id per row of z), got {list(label_in.shape)}"
            )
        raw = label_in.array.reshape(n)
        classes = card.num_classes
        bad = (raw < 0) | (raw >= classes)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise bad_request(
                f"input 'label': class id {int(raw[first])} (row {first}) is out of range for model "
                f"{card.name!r}: expected 0..{classes - 1}"
            )
        labels = raw.astype(np.int64)
    return Rows(z=z, labels=labels)


@dataclass(frozen=True)
class OutputRequest:
    binary: bool


def parse_outputs(document: dict[str, Any]) -> OutputRequest:
    """Which outputs the client wants, and whether as binary data."""
    params = _parameters(document, "request")
    default_binary = params.get("binary_data_output", False)
    if not isinstance(default_binary, bool):
        raise bad_request("parameters.binary_data_output must be true or false")
    outputs = document.get("outputs")
    if outputs is None or outputs == []:
        return OutputRequest(binary=default_binary)
    if not isinstance(outputs, list):
        raise bad_request("'outputs' must be a list")
    binary = default_binary
    for i, output in enumerate(outputs):
        if not isinstance(output, dict) or output.get("name") != IMAGE_OUTPUT:
            name = output.get("name") if isinstance(output, dict) else None
            raise bad_request(f"outputs[{i}]: unknown output {name!r}; the only output is {IMAGE_OUTPUT!r}")
        if i > 0:
            raise bad_request(f"output {IMAGE_OUTPUT!r} is requested twice")
        out_params = _parameters(output, f"outputs[{i}]")
        if out_params.get("classification"):
            raise bad_request("the classification extension is not supported: the output is an image")
        if any(key.startswith("shared_memory") for key in out_params):
            raise bad_request(f"outputs[{i}]: shared memory is not supported by this server")
        if "binary_data" in out_params:
            if not isinstance(out_params["binary_data"], bool):
                raise bad_request(f"outputs[{i}].parameters.binary_data must be true or false")
            binary = out_params["binary_data"]
    return OutputRequest(binary=binary)


def timeout_s(document: dict[str, Any], default_s: float) -> float:
    """The request's ``parameters.timeout`` (microseconds, as Triton's clients send it), capped."""
    value = _parameters(document, "request").get("timeout")
    if value is None:
        return default_s
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise bad_request("parameters.timeout must be a positive integer (microseconds)")
    return min(default_s, value / 1e6)


# ---------------------------------------------------------------------------------- response body
def encode_response(
    model: str, version: str, request_id: Any, images: np.ndarray, binary: bool
) -> tuple[bytes, dict[str, str], str]:
    """(body, extra headers, media type) of an inference response."""
    output: dict[str, Any] = {"name": IMAGE_OUTPUT, "datatype": "UINT8", "shape": list(images.shape)}
    payload: dict[str, Any] = {"model_name": model, "model_version": version}
    if isinstance(request_id, str) and request_id:
        payload["id"] = request_id
    payload["outputs"] = [output]
    if not binary:
        output["data"] = images.reshape(-1)
        body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
        return body, {}, "application/json"
    raw = np.ascontiguousarray(images).tobytes()
    output["parameters"] = {"binary_data_size": len(raw)}
    header = orjson.dumps(payload)
    return header + raw, {HEADER_LENGTH: str(len(header))}, "application/octet-stream"


def response_coding(accept_encoding: str | None) -> str | None:
    """The response coding to use for an Accept-Encoding header: gzip, deflate or None."""
    if not accept_encoding:
        return None
    offered: dict[str, float] = {}
    for item in accept_encoding.split(","):
        coding, _, rest = item.strip().partition(";")
        q = 1.0
        key, _, value = rest.strip().partition("=")
        if key.strip().lower() == "q":
            try:
                q = float(value)
            except ValueError:
                q = 0.0
        offered[coding.strip().lower()] = q
    for coding in ("gzip", "deflate"):
        if offered.get(coding, offered.get("*", 0.0)) > 0:
            return coding
    return None


def compress(body: bytes, coding: str) -> bytes:
    # Level 1: pixels of small generators compress well already at the cheapest level.
    return gzip.compress(body, compresslevel=1, mtime=0) if coding == "gzip" else zlib.compress(body, 1)


# ---------------------------------------------------------------------------------- routes
Handler = Callable[..., Awaitable[Response]]


def _error_doc(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}},
                    "required": ["error"],
                }
            }
        },
    }


def _json_doc(description: str, properties: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    schema = {"type": "object", "properties": properties, "required": list(properties)}
    return {200: {"description": description, "content": {"application/json": {"schema": schema}}}}


_READY = {"type": "boolean"}
_TENSOR_META = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
        },
    },
}
MODEL_ERRORS: dict[int | str, dict[str, Any]] = {
    404: _error_doc("Unknown model or version."),
    503: _error_doc("Model not loaded or not ready, or the service is starting or shutting down."),
}
INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The image tensor: JSON, or the JSON header then raw bytes "
        "(Inference-Header-Content-Length) when binary output was asked for.",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    400: _error_doc("Invalid request: shapes, datatypes, byte counts, values or labels."),
    404: _error_doc("Unknown model or version."),
    413: {"description": "Body larger than max_body_bytes (before or after decompression)."},
    415: _error_doc("Unsupported Content-Encoding."),
    429: _error_doc("Queue full; see Retry-After."),
    500: _error_doc("Inference failed."),
    503: _error_doc("Model not ready, shutting down, or no result in time; see Retry-After."),
}


def _bind(handler: Callable[[Request, str, str | None], Awaitable[Response]], versioned: bool) -> Handler:
    """An endpoint with or without the ``{version}`` path parameter, for one shared handler."""
    if versioned:

        async def with_version(request: Request, name: str, version: str) -> Response:
            return await handler(request, name, version)

        return with_version

    async def without_version(request: Request, name: str) -> Response:
        return await handler(request, name, None)

    return without_version


def build_router() -> APIRouter:
    """The ``/v2`` routes, over the same serving core as the service's own API."""
    router = APIRouter(prefix="/v2", tags=["kserve-v2"])

    def card_of(request: Request, name: str, version: str | None) -> tuple[Resources, ModelEntry, ModelCard]:
        try:
            resources = resources_of(request)
            entry, card = resources.card_of(name, version)
        except ServiceError as exc:
            raise from_service_error(exc) from None
        return resources, entry, card

    @router.get(
        "",
        summary="Server metadata",
        responses=_json_doc(
            "Name, version and protocol extensions.",
            {"name": {"type": "string"}, "version": {"type": "string"}, "extensions": {"type": "array"}},
        ),
    )
    async def server_metadata(request: Request) -> Response:
        version = getattr(request.app, "version", "")
        return _json({"name": SERVER_NAME, "version": version, "extensions": EXTENSIONS})

    @router.get("/health/live", summary="Server liveness", responses=_json_doc("Alive.", {"live": _READY}))
    async def live() -> Response:
        return _json({"live": True})

    @router.get(
        "/health/ready",
        summary="Server readiness: at least one model ready",
        responses={
            **_json_doc("Ready.", {"ready": _READY}),
            503: {
                "description": "Not ready.",
                "content": {
                    "application/json": {"schema": {"type": "object", "properties": {"ready": _READY}}}
                },
            },
        },
    )
    async def ready(request: Request) -> Response:
        resources = resources_or_none(request)
        is_ready = resources is not None and resources.any_ready
        return _json({"ready": is_ready}, 200 if is_ready else 503)

    async def metadata(request: Request, name: str, version: str | None) -> Response:
        try:
            _, _, card = card_of(request, name, version)
        except V2Error as exc:
            return exc.response()
        return _json(model_metadata(card))

    async def model_ready(request: Request, name: str, version: str | None) -> Response:
        try:
            resources, entry, _ = card_of(request, name, version)
        except V2Error as exc:
            return exc.response()
        is_ready = resources.state_of(entry).ready
        return _json({"name": name, "ready": is_ready}, 200 if is_ready else 503)

    async def inference(request: Request, name: str, version: str | None) -> Response:
        started = time.perf_counter()
        resources = resources_or_none(request)
        status = 500
        try:
            response = await _inference(request, name, version)
            status = response.status_code
            return response
        except V2Error as exc:
            status = exc.status_code
            return exc.response()
        except Exception:
            logger.exception("v2 inference on model %r failed unexpectedly", name)
            return V2Error(500, "internal server error; the incident was logged").response()
        finally:
            if resources is not None:
                # Same series as /generate: condgen_requests_total{model,status} and its duration.
                label = name if name in resources.registry else UNKNOWN_MODEL
                resources.metrics.observe_request(label, status, time.perf_counter() - started)

    async def _inference(request: Request, name: str, version: str | None) -> Response:
        resources, _, card = card_of(request, name, version)
        settings = resources.settings
        encoding = request.headers.get("content-encoding")

        def parse(raw: bytes) -> tuple[dict[str, Any], Rows, OutputRequest, float]:
            document, binary = split_body(
                decompress(raw, encoding, settings.max_body_bytes), request.headers.get(HEADER_LENGTH)
            )
            rows = model_rows(card, parse_inputs(document, binary), settings.max_n)
            return document, rows, parse_outputs(document), timeout_s(document, settings.request_timeout_s)

        raw = await request.body()
        # Checking a large JSON tensor element by element takes milliseconds: off the event loop.
        if len(raw) <= INLINE_PARSE_MAX_BYTES and encoding is None:
            document, rows, wanted, wait_s = parse(raw)
        else:
            document, rows, wanted, wait_s = await asyncio.to_thread(parse, raw)
        try:
            images = await infer(request, lookup(request, name, version), rows.z, rows.labels, wait_s)
        except ServiceError as exc:
            raise from_service_error(exc) from None

        def encode() -> tuple[bytes, dict[str, str], str]:
            content, headers, media = encode_response(
                name, card.version, document.get("id"), images, wanted.binary
            )
            coding = response_coding(request.headers.get("accept-encoding"))
            if coding is not None and len(content) >= MIN_COMPRESS_BYTES:
                content = compress(content, coding)
                headers["Content-Encoding"] = coding
            headers["Vary"] = "Accept-Encoding"
            return content, headers, media

        if images.nbytes <= INLINE_ENCODE_MAX_BYTES:
            content, headers, media = encode()
        else:
            content, headers, media = await asyncio.to_thread(encode)
        return Response(content=content, media_type=media, headers=headers)

    infer_doc: dict[str, Any] = {
        "summary": "Inference: JSON or binary tensors in, the image tensor out",
        "openapi_extra": {
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"type": "object"},
                        "example": {
                            "inputs": [
                                {
                                    "name": "z",
                                    "datatype": "FP32",
                                    "shape": [1, 4],
                                    "data": [0.1, -1.2, 0.3, 0.8],
                                },
                                {"name": "label", "datatype": "INT64", "shape": [1], "data": [3]},
                            ]
                        },
                    },
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
            }
        },
    }
    # Unversioned and versioned paths share handlers; the version must be the card's.
    for prefix, versioned in (("/models/{name}", False), ("/models/{name}/versions/{version}", True)):
        router.add_api_route(
            prefix,
            _bind(metadata, versioned),
            methods=["GET"],
            summary="Model metadata",
            responses={
                **_json_doc(
                    "Name, versions, platform, and the input and output tensors.",
                    {
                        "name": {"type": "string"},
                        "versions": {"type": "array", "items": {"type": "string"}},
                        "platform": {"type": "string"},
                        "inputs": _TENSOR_META,
                        "outputs": _TENSOR_META,
                    },
                ),
                **MODEL_ERRORS,
            },
        )
        router.add_api_route(
            prefix + "/ready",
            _bind(model_ready, versioned),
            methods=["GET"],
            summary="Model readiness",
            responses={
                **_json_doc("Ready.", {"name": {"type": "string"}, "ready": _READY}),
                404: MODEL_ERRORS[404],
                503: {
                    "description": "Not ready (body: name, ready), or no such model loaded (body: error).",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
            },
        )
        router.add_api_route(
            prefix + "/infer",
            _bind(inference, versioned),
            methods=["POST"],
            responses=INFER_RESPONSES,
            **infer_doc,
        )

    @router.api_route(
        "/{path:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False
    )
    async def not_found(request: Request, path: str) -> Response:
        return V2Error(404, f"no route for {request.method} {request.url.path}").response()

    return router
