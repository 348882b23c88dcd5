"""One exception hierarchy, one way out.

Every error a client can see, whether raised by our code, by FastAPI's request validation, by
Starlette's routing or by a middleware before the app, is a :class:`ServiceError` that leaves
through :func:`error_response`, which picks the shape from the route::

    {"error": {"type": "<machine-readable kind>", "message": "<one readable sentence>"}}
    {"error": "<one readable sentence>"}                  (under /v2, the protocol's shape)

with the matching HTTP status (and ``Retry-After`` where waiting helps). Messages are written for
clients: they never carry a stack trace, an exception repr or a file-system path. The full detail
goes to the server log instead.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from service.context import note_model
from service.paths import is_v2

logger = logging.getLogger(__name__)

ERROR_MEDIA_TYPE = "application/json"


class ServiceError(Exception):
    """Base of every error the service reports to a client."""

    status_code: int = 500
    error_type: str = "internal_error"

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        if self.retry_after_s is None:
            return {}
        # Retry-After takes whole seconds; never advertise 0, clients would hammer us.
        return {"Retry-After": str(max(1, math.ceil(self.retry_after_s)))}


class BadRequest(ServiceError):
    status_code = 400
    error_type = "bad_request"


class InvalidRequest(ServiceError):
    status_code = 422
    error_type = "invalid_request"


class NotFound(ServiceError):
    status_code = 404
    error_type = "not_found"


class UnknownModel(NotFound):
    error_type = "unknown_model"


class MethodNotAllowed(ServiceError):
    status_code = 405
    error_type = "method_not_allowed"


class NotAcceptable(ServiceError):
    status_code = 406
    error_type = "not_acceptable"


class BodyTooLarge(ServiceError):
    status_code = 413
    error_type = "body_too_large"


class UnsupportedMediaType(ServiceError):
    status_code = 415
    error_type = "unsupported_media_type"


class QueueFull(ServiceError):
    status_code = 429
    error_type = "queue_full"


class Unavailable(ServiceError):
    """503 family: the request was fine, the server cannot take it right now."""

    status_code = 503
    error_type = "unavailable"

    def __init__(self, message: str, *, retry_after_s: float | None = 1.0) -> None:
        super().__init__(message, retry_after_s=retry_after_s)


class ModelNotReady(Unavailable):
    error_type = "model_not_ready"


class ModelChanged(Unavailable):
    """A reload replaced the model while the request was planned: its rows fit the previous version
    (another latent size or label set). A 503 with Retry-After: the retry is planned afresh."""

    error_type = "model_changed"


class ShuttingDown(Unavailable):
    error_type = "shutting_down"


class RequestTimeout(Unavailable):
    error_type = "timeout"


class QueueTimeout(RequestTimeout):
    """The request waited in the queue past its deadline and was dropped before any compute."""

    error_type = "queue_timeout"


class Unauthorized(ServiceError):
    status_code = 401
    error_type = "unauthorized"

    def __init__(self, message: str, *, challenge: str = 'Bearer realm="condgen"') -> None:
        super().__init__(message)
        self.challenge = challenge

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": self.challenge}


class InferenceFailed(ServiceError):
    """The model's session raised or returned something unusable; detail is in the server log."""

    status_code = 500
    error_type = "inference_failed"


class WorkerDied(ModelNotReady):
    """The model's batching worker stopped; it is restarted (its session re-created, with backoff).

    A 503 rather than a 500: the request itself was fine, and a readiness probe now fails, so an
    orchestrator routes the retry to a healthy replica.
    """


class ClientDisconnected(ServiceError):
    """The client went away before its result was ready. Logged and counted, never sent."""

    # 499 is nginx's "client closed request": it keeps these apart from server errors in metrics.
    status_code = 499
    error_type = "client_disconnected"


class HttpError(ServiceError):
    """An error of Starlette's routing (no such route, wrong method), under its own status."""

    def __init__(self, status_code: int, error_type: str, message: str, headers: Mapping[str, str]) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error_type = error_type
        self._headers = dict(headers)

    def headers(self) -> dict[str, str]:
        return self._headers


INTERNAL_ERROR_MESSAGE = "internal server error; the incident was logged"


def error_payload(error_type: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"type": error_type, "message": message}}


