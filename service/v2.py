"""The Open Inference Protocol (KServe v2, HTTP/REST): what its bodies mean, for the same models.

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
The routes are in :mod:`service.routes.v2`; this module parses and encodes.
"""

from __future__ import annotations

import gzip
import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from service.card import ModelCard
from service.errors import BodyTooLarge, InvalidRequest, UnsupportedMediaType

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


def bad_request(message: str) -> InvalidRequest:
    # A 400 in the protocol's shape: error_response maps the service's 422 for /v2 paths.
    return InvalidRequest(message)


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
        raise UnsupportedMediaType(
            f"unsupported Content-Encoding {encoding!r}; use gzip, deflate or identity"
        )
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise bad_request(f"the request body is not valid {coding} data") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyTooLarge(f"the decompressed request body exceeds the limit of {limit} bytes")
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
        name, datatype, shape, params = _declared(tensor, i, tensors)
        where = f"input {name!r}"
        size = params.get("binary_data_size")
        if size is not None:
            if "data" in tensor:
                raise bad_request(f"{where}: give either data or parameters.binary_data_size, not both")
            array = _binary_array(binary, offset, size, datatype, shape, where)
            offset += size
        else:
            array = _json_array(tensor, datatype, shape, where)
        tensors[name] = InputTensor(name=name, datatype=datatype, shape=tuple(shape), array=array)
    if offset != len(binary):
        raise bad_request(
            f"the request carries {len(binary)} bytes of binary tensor data but its inputs' "
            f"binary_data_size add up to {offset}"
        )
    return tensors


def _declared(
    tensor: Any, i: int, seen: dict[str, InputTensor]
) -> tuple[str, str, list[int], dict[str, Any]]:
    """An input's name, datatype, shape and parameters, checked before any of its data is read."""
    where = f"inputs[{i}]"
    if not isinstance(tensor, dict):
        raise bad_request(f"{where} must be an object with name, shape, datatype and data")
    name = tensor.get("name")
    if not isinstance(name, str) or not name:
        raise bad_request(f"{where}.name must be a non-empty string")
    where = f"input {name!r}"
    if name in seen:
        raise bad_request(f"{where} is given twice")
    datatype = tensor.get("datatype")
    if datatype not in KNOWN_DATATYPES:
        raise bad_request(f"{where}: datatype must be one of {', '.join(KNOWN_DATATYPES)}, got {datatype!r}")
    if datatype not in DATATYPES:
        raise bad_request(f"{where}: datatype {datatype} is not supported by this server")
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) > 8
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise bad_request(f"{where}: shape must be a list of non-negative integers, got {shape!r}")
    params = _parameters(tensor, where)
    if any(key.startswith("shared_memory") for key in params):
        raise bad_request(f"{where}: shared memory is not supported by this server")
    size = params.get("binary_data_size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise bad_request(f"{where}: parameters.binary_data_size must be a non-negative integer")
    return name, datatype, shape, params


def _binary_array(
    binary: bytes, offset: int, size: int, datatype: str, shape: list[int], where: str
) -> np.ndarray:
    dtype = DATATYPES[datatype]
    # No cap needed here: data must match the shape, and the body limit bounds the data.
    count = math.prod(shape)
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
    return np.frombuffer(binary, dtype=dtype, count=count, offset=offset).reshape(shape)


def _json_array(tensor: dict[str, Any], datatype: str, shape: list[int], where: str) -> np.ndarray:
    if "data" not in tensor:
        raise bad_request(f"{where}: data is missing (or send it binary with binary_data_size)")
    count = math.prod(shape)
    values = _flatten(tensor["data"], where)
    if len(values) != count:
        raise bad_request(f"{where}: shape {shape} needs {count} values, data has {len(values)}")
    return _from_json(values, datatype, where).reshape(shape)


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
