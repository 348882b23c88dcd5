"""Pure ASGI middleware: the request body limit and per-request metrics.

Pure ASGI rather than ``BaseHTTPMiddleware``: no extra task per request, and the body limit can act
on the raw ``receive`` stream before FastAPI parses anything.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import STATE_REQUESTED_MODEL, error_payload
from service.metrics import UNKNOWN_MODEL, Metrics

logger = logging.getLogger(__name__)

# Request-scoped state key (``request.state.<key>``): the handler's verdict on the model label,
# a known model name or "unknown".
STATE_MODEL = "model_label"


async def _send_error(send: Send, status: int, error_type: str, message: str) -> None:
    body = orjson.dumps(error_payload(error_type, message))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The rest of an oversized body is not read; the connection cannot be reused.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


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
                    await _send_error(send, 400, "bad_request", "Content-Length is not a number")
                    return
                if declared > limit:
                    await _send_error(
                        send,
                        413,
                        "body_too_large",
                        f"request body of {declared} bytes exceeds the limit of {limit} bytes",
                    )
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
                await _send_error(
                    send, 413, "body_too_large", f"request body exceeds the limit of {limit} bytes"
                )
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            # After the body, receive() only reports the disconnect (handlers listen for it).
            return await receive()

        await self.app(scope, replay, send)


class MetricsMiddleware:
    """Count and time requests to the generation endpoints, by model and status code."""

    def __init__(
        self, app: ASGIApp, metrics: Metrics, paths: frozenset[str], is_known_model: Callable[[str], bool]
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.paths = paths
        self.is_known_model = is_known_model

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in self.paths:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the app dies before answering, that is what the client gets

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        state: dict[str, Any] = scope.setdefault("state", {})
        try:
            await self.app(scope, receive, capture)
        finally:
            model = self._label(state)
            self.metrics.requests.labels(model, str(status)).inc()
            self.metrics.request_duration.labels(model).observe(time.perf_counter() - started)

    def _label(self, state: dict[str, Any]) -> str:
        label = state.get(STATE_MODEL)
        if isinstance(label, str):
            return label
        requested = state.get(STATE_REQUESTED_MODEL)
        if isinstance(requested, str) and self.is_known_model(requested):
            return requested
        return UNKNOWN_MODEL