def error_response(path: str, exc: ServiceError, extra_headers: Mapping[str, str] | None = None) -> Response:
    """The one way out: ``exc`` as the route's error shape, status and headers."""
    status = exc.status_code
    if is_v2(path):
        # The protocol says 400 for a request it understood but cannot serve, where we say 422.
        status = 400 if status == 422 else status
        content = orjson.dumps({"error": exc.message})
    else:
        content = orjson.dumps(error_payload(exc.error_type, exc.message))
    return Response(
        content=content,
        status_code=status,
        media_type=ERROR_MEDIA_TYPE,
        headers={**exc.headers(), **(extra_headers or {})},
    )


def answer_service_error(method: str, path: str, exc: ServiceError) -> Response:
    """:func:`error_response`, with server-side failures (5xx) also logged. Used by the exception
    handler and by the generation fast path, which runs outside FastAPI's handlers."""
    if exc.status_code >= 500:
        logger.warning("%s %s -> %d %s: %s", method, path, exc.status_code, exc.error_type, exc.message)
    return error_response(path, exc)


def invalid_body_response(
    scope: MutableMapping[str, Any], path: str, message: str, model: object
) -> Response:
    """The 422 for a body that did not validate, from FastAPI's handler or the fast path; the
    metrics middleware attributes it to the model when the body named one."""
    if isinstance(model, str):
        note_model(scope, model)
    return error_response(path, InvalidRequest(message))


def _field_path(loc: Sequence[Any], root: str = "body") -> str:
    """``("body", "z", 0, 3)`` -> ``z[0][3]``; the leading "body" says nothing to a client."""
    parts = list(loc)
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or root


def validation_message(errors: Sequence[Any], root: str = "body", limit: int = 3) -> str:
    """A readable summary of pydantic errors that names each offending field.

    ``root`` names the whole document when an error has no field (e.g. malformed JSON).
    """
    items = []
    for err in errors[:limit]:
        if not isinstance(err, Mapping):
            continue
        loc = err.get("loc", ())
        if err.get("type") == "json_invalid":
            position = loc[-1] if loc and isinstance(loc[-1], int) else None
            where = f" at character {position}" if position is not None else ""
            reason = (err.get("ctx") or {}).get("error")
            items.append(f"{root}: invalid JSON{where}" + (f" ({reason})" if reason else ""))
            continue
        field = _field_path(loc, root)
        msg = str(err.get("msg", "invalid value"))
        # Pydantic prefixes validator messages with "Value error, "; drop the noise.
        msg = msg.removeprefix("Value error, ")
        items.append(f"{field}: {msg}")
    if len(errors) > limit:
        items.append(f"... and {len(errors) - limit} more")
    return "; ".join(items) or "invalid request"


_STATUS_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "queue_full",
    503: "unavailable",
}


def _parse_failure(cause: BaseException) -> str:
    if isinstance(cause, RecursionError):
        return "body: invalid JSON (nested too deeply)"
    if isinstance(cause, UnicodeDecodeError):
        return "body: invalid JSON (not UTF-8 text)"
    return "body: invalid JSON (a number or string the parser refuses)"


def install_error_handlers(app: FastAPI) -> None:
    """Route every error through the one JSON shape."""

    async def on_service_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServiceError)
        return answer_service_error(request.method, request.url.path, exc)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        body = exc.body
        model = body.get("model") if isinstance(body, Mapping) else None
        content_type = request.headers.get("content-type", "")
        if request.method == "POST" and "json" not in content_type.lower():
            message = f"body: send a JSON object with Content-Type: application/json (got {content_type!r})"
            return invalid_body_response(request.scope, request.url.path, message, model)
        return invalid_body_response(request.scope, request.url.path, validation_message(exc.errors()), model)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400 and isinstance(exc.__cause__, ValueError | RecursionError):
            # FastAPI answers 400 when the JSON parser fails with anything but JSONDecodeError:
            # bytes that are not UTF-8, nesting deeper than the parser's recursion guard, an
            # integer literal of more than 4300 digits. To a client that is a bad body like any other.
            return error_response(request.url.path, InvalidRequest(_parse_failure(exc.__cause__)))
        error_type = _STATUS_TYPES.get(exc.status_code, "http_error")
        if exc.status_code == 404:
            message = f"no route for {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        else:
            message = exc.detail if isinstance(exc.detail, str) else "request failed"
        http_error = HttpError(exc.status_code, error_type, message, exc.headers or {})
        return error_response(request.url.path, http_error)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(request.url.path, ServiceError(INTERNAL_ERROR_MESSAGE))

    app.add_exception_handler(ServiceError, on_service_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
