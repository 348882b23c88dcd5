"""Pure ASGI middleware: request IDs, the access log and metrics; the API key; the body limit.

Pure ASGI rather than ``BaseHTTPMiddleware``: no extra task per request, and the body limit can act
on the raw ``receive`` stream before FastAPI parses anything.
"""

from __future__ import annotations

import hmac
import itertools
import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.context import model_label
from service.errors import (
    BadRequest,
    BodyTooLarge,
    ClientDisconnected,
    ServiceError,
    Unauthorized,
    error_response,
)
from service.logs import request_id_var
from service.metrics import UNKNOWN_MODEL, Metrics
from service.paths import QUIET_PATHS, is_generation, is_protected

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("service.access")

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_KEY = REQUEST_ID_HEADER.lower().encode()
# A client's request ID is echoed and logged only if it is short and plain; anything else (log
# injection, megabyte headers) is replaced by a generated one.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Generated request IDs: 32 hex digits like a UUID's, a random per-process prefix (80 bits, so
# replicas do not collide) and a counter: a tenth of the cost of uuid4(), which reads the OS's
# random source on every request.
_ID_PREFIX = os.urandom(10).hex()
_ID_COUNTER = itertools.count()


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFFFFFF:012x}"


# The rest of the body is not read when the middleware refuses a request: the connection cannot
# be reused.
_CLOSE = {"Connection": "close"}


async def _refuse(scope: Scope, receive: Receive, send: Send, exc: ServiceError) -> None:
    """Answer ``exc`` before the app has seen the request, through the one way out."""
    await error_response(scope.get("path", ""), exc, _CLOSE)(scope, receive, send)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the already-read ``body`` once, then what ``receive`` reports:
    after the body that is only the disconnect, which handlers listen for."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class BodyLimitMiddleware:
    """Refuse bodies over ``max_body_bytes`` with 413, by Content-Length and by bytes received.

    The body is read here (bounded) and replayed to the app, so nothing downstream ever buffers
    more than the limit, whatever the client declared.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _refuse(scope, receive, send, BadRequest("Content-Length is not a number"))
                    return
                if declared > limit:
                    refusal = BodyTooLarge(
                        f"request body of {declared} bytes exceeds the limit of {limit} bytes"
                    )
                    await _refuse(scope, receive, send, refusal)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left before sending its body: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                refusal = BodyTooLarge(f"request body exceeds the limit of {limit} bytes")
                await _refuse(scope, receive, send, refusal)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, replaying(b"".join(chunks), receive), send)


class InflightTracker:
    """How many HTTP requests are being served right now (read by the drain on SIGTERM)."""

    def __init__(self) -> None:
        self.count = 0


class RequestContextMiddleware:
    """Outermost: give each request an ID, echo it, count it in flight, write its access line,
    and count and time the generation requests (:func:`service.paths.is_generation`) in ``metrics``.

    The ID is the client's ``X-Request-ID`` when that is a plain token of at most 128 characters,
    otherwise a new one; it is set in :data:`service.logs.request_id_var`, so every log line
    written while serving the request carries it. The metrics are counted here rather than in a
    layer of their own: each layer costs a coroutine and a wrapped ``send`` per message, and both
    need the same clock and the same status.
    """

    def __init__(
        self,
        app: ASGIApp,
        tracker: InflightTracker,
        metrics: Metrics,
        is_known_model: Callable[[str], bool],
    ) -> None:
        self.app = app
        self.tracker = tracker
        self.metrics = metrics
        self.is_known_model = is_known_model

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for key, value in scope.get("headers", []):
            if key == b"x-request-id":
                text = value.decode("latin-1")
                if _REQUEST_ID_RE.match(text):
                    request_id = text
                break
        if request_id is None:
            request_id = new_request_id()
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500  # if the app dies before answering, that is what the client gets
        answered = client_left = False
        header = (_REQUEST_ID_KEY, request_id.encode())

        async def with_id(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = int(message["status"]), True
                headers = [h for h in message.get("headers", []) if h[0].lower() != header[0]]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        async def watched() -> Message:
            nonlocal client_left
            message = await receive()
            client_left = client_left or message["type"] == "http.disconnect"
            return message

        state: dict[str, Any] = scope.setdefault("state", {})
        self.tracker.count += 1
        try:
            await self.app(scope, watched, with_id)
        finally:
            self.tracker.count -= 1
            if client_left and not answered:
                status = ClientDisconnected.status_code  # it hung up (mid-body too): not our error
            path = scope.get("path", "")
            model = model_label(state, self.is_known_model)
            if is_generation(path):
                self.metrics.observe_request(model or UNKNOWN_MODEL, status, time.perf_counter() - started)
            level = logging.DEBUG if path in QUIET_PATHS and status < 400 else logging.INFO
            if access_logger.isEnabledFor(level):  # the line's fields cost more than the check
                self._log(scope, path, status, request_id, model, started, level)
            request_id_var.reset(token)

    @staticmethod
    def _log(
        scope: Scope,
        path: str,
        status: int,
        request_id: str,
        model: str | None,
        started: float,
        level: int,
    ) -> None:
        access_logger.log(
            level,
            "%s %s %d",
            scope.get("method", ""),
            path,
            status,
            extra={
                "request_id": request_id,
                "model": model,
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000.0, 3),
                "method": scope.get("method", ""),
                "path": path,
            },
        )


class ApiKeyMiddleware:
    """``Authorization: Bearer <key>`` on protected paths, checked before the body is read.

    The comparison is constant-time (:func:`hmac.compare_digest`), so the key cannot be guessed
    byte by byte from response times. A missing or wrong key is 401 with ``WWW-Authenticate``.
    """

    def __init__(self, app: ASGIApp, api_key: str, protected: Callable[[str], bool] = is_protected) -> None:
        self.app = app
        self.key = api_key.encode()
        self.protected = protected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.protected(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        authorization = b""
        for key, value in scope.get("headers", []):
            if key == b"authorization":
                authorization = value
                break
        scheme, _, token = authorization.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key):
            await self.app(scope, receive, send)
            return
        if not authorization:
            refusal = Unauthorized("this endpoint needs an API key: send Authorization: Bearer <key>")
        else:
            refusal = Unauthorized(
                "the API key is missing or wrong: send Authorization: Bearer <key>",
                challenge='Bearer realm="condgen", error="invalid_token"',
            )
        await _refuse(scope, receive, send, refusal)
