"""The hot path: well-formed generation requests served without FastAPI's per-request machinery.

Under load at n=1, FastAPI's routing, dependency solving and body handling cost more CPU per
request than everything condgen itself does for it (see ``bench/results/RESULTS.md``, profile).
For ``POST`` to a generation endpoint with a JSON body, this middleware validates the body with
the endpoint's own pydantic model straight from bytes and calls the same serving function the
FastAPI routes call. A body that does not validate is answered from that one validation, in the
words of FastAPI's handler (``errors.invalid_body_response``), so a malformed body is parsed once.
Everything else goes on to FastAPI untouched, the body replayed: other paths and methods, other
content types, and bodies that are not a JSON object (FastAPI's parser words those). The OpenAPI
schema and every other route keep one implementation, and ``tests/service/test_fastpath.py``
checks that both paths answer byte for byte alike.

It sits innermost among the middleware: request IDs, the access log, metrics, the API key and
the body limit apply to it exactly as to the routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import ServiceError, answer_service_error, invalid_body_response, validation_message
from service.middleware import replaying

# (request, validated body) -> the response; the routes' own handler body.
Serve = Callable[[Request, Any], Awaitable[Response]]


@dataclass(frozen=True)
class FastRoute:
    body_model: type[BaseModel]
    serve: Serve


class _NamedModel(BaseModel):
    model: str | None = None


def _named_model(body: bytes) -> str | None:
    """The body's ``model`` when it is a JSON object naming one (for the metrics), else None."""
    try:
        return _NamedModel.model_validate_json(body).model
    except ValidationError:
        return None


def _is_json(scope: Scope) -> bool:
    for key, value in scope.get("headers", []):
        if key == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json"
    return False


class GenerationFastPath:
    """Serve ``POST`` bodies that validate against ``routes[path].body_model``; pass the rest on."""

    def __init__(self, app: ASGIApp, routes: Mapping[str, FastRoute]) -> None:
        self.app = app
        self.routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope.get("path", "")) if scope["type"] == "http" else None
        if route is None or scope.get("method") != "POST" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # gone before its body arrived: nobody to answer
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            parsed = route.body_model.model_validate_json(body)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=True, include_input=False)
            if any(e["type"] == "json_invalid" or not e["loc"] for e in errors):
                # Not a JSON object: FastAPI's parser words it (JSON mode says it differently).
                await self.app(scope, replaying(body, receive), send)
                return
            # Validated once: the answer FastAPI would give, without parsing the body again.
            words = validation_message(errors)
            response = invalid_body_response(scope, scope["path"], words, _named_model(body))
            await response(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await route.serve(request, parsed)
        except ServiceError as exc:
            response = answer_service_error("POST", scope["path"], exc)
        await response(scope, receive, send)
